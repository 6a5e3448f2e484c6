"""Strict JSON at the hub's edges: one rule for what comes in and what goes out.

- **In:** a payload is JSON as RFC 8259 defines it. ``NaN``, ``Infinity`` and
  ``-Infinity`` are not JSON (Python's ``json`` accepts them): :func:`loads`
  refuses them, a number too large for a float (``1e999``, which Python's
  ``json`` silently reads as infinity), text that is not UTF-8, a string escape
  of an unpaired surrogate (``"\\ud800"``: Python's ``json`` makes it a string no
  UTF-8 writer can encode) and anything nested deeper than Python can parse,
  with a ``ValueError`` whose message says what was wrong. Every source turns
  that into the payload's dead letter and a counted decode error.
- **Out:** a non-finite number can still arise inside the hub (a ``sum`` that
  overflows a float). :func:`dumps` writes it as ``null`` and reports how many it
  replaced, so the writer can count them
  (``edgestream_sink_nonfinite_values_total``); no writer ever emits a ``NaN``
  token or loses a record for holding one.

**Two engines, one result.** The rules above are Python's ``json`` module plus
the checks here (the reference). When ``orjson`` is installed (``pip install
edgestream[fast]``) it does the work it can do identically, 2-10x faster, and
the reference does the rest, so every value read and every byte written is the
same with and without it. ``orjson`` differs from the reference in these ways,
each bridged:

- it refuses what the reference also refuses, but with other messages: any text
  it refuses is read again by the reference, which raises its own error (or,
  where the reference accepts it, returns the reference's value);
- it reads an integer beyond 64 bits as a float: text holding a run of 19 or
  more digits is read by the reference;
- it reads 1024 levels of nesting where the reference may stop earlier (its
  limit is the interpreter's stack): text that could nest 900 levels is read by
  the reference;
- it refuses a leading byte-order mark: the mark is dropped first;
- it writes NaN and infinities as ``null`` without a word: output holding
  ``null`` has its non-finite numbers counted by the reference's walk;
- it writes a float below 1e-4 as ``0.00001`` or ``1e-7`` where Python writes
  ``1e-05`` and ``1e-07``: output holding such a form is written by the reference;
- it writes types the reference does not (UUIDs, enums, dataclasses, dates) and
  refuses some it writes (integers beyond 64 bits, keys that are not strings, a
  namedtuple): only values made of exactly ``dict``, ``list``, ``tuple``,
  ``str``, ``int``, ``float``, ``bool`` and ``None`` are written by it, and any
  value it refuses is written by the reference.

``EDGESTREAM_JSON=std`` makes the hub use the reference alone, ``orjson``
requires ``orjson``, and ``auto`` (the default) uses it when it is installed;
:func:`use` switches in a running process (the tests run both ways).

>>> loads('{"a": 1}')
{'a': 1}
>>> dumps({"a": float("inf"), "b": [1.5, float("nan")]})
('{"a":null,"b":[1.5,null]}', 2)
"""

from __future__ import annotations

import io
import json
import math
import os
import re
from itertools import chain, repeat
from typing import Any, Callable

__all__ = ["loads", "loads_lines", "dumps", "dump_lines", "finite", "use", "backend", "NONFINITE_METRIC"]

#: the counter every writer adds replaced non-finite numbers to
NONFINITE_METRIC = "edgestream_sink_nonfinite_values_total"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (non-finite numbers are refused)")


def _finite_float(text: str) -> float:
    v = float(text)
    if v - v != 0:  # inf - inf is nan
        raise ValueError(f"number {text[:40]} is out of range (too large for a float)")
    return v


# a \uD800-\uDFFF escape in JSON text (maybe preceded by an escaped backslash: then checked and found fine)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")

_tokens = json.JSONDecoder(parse_constant=_refuse_constant)
_decoder = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)

# -- the orjson engine (None: the reference alone), chosen on first use --
_orjson: Any = None
_chosen = False
_BOM = b"\xef\xbb\xbf"
_DEEP = 900  # text that could nest this deep is read by the reference
_LONG_DIGITS = b"\x01" * 19  # a run of 19 digits, after _DIGITS
_DIGITS = bytes(1 if 0x30 <= i <= 0x39 else 0 for i in range(256))
_SCALARS = frozenset((str, int, float, bool, type(None)))
_CONTAINERS = frozenset((dict, list, tuple))
_PLAIN = _SCALARS | _CONTAINERS


def use(name: str) -> str:
    """Choose the engine: ``std`` (the reference alone), ``orjson`` (ImportError if it is missing) or ``auto``
    (orjson when installed). Returns the engine now in use. Results are the same either way."""
    global _orjson, _chosen
    if name not in ("std", "orjson", "auto"):
        raise ValueError(f"EDGESTREAM_JSON: expected std, orjson or auto, got {name!r}")
    _orjson, _chosen = None, True
    if name != "std":
        try:
            import orjson
        except ImportError:
            if name == "orjson":
                raise ImportError("EDGESTREAM_JSON=orjson but orjson is not installed "
                                  "(pip install edgestream[fast])") from None
            return "std"
        _orjson = orjson
    return backend()


