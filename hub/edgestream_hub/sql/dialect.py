"""The sqlglot dialect for EdgeStream SQL and ``parse()`` with located errors.

The dialect keeps sqlglot's grammar but turns almost every function call
into a plain named call (so ``substring``, ``trim`` or ``log`` mean what
docs/sql.md says, not what another engine means), and frees ``SESSION`` to
be a function name (``SESSION(ts, INTERVAL '5' SECOND)``).
"""

from __future__ import annotations

import sqlglot
from sqlglot import exp, parser, tokens
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ParseError, TokenError

from .errors import SqlError


class EdgeSQL(Dialect):
    class Tokenizer(tokens.Tokenizer):
        KEYWORDS = {k: v for k, v in tokens.Tokenizer.KEYWORDS.items() if k not in ("SESSION",)}

    class Parser(parser.Parser):
        FUNCTIONS = {k: v for k, v in parser.Parser.FUNCTIONS.items() if k in ("COUNT",)}
        FUNCTION_PARSERS = {k: v for k, v in parser.Parser.FUNCTION_PARSERS.items() if k in ("CAST", "TRY_CAST")}


def _offset(text: str, line: int, col: int) -> int:
    lines = text.split("\n")
    line = max(1, min(line, len(lines)))
    return sum(len(x) + 1 for x in lines[: line - 1]) + max(0, col - 1)


def parse(text: str) -> tuple[exp.Expression, bool]:
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
        trees = sqlglot.parse(body, read=EdgeSQL)
    except ParseError as e:
        err = e.errors[0] if e.errors else {}
        line, col = err.get("line") or 1, err.get("col") or 1
        # sqlglot points at the end of the offending token; point at its start
        highlight = err.get("highlight") or ""
        off = _offset(text, line, col) - max(0, len(highlight) - 1)
        msg = (err.get("description") or str(e)).split("\n")[0]
        near = f" near {highlight!r}" if highlight else ""
        raise SqlError(f"syntax error: {msg}{near}", text, off) from e
    except TokenError as e:
        raise SqlError(f"syntax error: {e}", text, len(text.rstrip())) from e
    trees = [t for t in trees if t is not None]
    if len(trees) != 1:
        raise SqlError("expected exactly one statement", text, 0)
    tree = trees[0]
    if not isinstance(tree, exp.Select):
        raise SqlError(f"only SELECT queries run here, not {tree.key.upper()}", text, 0)
    return tree, explain
