"""The runtime table generated code runs against: NULL-aware helpers and scalar functions.

Generated code sees only the names in ``helpers()`` (and the query's
constants); nothing else from Python is reachable from a query. Every
scalar function returns NULL (``None``) when an argument it needs is NULL,
unless its entry in docs/sql.md says otherwise. Errors raised here become
the dead-letter reason of the record being processed.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import numbers
import operator
import re
from typing import Any, Callable

from .errors import SqlRuntimeError
from .keys import Key, equal, key, unkey

Fn = Callable[..., Any]


class Func:
    """A scalar function: its callable, its arity, whether compile-time folding may call it, the kind of
    its result when always the same (``number``, ``string``, ``boolean``; None when it varies) and whether
    every argument must be a number."""

    __slots__ = ("fn", "lo", "hi", "pure", "kind", "numeric")

    def __init__(self, fn: Fn, lo: int, hi: int, pure: bool = True, kind: str | None = None,
                 numeric: bool = False) -> None:
        self.fn, self.lo, self.hi, self.pure, self.kind, self.numeric = fn, lo, hi, pure, kind, numeric


def _strict(fn: Fn) -> Fn:
    def wrapper(*args: Any) -> Any:
        for a in args:
            if a is None:
                return None
        return fn(*args)

    wrapper.__name__ = fn.__name__
    return wrapper


def is_number(v: Any) -> bool:
    """A number in SQL's sense: an int or a float (or a plugin's numeric type), never a boolean."""
    return v.__class__ in NUMBERS or kind(v) == "number"


def _num(v: Any, what: str = "value") -> Any:
    """``v`` when it is a number (a boolean is not); else the record fails naming ``what``."""
    if v.__class__ is int or v.__class__ is float or is_number(v):
        return v
    raise SqlRuntimeError(f"{what} must be a number, got {kind(v)} {show(v)}")


def agg_num(v: Any, what: str) -> Any:
    """An aggregate's numeric argument: a number, or a boolean counted as 0/1 (docs/sql.md)."""
    if v is True or v is False:
        return int(v)
    return _num(v, what)


def _numeric(name: str, fn: Fn, strict: bool = True) -> Fn:
    """A math function: NULL in, NULL out (when ``strict``); any other non-number fails the record naming
    the function; an overflow or a domain error too."""

    def wrapper(*args: Any) -> Any:
        for a in args:
            if a is None:
                if strict:
                    return None
            elif a.__class__ is not int and a.__class__ is not float and not is_number(a):
                raise SqlRuntimeError(f"{name}() takes numbers, got {kind(a)} {show(a)}")
        try:
            return fn(*args)
        except (ArithmeticError, ValueError) as e:
            raise SqlRuntimeError(f"{name}(): {e}") from None

    wrapper.__name__ = name
    return wrapper


# -- operators (called from generated code) --------------------------------
def arith_error(op: str, *vals: Any) -> SqlRuntimeError:
    """The record error for an arithmetic operator given something else than numbers."""
    text = " and ".join(f"{kind(v)} {show(v)}" for v in vals)
    hint = " (CAST the string, or join text with || or concat)" if any(v.__class__ is str for v in vals) else ""
    return SqlRuntimeError(f"cannot apply {op} to {text}: arithmetic takes numbers{hint}")


def _div(a: Any, b: Any) -> Any:
    if b == 0:
        raise SqlRuntimeError("division by zero")
    if a.__class__ is int and b.__class__ is int:
        q = abs(a) // abs(b)
        return q if (a >= 0) == (b >= 0) else -q
    return a / b


def _mod(a: Any, b: Any) -> Any:
    if b == 0:
        raise SqlRuntimeError("division by zero")
    if a.__class__ is int and b.__class__ is int:
        r = abs(a) % abs(b)
        return r if a >= 0 else -r
    return math.fmod(a, b)


_ARITH: dict[str, Fn] = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": _div, "%": _mod}


