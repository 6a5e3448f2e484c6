"""The sqlglot dialect for EdgeStream SQL and ``parse()`` with located errors.

The dialect keeps sqlglot's grammar but turns almost every function call
into a plain named call (so ``substring``, ``trim`` or ``log`` mean what
docs/sql.md says, not what another engine means), and frees ``SESSION`` to
be a function name (``SESSION(ts, INTERVAL '5' SECOND)``).
"""

from __future__ import annotations

import logging
import re
from typing import Any, Callable

from sqlglot import exp, parser, tokens
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ParseError, SqlglotError, TokenError
from sqlglot.tokens import TokenType

from .errors import SqlError


class EdgeSQL(Dialect):
    class Tokenizer(tokens.Tokenizer):
        KEYWORDS = {k: v for k, v in tokens.Tokenizer.KEYWORDS.items() if k not in ("SESSION",)}

    class Parser(parser.Parser):
        FUNCTIONS = {k: v for k, v in parser.Parser.FUNCTIONS.items() if k in ("COUNT",)}
        FUNCTION_PARSERS = {k: v for k, v in parser.Parser.FUNCTION_PARSERS.items() if k in ("CAST", "TRY_CAST")}

        def _parse_csv(self, parse_method: Callable[[], Any], sep: TokenType = TokenType.COMMA) -> list:
            """sqlglot's list parser, but an empty item (``a,, b``, ``a, FROM``, ``(, a)``) is an error.

            sqlglot drops empty items, so ``SELECT id,, temp`` ran as ``SELECT id, temp``.
            """
            item = parse_method()
            items = [] if item is None else [item]
            while True:
                at = self._curr
                if not self._match(sep):
                    return items
                if item is None:
                    self.raise_error(f"expected an item before {at.text!r}", at)
                item = parse_method()
                if item is None:
                    after = f"{self._curr.text!r}" if self._curr else "the end of the query"
                    self.raise_error(f"expected an item after {at.text!r}, got {after}", self._curr or at)
                items.append(item)

        def _parse_group(self, skip_group_by_token: bool = False) -> Any:
            """GROUP BY with nothing after it, or GROUP BY ALL, is an error (sqlglot accepts both)."""
            at = self._curr
            group = super()._parse_group(skip_group_by_token)
            if group is not None and group.args.get("all") is not None:
                self.raise_error("GROUP BY ALL is not supported: name the keys", at)
            if group is not None and not any(group.args.values()):
                self.raise_error("GROUP BY needs a key or a window", at)
            return group


def _offset(text: str, line: int, col: int) -> int:
    lines = text.split("\n")
    line = max(1, min(line, len(lines)))
    return sum(len(x) + 1 for x in lines[: line - 1]) + max(0, col - 1)


#: sqlglot's messages name its tokens and classes; these turn them into words a user reads
_TOKEN = re.compile(r"(?:<Token |Token\()token_type[:=] ?TokenType\.(\w+), text[:=] ?(.*?), line[:=].*?[>)]")
_MISSING = re.compile(r"Required keyword: '(\w+)' missing for <class '(?:\w+\.)*(\w+)'>")
_CLASS = re.compile(r"<class '(?:\w+\.)*(\w+)'>")
_INCOMPLETE = {
    "Where": "WHERE needs a condition", "Having": "HAVING needs a condition", "Limit": "LIMIT needs a number",
    "Order": "ORDER BY needs an expression", "Between": "BETWEEN needs a lower and an upper bound: x BETWEEN a AND b",
    "Join": "JOIN needs a stream or table name", "Cast": "CAST needs a value and a type: CAST(x AS INT)",
}
_LEAKS = ("Token(", "TokenType", "<Token", "<class", "sqlglot")
_UNCLOSED = re.compile(r"Missing (.+?) from ")
_AT = re.compile(r" from (\d+):(\d+)$")


