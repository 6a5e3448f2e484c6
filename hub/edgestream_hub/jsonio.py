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

>>> loads('{"a": 1}')
{'a': 1}
>>> dumps({"a": float("inf"), "b": [1.5, float("nan")]})
('{"a":null,"b":[1.5,null]}', 2)
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Callable

__all__ = ["loads", "dumps", "finite", "NONFINITE_METRIC"]

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
    enc = _encoder if default is None else json.JSONEncoder(
        separators=(",", ":"), allow_nan=False, ensure_ascii=False, default=default)
    try:
        return enc.encode(v), 0
    except ValueError:
        clean, n = finite(v)
        if not n:
            raise
        return enc.encode(clean), n