def op_arith(ops: tuple, *vals: Any) -> Any:
    """``vals[0] ops[0] vals[1] ...`` left to right, over non-NULL values: numbers only (a boolean is not
    one, a string is never converted); anything else fails the record naming the operator and the kinds."""
    acc = vals[0]
    for op, v in zip(ops, vals[1:]):
        if not (is_number(acc) and is_number(v)):
            raise arith_error(op, acc, v)
        try:
            acc = _ARITH[op](acc, v)
        except (ArithmeticError, ValueError) as e:
            raise SqlRuntimeError(f"{op}: {e}") from None
    return acc


def op_div(a: Any, b: Any) -> Any:
    """``a / b`` (NULL-aware): ``int / int`` truncates toward zero; by zero fails the record."""
    if a is None or b is None:
        return None
    return op_arith(("/",), a, b)


def op_mod(a: Any, b: Any) -> Any:
    """``a % b`` (NULL-aware), with the dividend's sign; by zero fails the record."""
    if a is None or b is None:
        return None
    return op_arith(("%",), a, b)


def op_neg(a: Any) -> Any:
    """Unary minus of a non-NULL value that is not a plain int or float."""
    if is_number(a):
        return -a
    raise arith_error("-", a)


def op_concat(*vals: Any) -> Any:
    """``a || b || ...``: text of every value (booleans as true/false, arrays and objects as JSON); NULL if any
    value is NULL."""
    for v in vals:
        if v is None:
            return None
    return "".join(v if v.__class__ is str else to_str(v) for v in vals)


def logic_error(op: str, a: Any) -> SqlRuntimeError:
    return SqlRuntimeError(f"{op} takes a boolean, got {kind(a)} {show(a)}")


def op_not(a: Any) -> Any:
    if a is None:
        return None
    if a is True:
        return False
    if a is False:
        return True
    raise logic_error("NOT", a)


def _logic(word: str, absorbing: bool, args: tuple) -> Any:
    """Three-valued AND (``absorbing`` FALSE) or OR (TRUE) of booleans and NULLs: the absorbing value if any
    argument is it, else NULL if any is NULL, else the other value. Every argument is checked, whatever
    comes first: one that is not a boolean or NULL fails the record."""
    out: Any = not absorbing
    for a in args:
        if a is absorbing:
            out = absorbing
        elif a is None:
            if out is not absorbing:
                out = None
        elif a is not (not absorbing):
            raise logic_error(word, a)
    return out


def op_and(*args: Any) -> Any:
    """``a AND b AND ...``"""
    return _logic("AND", False, args)


def op_or(*args: Any) -> Any:
    """``a OR b OR ...``"""
    return _logic("OR", True, args)


def op_is(a: Any, value: bool, negate: bool) -> bool:
    """``a IS [NOT] TRUE|FALSE``: never NULL; ``a`` must be a boolean or NULL."""
    if a is None:
        return negate
    if a is True or a is False:
        return (a is value) != negate
    raise logic_error(f"IS {'NOT ' if negate else ''}{'TRUE' if value else 'FALSE'}", a)


def bad_condition(v: Any, text: str) -> bool:
    """A WHERE, HAVING, ON or CASE WHEN condition that is neither TRUE, FALSE nor NULL: the record fails."""
    raise SqlRuntimeError(f"condition {text} is {a_or_an(kind(v))} {show(v)}, not a boolean (TRUE, FALSE or NULL)")


def a_or_an(word: str) -> str:
    return ("an " if word[:1] in ("a", "e", "i", "o", "u") else "a ") + word


# -- comparisons: values of one kind only ------------------------------------------------------------
#: the kind of a non-NULL value a comparison reads; values of different kinds never compare (as in eKuiper)
_KINDS: dict[type, str] = {int: "number", float: "number", bool: "boolean", str: "string", list: "array",
                           tuple: "array", dict: "object"}
#: classes whose values compare with Python's operators exactly as SQL says (same class on both sides)
PLAIN = frozenset((int, float, str, bool))
NUMBERS = frozenset((int, float))
_ORDERS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_EQUALS = {"=": operator.eq, "!=": operator.ne}


