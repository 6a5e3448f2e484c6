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


#: the operators whose missing operand sqlglot reports as a missing keyword of the operator's class
_OPERATORS = {
    "And": "AND", "Or": "OR", "Not": "NOT", "Xor": "XOR", "Add": "+", "Sub": "-", "Mul": "*", "Div": "/",
    "Mod": "%", "Neg": "-", "DPipe": "||", "EQ": "=", "NEQ": "<>", "GT": ">", "GTE": ">=", "LT": "<", "LTE": "<=",
    "NullSafeEQ": "<=>", "NullSafeNEQ": "IS DISTINCT FROM", "Like": "LIKE", "ILike": "ILIKE", "RegexpLike": "REGEXP",
    "Is": "IS", "In": "IN", "Alias": "AS", "Dot": ".", "JSONExtract": "->", "JSONExtractScalar": "->>",
    "BitwiseAnd": "&", "BitwiseOr": "|", "BitwiseXor": "^", "BitwiseNot": "~", "BitwiseLeftShift": "<<",
    "BitwiseRightShift": ">>", "IntDiv": "DIV", "Pow": "**", "Distance": "<->", "Escape": "ESCAPE",
    "Any": "ANY", "All": "ALL", "Exists": "EXISTS",
}
#: the operators above that take their operand after them
_PREFIX = {"Not", "Neg", "BitwiseNot", "Any", "All", "Exists"}


#: tokens that can end an operand: after one of them a binary operator has its left side
_ENDS = {TokenType.VAR, TokenType.NUMBER, TokenType.STRING, TokenType.IDENTIFIER, TokenType.R_PAREN,
         TokenType.R_BRACKET, TokenType.NULL, TokenType.TRUE, TokenType.FALSE, TokenType.STAR, TokenType.END}


def _plain(message: str, highlight: str = "", after_operand: bool = True) -> str:
    """sqlglot's error description in plain words, without its token or class representations.

    ``highlight`` is the text of the token sqlglot stopped at ("" at the end of the query);
    ``after_operand`` whether the token before it ends an operand (so a binary operator there has its
    left side, and lacks its right one).
    """
    message = message.split("\n")[0]
    got = repr(highlight) if highlight else "the end of the query"
    missing = _MISSING.search(message)
    if missing:
        cls = missing.group(2)
        op = _OPERATORS.get(cls)
        if op is not None:
            # sqlglot names one missing side, either when both are: the token before the operator tells
            side = "before" if not after_operand and highlight.upper() == op.upper() and cls not in _PREFIX \
                else "after"
            text = f"expected an expression {side} {op!r}"
            return text if highlight.upper() == op.upper() else f"{text}, got {got}"
        if cls in _INCOMPLETE:
            return _INCOMPLETE[cls]
        return f"expected an expression around {got}" if highlight else "the query ends too early"
    if message.startswith("Invalid expression / Unexpected token"):
        return f"unexpected {got} here" if highlight else "the query ends too early"
    if message.startswith("Expecting ") or message.startswith("Expected ") and len(message.split()) == 2:
        what = message.split(None, 1)[1]
        return f"expected {what!r} before {got}" if highlight else f"expected {what!r} at the end of the query"
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


def _check_numbers(found: list, text: str) -> None:
    """A number must be a number, and end where a name could not go on: ``0x10`` would be read as ``0 AS
    x10``, ``1e`` is no number at all."""
    for token in found:
        if token.token_type != TokenType.NUMBER:
            continue
        end = token.end + 1
        if end < len(text) and (text[end].isalnum() or text[end] in "_.\"'`$"):
            stop = end
            while stop < len(text) and (text[stop].isalnum() or text[stop] in "_.$"):
                stop += 1
            raise SqlError(f"syntax error: a number followed by letters: {text[token.start:stop]!r} (hexadecimal "
                           "and other notations are not supported; put a space or AS before an alias)", text,
                           token.start)
        try:
            float(token.text)
        except ValueError:
            raise SqlError(f"syntax error: bad number {token.text!r}", text, token.start) from None


def _deepest(found: list) -> int:
    """Where the query nests deepest in parentheses (for a query too deep to parse)."""
    depth = best = 0
    at = 0
    for token in found:
        if token.token_type == TokenType.L_PAREN:
            depth += 1
            if depth > best:
                best, at = depth, token.start
        elif token.token_type == TokenType.R_PAREN:
            depth -= 1
    return at


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
        _check_numbers(found, text)
        trees = dialect.parser().parse(found, body)
    except ParseError as e:
        err = e.errors[0] if e.errors else {}
        line, col = err.get("line") or 1, err.get("col") or 1
        # sqlglot points at the end of the offending token; point at its start
        highlight = err.get("highlight") or ""
        off = _offset(text, line, col) - max(0, len(highlight) - 1)
        description = err.get("description") or str(e)
        if description.startswith("Expecting ") and found and off >= found[-1].start:
            highlight, off = "", len(text.rstrip())  # the query ended early: sqlglot shows its last token
        before = [t for t in found if t.end < off]
        msg = _plain(description, highlight, bool(before) and before[-1].token_type in _ENDS)
        near = f" near {highlight!r}" if highlight and repr(highlight) not in msg else ""
        raise SqlError(f"syntax error: {msg}{near}", text, off) from e
    except TokenError as e:
        raise _unreadable(e, text) from e
    except SqlglotError as e:
        raise SqlError(f"syntax error: {_plain(str(e))}", text, len(text.rstrip())) from e
    except RecursionError:
        raise SqlError("expression too deep: it nests more levels of parentheses or operators than can be read",
                       text, _deepest(found)) from None
    stmts = [t for t in trees if t is not None]
    if len(stmts) != 1:
        raise SqlError("expected exactly one statement", text, 0)
    tree = stmts[0]
    if not isinstance(tree, exp.Select):
        if isinstance(tree, (exp.Command, exp.DDL, exp.DML, exp.Query)):
            what = tree.name if isinstance(tree, exp.Command) else tree.key  # sqlglot's fallback for unknown ones
            raise SqlError(f"only SELECT queries run here, not {what.upper() or 'this statement'}", text, 0)
        raise SqlError("a query starts with SELECT (or EXPLAIN SELECT)", text, len(text) - len(text.lstrip()))
    return tree, explain
