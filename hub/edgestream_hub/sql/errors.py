"""Compile errors: every one carries the line, the column and a caret excerpt."""

from __future__ import annotations

from edgestream_hub.errors import EdgeStreamError


def locate(text: str, offset: int) -> tuple[int, int, str]:
    """(line, column, excerpt) for a character offset into ``text`` (1-based line and column)."""
    offset = max(0, min(offset, len(text)))
    line = text.count("\n", 0, offset) + 1
    start = text.rfind("\n", 0, offset) + 1
    end = text.find("\n", offset)
    end = len(text) if end < 0 else end
    col = offset - start + 1
    excerpt = text[start:end] + "\n" + " " * (col - 1) + "^"
    return line, col, excerpt


class SqlError(EdgeStreamError):
    """A query that cannot run: ``line``, ``column``, ``excerpt`` (with a caret) and ``message``.

    >>> str(SqlError("unknown function 'foo'", "SELECT foo(x) FROM s", 7))
    "line 1, column 8: unknown function 'foo'\\n  SELECT foo(x) FROM s\\n         ^"
    """

    def __init__(self, message: str, text: str = "", offset: int | None = None) -> None:
        self.message = message
        self.text = text
        self.offset = offset
        if offset is None:
            self.line, self.column, self.excerpt = 0, 0, ""
            super().__init__(message)
            return
        self.line, self.column, self.excerpt = locate(text, offset)
        shown = "\n".join("  " + part for part in self.excerpt.split("\n"))
        super().__init__(f"line {self.line}, column {self.column}: {message}\n{shown}")


class SqlRuntimeError(EdgeStreamError):
    """One record failed at run time (division by zero, bad cast, missing timestamp): it is dead-lettered."""