def kind(v: Any) -> str:
    """The kind of a non-NULL value: number, string, boolean, array or object.

    >>> kind(1), kind(2.5), kind(True), kind("1"), kind([1]), kind({})
    ('number', 'number', 'boolean', 'string', 'array', 'object')
    """
    k = _KINDS.get(v.__class__)
    if k is not None:
        return k
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, numbers.Number):
        return "number"
    for cls, name in _KINDS.items():
        if isinstance(v, cls):
            return name
    return type(v).__name__


def mismatch(a: Any, op: str, b: Any) -> SqlRuntimeError:
    """The record error for comparing values of two kinds (``op`` as the query wrote it)."""
    return SqlRuntimeError(f"cannot compare {kind(a)} {show(a)} with {kind(b)} {show(b)} ({op}): "
                           "convert one side with CAST")


def show(v: Any) -> str:
    """A value as a query would write it, clipped: 'text', 12, true, [1,2]."""
    text = "'" + v.replace("'", "''") + "'" if v.__class__ is str else to_str(v)
    return text if len(text) <= 40 else text[:37] + "..."


def op_cmp(a: Any, op: str, b: Any) -> bool:
    """``a op b`` for two non-NULL values (``op`` one of = != < <= > >=).

    Numbers compare with numbers, strings with strings (by code point), booleans with booleans
    (FALSE < TRUE); arrays and objects only with = and !=. Any other pair fails the record.

    >>> op_cmp(1, "<", 2.5), op_cmp("a", "=", "a"), op_cmp([1, 2], "=", [1, 2])
    (True, True, True)
    >>> op_cmp("1", "=", 1)
    Traceback (most recent call last):
    ...
    edgestream_hub.sql.errors.SqlRuntimeError: cannot compare string '1' with number 1 (=): convert one side with CAST
    """
    ka, kb = kind(a), kind(b)
    if ka != kb:
        raise mismatch(a, op, b)
    f = _EQUALS.get(op)
    if ka in ("array", "object"):
        if f is None:
            raise SqlRuntimeError(f"cannot order {ka}s ({op}): only = and <> compare them")
        return equal(a, b) == (op == "=")  # by content, with the kinds: [1] = [TRUE] is false
    if f is not None:
        return bool(f(a, b))
    try:
        return bool(_ORDERS[op](a, b))
    except TypeError:  # values of a plugin's own type
        raise mismatch(a, op, b) from None


def op_in(v: Any, items: tuple) -> Any:
    """``v IN (items)``: SQL's three-valued answer; an item of another kind than ``v`` fails the record,
    whether or not another item matches (as ``v = i1 OR v = i2 ...`` would)."""
    if v is None:
        return None
    saw_null = found = False
    for x in items:
        if x is None:
            saw_null = True
        elif op_cmp(v, "=", x):
            found = True
    if found:
        return True
    return None if saw_null else False


def key_kinds(keys: Any, arity: int) -> list[frozenset]:
    """Per component of a hash-join key (a tuple), the kinds of the non-NULL values the build side holds."""
    sets: list[set] = [set() for _ in range(arity)]
    for k in keys:
        for i, x in enumerate(k):
            if x is not None:
                sets[i].add(kind(unkey(x)))
    return [frozenset(s) for s in sets]


def check_key(probe: Any, kinds: list[frozenset], texts: list[str]) -> None:
    """Fail the record when a component of its join key is of a kind the other side holds none of
    (while it holds other kinds): ``=`` would fail for every row it could meet."""
    for i, x in enumerate(probe):
        if x is None or not kinds[i]:
            continue
        x = unkey(x)
        k = kind(x)
        if k not in kinds[i]:
            raise SqlRuntimeError(f"cannot compare {k} {show(x)} with the {' or '.join(sorted(kinds[i]))} values "
                                  f"of the join key ({texts[i]}): convert one side with CAST")