def _not_command_fallback(record: logging.LogRecord) -> bool:
    """sqlglot logs a warning before parsing an unknown statement as a Command; we refuse it with a located
    error instead, so the warning would only repeat it on stderr."""
    return "Falling back to parsing as a 'Command'" not in record.getMessage()


logging.getLogger("sqlglot").addFilter(_not_command_fallback)


def _plain(message: str) -> str:
    """sqlglot's error description in plain words, without its token or class representations."""
    message = message.split("\n")[0]
    missing = _MISSING.search(message)
    if missing:
        return _INCOMPLETE.get(missing.group(2), "incomplete expression")
    message = _TOKEN.sub(lambda m: "the end of the query" if m.group(1) == "SENTINEL" else repr(m.group(2).strip("'")),
                         message)
    message = _CLASS.sub(lambda m: m.group(1).upper(), message)
    if any(leak in message for leak in _LEAKS):
        return "unexpected text"
    return message[:1].lower() + message[1:] if message[1:2].islower() else message


def _unreadable(e: TokenError, text: str) -> SqlError:
    """A TokenError as a located message: an unclosed quote points at its opening quote."""
    cause = str(e.__cause__ or "")
    at = _AT.search(cause)  # sqlglot reports where the token it could not read starts
    off = int(at.group(2)) if at else (e.start + 50 if e.start else len(text.rstrip()))
    unclosed = _UNCLOSED.match(cause)
    if unclosed and unclosed.group(1) in ("'", '"', "`"):
        quote = unclosed.group(1)
        what = "string" if quote == "'" else "quoted name"
        start = text.rfind(quote, 0, off + 1)
        return SqlError(f"syntax error: unterminated {what}: no closing {quote}", text, start if start >= 0 else off)
    if cause.startswith("Numeric string"):
        return SqlError("syntax error: a number has characters it cannot have", text, off)
    return SqlError("syntax error: the query text cannot be read here", text, off)


def parse(text: str) -> tuple[exp.Select, bool]:
    """Parse one statement; returns (tree, is_explain). Raises SqlError with the location."""
    body = text
    explain = False
    stripped = text.lstrip()
    if stripped[:7].upper() == "EXPLAIN" and (len(stripped) == 7 or stripped[7].isspace()):
        explain = True
        lead = len(text) - len(stripped)
        body = " " * (lead + 7) + stripped[7:]  # keep offsets of the query text
    if not body.strip():
        raise SqlError("empty query", text, len(text))
    try:
        dialect = EdgeSQL()
        found = dialect.tokenize(body)
        for token in found:
            if token.token_type == TokenType.UNKNOWN:  # sqlglot would read a stray character as a name
                raise SqlError(f"syntax error: unexpected character {token.text!r}", text, token.start)
        trees = dialect.parser().parse(found, body)
    except ParseError as e:
        err = e.errors[0] if e.errors else {}
        line, col = err.get("line") or 1, err.get("col") or 1
        # sqlglot points at the end of the offending token; point at its start
        highlight = err.get("highlight") or ""
        off = _offset(text, line, col) - max(0, len(highlight) - 1)
        msg = _plain(err.get("description") or str(e))
        near = f" near {highlight!r}" if highlight and repr(highlight) not in msg else ""
        raise SqlError(f"syntax error: {msg}{near}", text, off) from e
    except TokenError as e:
        raise _unreadable(e, text) from e
    except SqlglotError as e:
        raise SqlError(f"syntax error: {_plain(str(e))}", text, len(text.rstrip())) from e
    except RecursionError:
        raise SqlError("the query nests too deeply", text, 0) from None
    stmts = [t for t in trees if t is not None]
    if len(stmts) != 1:
        raise SqlError("expected exactly one statement", text, 0)
    tree = stmts[0]
    if not isinstance(tree, exp.Select):
        what = tree.name if isinstance(tree, exp.Command) else tree.key  # sqlglot's fallback for unknown statements
        raise SqlError(f"only SELECT queries run here, not {what.upper() or 'this statement'}", text, 0)
    return tree, explain