def backend() -> str:
    """The engine in use: ``orjson`` or ``std``."""
    _engine()
    return "std" if _orjson is None else "orjson"


def _engine() -> Any:
    """orjson, or None for the reference; chosen from ``EDGESTREAM_JSON`` on first use (importing orjson costs
    ~5-10 ms, which a command that writes no JSON need not pay)."""
    if not _chosen:
        use(os.environ.get("EDGESTREAM_JSON", "auto") or "auto")
    return _orjson


def loads(data: str | bytes | bytearray | memoryview, check_range: bool = True) -> Any:
    """Parse strict JSON; raises ``ValueError`` (never anything else) on bad input.

    Bytes must be UTF-8 (a leading byte-order mark is accepted). ``check_range=False``
    skips the float-range check (a Python call per float, ~0.1 µs each) for a caller
    that checks every number itself, as the wire decoder does.

    >>> loads(b'[1e999]')
    Traceback (most recent call last):
    ...
    ValueError: number 1e999 is out of range (too large for a float)
    """
    oj = _orjson if _chosen else _engine()
    if oj is not None:
        raw = data if data.__class__ is bytes else \
            data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
        if raw[:3] == _BOM:
            raw = raw[3:]
        # orjson reads it exactly as the reference does unless it holds a run of 19 digits (an integer
        # orjson reads as a float) or enough brackets to nest _DEEP levels
        if _LONG_DIGITS not in raw.translate(_DIGITS) and (
                len(raw) < 2 * _DEEP or raw.count(b"[") + raw.count(b"{") < _DEEP):
            try:
                return oj.loads(raw)
            except oj.JSONDecodeError:
                pass  # the reference says why (or reads what orjson refused)
    return _loads(data, check_range)


def _loads(data: str | bytes | bytearray | memoryview, check_range: bool) -> Any:
    """The reference reader."""
    try:
        if not isinstance(data, str):
            data = bytes(data).decode("utf-8")
        if data[:1] == "\ufeff":
            data = data[1:]
        value = (_decoder if check_range else _tokens).decode(data)
        # a backslash is rare in sensor JSON and memchr finds it at once (a 2-character `in` is 30-400x slower);
        # only text holding a \uD800-\uDFFF escape has its value walked
        if "\\" in data and _SURROGATE_ESCAPE.search(data):
            _refuse_lone_surrogates(value)
        return value
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8 text ({e.reason} at byte {e.start})") from None


def loads_lines(lines: list[bytes]) -> list[Any]:
    """:func:`loads` of each line (UTF-8 bytes), with the ``ValueError`` of a refused line in its place.

    The checks that keep orjson's reading identical run once over all the lines, not once per line.

    >>> loads_lines([b'{"a": 1}', b'NaN'])
    [{'a': 1}, ValueError('NaN is not a JSON number (non-finite numbers are refused)')]
    """
    oj = _orjson if _chosen else _engine()
    out: list[Any] = []
    append = out.append
    if oj is not None and _fits_lines(lines):
        orjson_loads, refused = oj.loads, oj.JSONDecodeError
        for line in lines:
            try:
                append(orjson_loads(line))
                continue
            except refused:
                pass
            try:
                append(_loads(line, True))
            except ValueError as e:
                append(e)
        return out
    for line in lines:
        append(_loads_one(line))
    return out


def _loads_one(line: bytes) -> Any:
    try:
        return loads(line)
    except ValueError as e:
        return e


def _fits_lines(lines: list[bytes]) -> bool:
    """``_fits`` for every line at once: no run of 19 digits, and (as each line that starts with ``{`` or ``[``
    has one bracket of its own) too few brackets left over to nest ``_DEEP`` levels in any one line."""
    text = b"\n".join(lines)
    if _LONG_DIGITS in text.translate(_DIGITS):
        return False
    spare = text.count(b"[") + text.count(b"{") - text.count(b"\n{") - text.count(b"\n[")
    return spare + 1 < _DEEP