_like_cache: dict = {}


def like_regex(pattern: str, flags: int = re.S) -> "re.Pattern[str]":
    """The regular expression of a LIKE pattern (``flags`` adds re.I for ILIKE)."""
    rx = _like_cache.get((pattern, flags))
    if rx is None:
        out = []
        for ch in pattern:
            out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        rx = re.compile("".join(out), flags)
        if len(_like_cache) < 256:
            _like_cache[pattern, flags] = rx
    return rx


def op_like(v: Any, pattern: Any) -> Any:
    if v is None or pattern is None:
        return None
    return like_regex(str(pattern)).fullmatch(to_str(v)) is not None


def op_ilike(v: Any, pattern: Any) -> Any:
    if v is None or pattern is None:
        return None
    return like_regex(str(pattern), re.S | re.I).fullmatch(to_str(v)) is not None


def op_regexp(v: Any, pattern: Any) -> Any:
    """``v REGEXP pattern``: a search, like ``regexp_matches``."""
    if v is None or pattern is None:
        return None
    return _rx(pattern).search(to_str(v)) is not None


def op_distinct(a: Any, b: Any) -> bool:
    """``a IS DISTINCT FROM b``: inequality where NULL equals NULL; never NULL (values of two kinds fail)."""
    if a is None or b is None:
        return (a is None) != (b is None)
    return not op_cmp(a, "=", b)


def item(v: Any, key: Any) -> Any:
    """``v[key]`` for nested fields: NULL when the field or index is missing."""
    if v is None or key is None:
        return None
    if v.__class__ is dict:
        return v.get(key) if key.__class__ is str else None
    if isinstance(v, (list, tuple)) and key.__class__ is int:
        return v[key] if -len(v) <= key < len(v) else None
    if isinstance(v, dict):
        return v.get(key)
    return None


def to_str(v: Any) -> str:
    if v.__class__ is str:
        return v
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def cast(v: Any, to: str) -> Any:
    if v is None:
        return None
    try:
        if to == "int":
            if isinstance(v, str):
                s = v.strip()
                try:
                    return int(s)
                except ValueError:
                    return int(float(s))
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(v)
            return int(v)
        if to == "float":
            return float(v)
        if to == "string":
            return to_str(v)
        if to == "bool":
            if isinstance(v, str):
                s = v.strip().lower()
                if s in ("true", "t", "1", "yes"):
                    return True
                if s in ("false", "f", "0", "no"):
                    return False
                raise ValueError(v)
            return bool(v)
    except (ValueError, TypeError, OverflowError):
        raise SqlRuntimeError(f"cannot cast {type(v).__name__} {v!r:.40} to {to.upper()}") from None
    raise SqlRuntimeError(f"unknown cast target {to}")


def try_cast(v: Any, to: str) -> Any:
    """``TRY_CAST``: the cast, or NULL where ``CAST`` would fail the record."""
    try:
        return cast(v, to)
    except SqlRuntimeError:
        return None


#: the dead-letter reason of a record without its time field
MISSING_TIMESTAMP = "missing timestamp"


_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_MS = _dt.timedelta(milliseconds=1)


def ts_ms(v: Any) -> int:
    """An event timestamp as integer epoch milliseconds, or a SqlRuntimeError.

    One rule: a number (epoch ms; a float is truncated) or an ISO-8601 time (UTC when it names no
    zone). A string holding a number is not one (strings are never converted), nor is a boolean.

    >>> ts_ms(1500.7), ts_ms("1970-01-01T00:00:01.5Z")
    (1500, 1500)
    """
    if v.__class__ is int:
        return v
    if v.__class__ is float and v - v == 0:
        return int(v)
    if v is None:
        raise SqlRuntimeError(MISSING_TIMESTAMP)
    if v.__class__ is str:
        try:
            float(v)
        except ValueError:
            pass
        else:
            raise SqlRuntimeError(f"bad timestamp {show(v)}: a number in a string; give epoch milliseconds as a "
                                  "number or an ISO-8601 time")
        try:
            t = _dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            if t.tzinfo is None:
                t = t.replace(tzinfo=_dt.timezone.utc)
            return (t - _EPOCH) // _MS
    raise SqlRuntimeError(f"bad timestamp {v!r:.40}: expected epoch milliseconds")


