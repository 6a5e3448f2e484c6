"""CSV: one rule for every CSV the hub reads (the file source, SQL inputs and lookup tables).

**Rows** (``CsvRows``): the first row is the header (a leading byte-order mark
is dropped; names are stripped of surrounding spaces). Fields are separated by
``,``; a field in double quotes may hold ``,``, ``""`` (one ``"``) and line
breaks, so one record may span several lines: it is complete when its quotes
close. Empty lines between records are skipped. A record with more or fewer
cells than the header is refused (``ValueError``, with both counts); so is a
quoted cell still open at the end of the input, or open for more than the
reader's bound.

**Cells** (``convert_cell``): ``""`` is NULL; a cell that is a JSON number
(``-12``, ``2.5``, ``1e3``; surrounding spaces allowed) becomes that number,
an integer if it has no fraction or exponent; ``true``/``false`` (any case)
booleans; anything else stays text, ``1_000``, ``+5``, ``0x1F``, ``007``,
``.5``, ``nan``, ``inf`` and ``1e999`` (not finite) included: no EdgeStream
boundary accepts a non-finite number, and a digit string that is not a JSON
number (a zip code, an id) keeps its text.

>>> rows = CsvRows()
>>> [rows.feed(line, n) for n, line in enumerate(['\\ufeffid,note', '1,"two', 'lines"', '2,x'], 1)]
[None, None, {'id': 1, 'note': 'two\\nlines'}, {'id': 2, 'note': 'x'}]
"""

from __future__ import annotations

import csv
import re
from typing import Any

__all__ = ["convert_cell", "CsvRows"]

_JSON_NUMBER = re.compile(r"[ \t\r\n]*(-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?)[ \t\r\n]*")


def convert_cell(v: str) -> Any:
    """'' is NULL; a JSON number becomes a number; true/false (any case) a boolean; else the text."""
    if v == "":
        return None
    m = _JSON_NUMBER.fullmatch(v)
    if m is None:
        low = v.lower()
        return low == "true" if low in ("true", "false") else v
    try:
        if m.group(2) is None and m.group(3) is None:
            return int(m.group(1))
        f = float(m.group(1))
    except ValueError:  # an integer of more digits than Python converts (4300)
        return v
    return f if f - f == 0 else v  # inf - inf is nan: 1e999 stays text


class CsvRows:
    """The records of one CSV text, fed one physical line at a time as it arrives (see the module doc).

    ``feed(line, lineno)`` returns the record the line completes, or None (the header, an empty line, or
    a record whose quoted cell goes on past this line: it is held until it closes). A refused record
    raises ``ValueError``; reading goes on with the next line. ``finish()`` at the end of the input
    raises if a record is still open. ``max_record`` bounds the characters a held record may grow to.
    """

    def __init__(self, convert: bool = True, max_record: int | None = None) -> None:
        self.convert = convert
        self.max_record = max_record
        self.header: list[str] | None = None
        self._held: list[str] = []  # physical lines of a record whose quoted cell is still open
        self._held_chars = 0
        self._quoted = False  # a quoted cell is open at the end of the held lines
        self.refused = ""  # the text of the last record refused (for its dead letter)
        self.start = 0  # line number the last (or held) record started on

    def feed(self, line: str, lineno: int) -> dict[str, Any] | None:
        if line.endswith("\r"):
            line = line[:-1]
        if not self._held:
            self.start = lineno
            if self.header is None and line[:1] == "\ufeff":
                line = line[1:]
            if not line:
                return None
        self._held.append(line)
        self._held_chars += len(line) + 1
        self._quoted = _ends_quoted(line, self._quoted)
        if self._quoted:
            if self.max_record is not None and self._held_chars > self.max_record:
                self.refused = self.abandon()
                raise ValueError(f"a quoted cell is still open after {self.max_record} characters")
            return None
        lines = self._drop()
        try:
            row = next(csv.reader([x + "\n" for x in lines]), [])
        except csv.Error as e:  # a carriage return inside an unquoted field
            self.refused = "\n".join(lines)
            raise ValueError(f"not CSV: {e}") from None
        if self.header is None:
            self.header = [c.strip() for c in row]
            return None
        if len(row) != len(self.header):
            self.refused = "\n".join(lines)
            raise ValueError(f"{len(row)} columns, the header has {len(self.header)}")
        if not self.convert:
            return dict(zip(self.header, row))
        return {k: convert_cell(v) for k, v in zip(self.header, row)}

    def finish(self) -> None:
        """The input ended: raises ValueError if a record's quoted cell never closed."""
        if self._held:
            self.refused = self.abandon()
            raise ValueError("a quoted cell is not closed at the end of the input")

    def abandon(self) -> str:
        """Drop the record held (its input went away); returns its text so far."""
        return "\n".join(self._drop())

    @property
    def holding(self) -> bool:
        """Whether a record is held, waiting for the line that closes its quoted cell."""
        return bool(self._held)

    def _drop(self) -> list[str]:
        held, self._held, self._held_chars, self._quoted = self._held, [], 0, False
        return held


def _ends_quoted(line: str, quoted: bool) -> bool:
    """Whether a quoted field is open at the end of ``line`` (``quoted``: one was open at its start), read
    as Python's csv module reads it: a field is quoted only if it starts with ``"``; ``""`` in it is one
    quote; after its closing quote, characters up to the next ``,`` still belong to it."""
    if not quoted and '"' not in line:
        return False
    at_start = not quoted  # at the start of a field
    after_quote = False  # just read a " inside a quoted field (closing it, or the first of "")
    for ch in line:
        if quoted:
            if after_quote:
                after_quote = False
                if ch == '"':
                    continue  # "" is one quote: still quoted
                quoted = False  # the quote closed the field; this character follows it
            elif ch == '"':
                after_quote = True
                continue
            else:
                continue
        if ch == ",":
            at_start = True
        elif at_start and ch == '"':
            quoted, at_start = True, False
        else:
            at_start = False
    return quoted and not after_quote  # a quote last on the line closed its field