def _refuse_lone_surrogates(value: Any) -> None:
    """Raise ValueError if a string (or key) in ``value`` holds a surrogate: json.loads joins an escaped
    pair into one character, so any surrogate left is unpaired. Iterative: ``value`` may be deep."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            m = _SURROGATE.search(v)
            if m:
                raise ValueError(f"string {_quote(v)} holds an unpaired surrogate \\u{ord(m.group()):04x} "
                                 "(not Unicode text; an escape of U+D800-U+DFFF must be half of a pair)")
        elif isinstance(v, dict):
            stack.extend(v)
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)


def _quote(s: str) -> str:
    """A short, printable quote of ``s`` (surrogates escaped)."""
    return ascii(s[:40] + ("..." if len(s) > 40 else ""))


def finite(v: Any) -> tuple[Any, int]:
    """``(copy of v with every non-finite float replaced by None, how many were replaced)``."""
    if isinstance(v, float):
        return (v, 0) if math.isfinite(v) else (None, 1)
    if isinstance(v, dict):
        n = 0
        out = {}
        for k, x in v.items():
            out[k], m = finite(x)
            n += m
        return out, n
    if isinstance(v, (list, tuple)):
        n = 0
        items = []
        for x in v:
            y, m = finite(x)
            items.append(y)
            n += m
        return items, n
    return v, 0


def _nonfinite(values: Any) -> int:
    """How many non-finite floats ``values`` (an iterable of values) holds, at any depth."""
    n = 0
    stack = [iter(values)]
    while stack:
        for v in stack.pop():
            t = type(v)
            if t is float:
                if v - v != 0:
                    n += 1
            elif t is dict:
                stack.append(iter(v.values()))
            elif t is list or t is tuple:
                stack.append(iter(v))
    return n


def _plain(values: Any) -> bool:
    """Whether ``values`` (an iterable of values) holds, at any depth, nothing but dicts, lists, tuples,
    strings, numbers, booleans and None of exactly those types (what orjson writes as the reference does).
    One level at a time, each level's types gathered in C."""
    level = list(values)
    while True:
        types = set(map(type, level))
        if types <= _SCALARS:
            return True
        if not types <= _PLAIN:
            return False
        level = list(chain.from_iterable(v.values() if type(v) is dict else v for v in level
                                         if type(v) in _CONTAINERS))


def _float_forms_differ(text: bytes) -> bool:
    """Whether orjson's ``text`` may hold a float Python writes otherwise: below 1e-4, Python writes an
    exponent of two digits at least (``1e-05``), orjson ``0.00001`` or ``1e-7``. A string holding the same
    characters only costs a second, reference encoding."""
    if b"0.0000" in text:
        return True
    i = text.find(b"e-")
    while i > 0:
        if 0x30 <= text[i - 1] <= 0x39:
            return True
        i = text.find(b"e-", i + 2)
    return False


def _default(v: Any) -> Any:
    if isinstance(v, (set, frozenset)):
        return sorted(v, key=repr)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).decode("utf-8", "backslashreplace")
    return str(v)


_encoder = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False, default=_default)


def dumps(v: Any, default: Callable[[Any], Any] | None = None) -> tuple[str, int]:
    """``(compact strict JSON text, number of non-finite floats written as null)``.

    Types JSON lacks go through ``default`` (by default: sets as sorted lists, bytes
    as text, anything else as ``str``). The common case costs one encode; only a
    value holding a non-finite float is copied.
    """
    oj = _orjson if _chosen else _engine()
    if oj is not None and _plain((v,)):
        try:
            out = oj.dumps(v)
        except oj.JSONEncodeError:
            pass
        else:
            if not _float_forms_differ(out):
                return out.decode("utf-8"), _nonfinite((v,)) if b"null" in out else 0
    enc = _encoder if default is None else json.JSONEncoder(
        separators=(",", ":"), allow_nan=False, ensure_ascii=False, default=default)
    try:
        return enc.encode(v), 0
    except ValueError:
        clean, n = finite(v)
        if not n:
            raise
        return enc.encode(clean), n


def dump_lines(records: list[Any]) -> tuple[bytes, int] | None:
    """``(the records as JSON lines in UTF-8, non-finite floats written as null)`` when orjson can write them
    exactly as the reference would; None otherwise (the caller then writes them with the reference, record
    by record where it must refuse one). Each record is one orjson call ending in its newline, the calls
    driven from C; the records' values are typed in one C pass, and only text that may hold a float (or a
    value below the top level) is searched for the forms orjson writes otherwise."""
    oj = _orjson if _chosen else _engine()
    if oj is None or not records:
        return None
    try:
        types = set(map(type, chain.from_iterable(map(dict.values, records))))
    except TypeError:  # a record that is not a dict
        return None
    flat = types <= _SCALARS
    if not flat and not (types <= _PLAIN and _plain(chain.from_iterable(map(dict.values, records)))):
        return None
    # written into one buffer as they are made, each text freed before the next: ``b"".join`` would hold
    # all of them at once, and that many live allocations cost several times the encoding itself
    buf = io.BytesIO()
    try:
        buf.writelines(map(oj.dumps, records, repeat(None), repeat(oj.OPT_APPEND_NEWLINE)))
    except oj.JSONEncodeError:
        return None
    out = buf.getvalue()
    if flat and float not in types:
        return out, 0  # no float anywhere: nothing non-finite, no float form to compare
    if _float_forms_differ(out):
        return None
    return out, _nonfinite(chain.from_iterable(map(dict.values, records))) if b"null" in out else 0