# -- math ------------------------------------------------------------------
def _round(x: Any, d: Any = 0) -> Any:
    if d.__class__ is not int:
        raise SqlRuntimeError("round(x, d): d must be an integer")
    # half away from zero, as SQL engines round
    f = 10.0**d
    r = math.floor(abs(x) * f + 0.5) / f
    r = math.copysign(r, x)
    return int(r) if d <= 0 and isinstance(x, int) else r


def _log(a: Any, b: Any = None) -> Any:
    if b is None:
        if a <= 0:
            raise SqlRuntimeError("log of a non-positive number")
        return math.log10(a)
    if b <= 0 or a <= 0 or a == 1:
        raise SqlRuntimeError("log with a non-positive number or base 1")
    return math.log(b) / math.log(a)


def _ln(x: Any) -> Any:
    if x <= 0:
        raise SqlRuntimeError("ln of a non-positive number")
    return math.log(x)


def _sqrt(x: Any) -> Any:
    if x < 0:
        raise SqlRuntimeError("sqrt of a negative number")
    return math.sqrt(x)


#: an integer power is computed exactly while its result has at most this many bits, else in floats
POWER_BITS = 4096


def _power(a: Any, b: Any) -> Any:
    if a.__class__ is int and b.__class__ is int and b > 0 and (a.bit_length() - 1) * b > POWER_BITS:
        a = float(a)  # 10 ** 10**9 exactly would take gigabytes: in floats it overflows, and fails the record
    try:
        r = a**b
    except OverflowError:
        raise SqlRuntimeError("power(): result too large for a number") from None
    if isinstance(r, complex):
        raise SqlRuntimeError("power of a negative number to a fractional exponent")
    return r


def _sign(x: Any) -> Any:
    return (x > 0) - (x < 0)


# -- strings ---------------------------------------------------------------
def _substring(s: Any, start: Any, end: Any = None) -> Any:
    if s is None or start is None:
        return None
    s = to_str(s)
    if start.__class__ is not int or (end is not None and end.__class__ is not int):
        raise SqlRuntimeError("substring(s, start [, end]) takes integer indexes")
    if start < 0 or (end is not None and end < start):
        raise SqlRuntimeError(f"substring: bad range [{start}, {end})")
    return s[start:] if end is None else s[start:end]


_rx_cache: dict = {}

#: scalar functions with a regular expression argument, and its index; ``REGEXP``/``RLIKE`` too (``ir.Like``)
REGEX_ARGS = {"regexp_matches": 1, "regexp_replace": 1, "regexp_substr": 1}


def _rx(p: Any) -> "re.Pattern[str]":
    r = _rx_cache.get(p) if p.__class__ is str else None
    if r is None:
        if p.__class__ is not str:
            raise SqlRuntimeError(f"a regular expression must be a string, got {kind(p)} {show(p)}")
        try:
            r = re.compile(p)
        except re.error as e:
            raise SqlRuntimeError(f"bad regular expression {show(p)}: {e}") from None
        except RecursionError:
            raise SqlRuntimeError(f"bad regular expression {show(p)}: nested too deeply") from None
        if len(_rx_cache) < 256:
            _rx_cache[p] = r
    return r


def _regexp_replace(s: Any, p: Any, r: Any) -> Any:
    try:
        return _rx(p).sub(to_str(r), to_str(s))
    except re.error as e:
        raise SqlRuntimeError(f"regexp_replace: bad replacement {show(r)}: {e}") from None


def check_regex(pattern: Any, replacement: Any = None) -> None:
    """Compile a pattern (and check a replacement against it) as the query will: SqlRuntimeError if bad.

    >>> check_regex("a+(b)", r"<\\1>")
    >>> check_regex("[")
    Traceback (most recent call last):
    ...
    edgestream_hub.sql.errors.SqlRuntimeError: bad regular expression '[': unterminated character set at position 0
    """
    rx = _rx(pattern)
    if replacement is not None:
        _regexp_replace("", rx.pattern, replacement)  # Python parses the template before searching


def _pad(left: bool) -> Fn:
    def pad(s: Any, n: Any, fill: Any = " ") -> Any:
        if s is None or n is None or fill is None:
            return None
        s = to_str(s)
        fill = to_str(fill) or " "
        if n.__class__ is not int:
            raise SqlRuntimeError("pad length must be an integer")
        if len(s) >= n:
            return s
        padding = (fill * n)[: n - len(s)]
        return padding + s if left else s + padding

    return pad


def _split_value(s: Any, sep: Any, i: Any) -> Any:
    parts = to_str(s).split(to_str(sep))
    return parts[i] if i.__class__ is int and -len(parts) <= i < len(parts) else None


# -- time ------------------------------------------------------------------
_JAVA_FMT = [("yyyy", "%Y"), ("YYYY", "%Y"), ("yy", "%y"), ("MM", "%m"), ("dd", "%d"), ("HH", "%H"),
             ("hh", "%I"), ("mm", "%M"), ("ss", "%S"), ("SSS", "{ms}"), ("a", "%p"), ("EEE", "%a"), ("MMM", "%b")]


def _fmt_to_strftime(fmt: str) -> str:
    out, i = [], 0
    while i < len(fmt):
        for pat, rep in sorted(_JAVA_FMT, key=lambda p: -len(p[0])):
            if fmt.startswith(pat, i):
                out.append(rep)
                i += len(pat)
                break
        else:
            ch = fmt[i]
            out.append("%%" if ch == "%" else ch)
            i += 1
    return "".join(out)


def _to_dt(ts: Any) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(_num(ts, "timestamp") / 1000.0, _dt.timezone.utc)


def _format_time(ts: Any, fmt: Any) -> Any:
    d = _to_dt(ts)
    ms = int(_num(ts)) % 1000
    return d.strftime(_fmt_to_strftime(to_str(fmt))).replace("{ms}", f"{ms:03d}")


def _from_unix_time(sec: Any) -> Any:
    d = _dt.datetime.fromtimestamp(_num(sec, "seconds"), _dt.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S") + ("Z" if d.microsecond == 0 else f".{d.microsecond // 1000:03d}Z")


_DIFF_UNITS = {"ms": 1, "ss": 1000, "mi": 60_000, "hh": 3_600_000, "dd": 86_400_000,
               "millisecond": 1, "second": 1000, "minute": 60_000, "hour": 3_600_000, "day": 86_400_000}


def _date_diff(unit: Any, a: Any, b: Any) -> Any:
    u = _DIFF_UNITS.get(str(unit).lower())
    if u is None:
        raise SqlRuntimeError(f"date_diff unit must be one of ms, ss, mi, hh, dd, not {unit!r:.20}")
    d = int(_num(b, "timestamp")) - int(_num(a, "timestamp"))
    q = abs(d) // u
    return q if d >= 0 else -q


def _date_add(ts: Any, n: Any, unit: Any) -> Any:
    u = _DIFF_UNITS.get(str(unit).lower())
    if u is None:
        raise SqlRuntimeError(f"date_add unit must be one of ms, ss, mi, hh, dd, not {unit!r:.20}")
    return int(_num(ts, "timestamp")) + int(_num(n)) * u


# -- conditional -----------------------------------------------------------
def _coalesce(*args: Any) -> Any:
    for a in args:
        if a is not None:
            return a
    return None


def _nullif(a: Any, b: Any) -> Any:
    return None if a is not None and b is not None and op_cmp(a, "=", b) else a


# -- hashing and JSON ------------------------------------------------------
def _hash(name: str) -> Fn:
    def h(v: Any) -> Any:
        return hashlib.new(name, to_str(v).encode()).hexdigest()

    h.__name__ = name
    return h


def _to_json(v: Any) -> Any:
    try:
        return json.dumps(v, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise SqlRuntimeError(f"to_json: {e}") from None


def _parse_json(s: Any) -> Any:
    if not isinstance(s, str):
        raise SqlRuntimeError("parse_json takes a string")
    try:
        return json.loads(s)
    except ValueError as e:
        raise SqlRuntimeError(f"parse_json: {e}") from None


_PATH_TOKEN = re.compile(r"\.([A-Za-z_][\w]*)|\[(\d+|-\d+|\*)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]|\.\*")


def _json_path_parse(path: str) -> list:
    if not path.startswith("$"):
        raise SqlRuntimeError(f"JSON path must start with $: {path!r:.40}")
    steps: list[str | int] = []
    i = 1
    while i < len(path):
        m = _PATH_TOKEN.match(path, i)
        if not m:
            raise SqlRuntimeError(f"bad JSON path {path!r:.40} at {i}")
        name, idx, q1, q2 = m.groups()
        if m.group(0) == ".*" or idx == "*":
            steps.append("*")
        elif idx is not None:
            steps.append(int(idx))
        else:
            steps.append(name if name is not None else q1 if q1 is not None else q2)
        i = m.end()
    return steps


def _json_path_query(v: Any, path: Any) -> Any:
    if isinstance(v, str):
        v = _parse_json(v)
    steps = _json_path_parse(to_str(path))
    cur, multi = [v], False
    for st in steps:
        nxt: list = []
        for c in cur:
            if st == "*":
                multi = True
                nxt.extend(c.values() if isinstance(c, dict) else c if isinstance(c, list) else [])
            else:
                x = item(c, st)
                if x is not None:
                    nxt.append(x)
        cur = nxt
    if multi:
        return cur
    return cur[0] if cur else None


def _json_path_exists(v: Any, path: Any) -> Any:
    r = _json_path_query(v, path)
    return r is not None and r != [] if not isinstance(r, list) or r != [] else False


def _cardinality(v: Any) -> Any:
    if isinstance(v, (list, dict, str)):
        return len(v)
    raise SqlRuntimeError("cardinality takes an array or an object")


def _isnull(v: Any) -> bool:
    return v is None


def _math(table: dict) -> dict:
    return {k: Func(_numeric(k, f, strict=k not in ("round", "log")), lo, hi, kind="number", numeric=True)
            for k, (f, lo, hi) in table.items()}


_MATH = _math({
    "abs": (abs, 1, 1), "floor": (math.floor, 1, 1), "ceil": (math.ceil, 1, 1), "sqrt": (_sqrt, 1, 1),
    "power": (_power, 2, 2), "ln": (_ln, 1, 1), "exp": (math.exp, 1, 1), "sign": (_sign, 1, 1),
    "mod": (lambda a, b: op_arith(("%",), a, b), 2, 2), "sin": (math.sin, 1, 1), "cos": (math.cos, 1, 1),
    "tan": (math.tan, 1, 1), "atan": (math.atan, 1, 1), "atan2": (math.atan2, 2, 2),
})
# NULL-aware by hand: round(x) and log(x) take an optional second argument, which may be NULL too
_MATH.update(_math({"round": (lambda x, *d: None if x is None or None in d else _round(x, *d), 1, 2),
                    "log": (lambda a, *b: None if a is None or None in b else _log(a, *b), 1, 2)}))


def _strict_fns(kind_: str | None, table: dict) -> dict:
    return {k: Func(_strict(f), lo, hi, kind=kind_) for k, (f, lo, hi) in table.items()}


#: name -> Func. ``now`` is bound per call to the processing time; see codegen.
SCALARS: dict[str, Func] = dict(_MATH)
SCALARS.update(_strict_fns("string", {
    "lower": (lambda s: to_str(s).lower(), 1, 1), "upper": (lambda s: to_str(s).upper(), 1, 1),
    "trim": (lambda s: to_str(s).strip(), 1, 1), "ltrim": (lambda s: to_str(s).lstrip(), 1, 1),
    "rtrim": (lambda s: to_str(s).rstrip(), 1, 1), "reverse": (lambda s: to_str(s)[::-1], 1, 1),
    "regexp_replace": (_regexp_replace, 3, 3),
    "regexp_substr": (lambda s, p: (lambda m: m.group(0) if m else None)(_rx(p).search(to_str(s))), 2, 2),
    "split_value": (_split_value, 3, 3), "format_time": (_format_time, 2, 2),
    "from_unix_time": (_from_unix_time, 1, 1),
    "md5": (_hash("md5"), 1, 1), "sha1": (_hash("sha1"), 1, 1), "sha256": (_hash("sha256"), 1, 1),
    "sha512": (_hash("sha512"), 1, 1),
}))
SCALARS.update(_strict_fns("number", {
    "length": (lambda s: len(to_str(s)), 1, 1), "numbytes": (lambda s: len(to_str(s).encode()), 1, 1),
    "indexof": (lambda s, p: to_str(s).find(to_str(p)), 2, 2), "date_diff": (_date_diff, 3, 3),
    "date_add": (_date_add, 3, 3), "cardinality": (_cardinality, 1, 1),
}))
SCALARS.update(_strict_fns("boolean", {
    "startswith": (lambda s, p: to_str(s).startswith(to_str(p)), 2, 2),
    "endswith": (lambda s, p: to_str(s).endswith(to_str(p)), 2, 2),
    "regexp_matches": (lambda s, p: _rx(p).search(to_str(s)) is not None, 2, 2),
    "json_path_exists": (_json_path_exists, 2, 2),
}))
SCALARS.update(_strict_fns(None, {"parse_json": (_parse_json, 1, 1), "json_path_query": (_json_path_query, 2, 2)}))
SCALARS.update({
    "substring": Func(_substring, 2, 3, kind="string"), "concat": Func(op_concat, 1, 64, kind="string"),
    "lpad": Func(_pad(True), 2, 3, kind="string"), "rpad": Func(_pad(False), 2, 3, kind="string"),
    "coalesce": Func(_coalesce, 1, 64), "nullif": Func(_nullif, 2, 2), "isnull": Func(_isnull, 1, 1, kind="boolean"),
    "to_json": Func(_to_json, 1, 1, kind="string"), "now": Func(lambda: 0, 0, 0, pure=False, kind="number"),
    "__item": Func(item, 2, 2),
})


def helpers() -> dict[str, Any]:
    """The globals generated code runs with: operators and conversions, nothing else."""
    return {
        "__builtins__": {},
        "_arith": op_arith, "_div": op_div, "_mod": op_mod, "_neg": op_neg, "_cat": op_concat, "_not": op_not,
        "_and": op_and, "_or": op_or, "_is": op_is, "_badcond": bad_condition,
        "_in": op_in, "_cmp": op_cmp, "_PLAIN": PLAIN, "_NUM": NUMBERS, "_like": op_like, "_ilike": op_ilike,
        "_regexp": op_regexp, "_distinct": op_distinct, "_item": item, "_cast": cast, "_trycast": try_cast,
        "_ts": ts_ms, "_aggnum": agg_num, "_keyof": key, "_Key": Key, "_Err": SqlRuntimeError, "_str": to_str,
        "len": len, "sorted": sorted, "set": set, "list": list, "tuple": tuple, "min": min, "max": max,
        "abs": abs, "bool": bool, "float": float, "int": int, "str": str, "isinstance": isinstance, "range": range,
        "sum": sum, "hash": hash,
        "TypeError": TypeError, "KeyError": KeyError, "ValueError": ValueError, "Exception": Exception,
        "_sqrt": math.sqrt, "_floor": math.floor,
    }
