"""Snapshot encoding: window state (dicts with tuple keys, sets, deques, non-finite floats, ``keys.Key``
keys) to strict JSON values and back."""

from __future__ import annotations

from collections import deque
from typing import Any

from .analytic import _UNSET
from .keys import Key, key


def encode(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if v - v == 0 else {"__f": repr(v)}  # inf, -inf, nan: strict JSON has no spelling for them
    if isinstance(v, list):
        return [encode(x) for x in v]
    if isinstance(v, tuple):
        return {"__t": [encode(x) for x in v]}
    if isinstance(v, dict):
        return {"__m": [[encode(k), encode(x)] for k, x in v.items()]}
    if isinstance(v, set):
        return {"__s": [encode(x) for x in v]}
    if isinstance(v, deque):
        return {"__d": [encode(x) for x in v], "n": v.maxlen}
    if v is _UNSET:
        return {"__u": 1}
    if isinstance(v, Key):
        return {"__k": encode(v.value)}
    raise TypeError(f"cannot snapshot {type(v).__name__}")


def decode(v: Any) -> Any:
    if isinstance(v, list):
        return [decode(x) for x in v]
    if isinstance(v, dict):
        if "__t" in v:
            return tuple(decode(x) for x in v["__t"])
        if "__m" in v:
            return {decode(k): decode(x) for k, x in v["__m"]}
        if "__s" in v:
            return {decode(x) for x in v["__s"]}
        if "__d" in v:
            return deque((decode(x) for x in v["__d"]), maxlen=v["n"])
        if "__u" in v:
            return _UNSET
        if "__k" in v:
            return key(decode(v["__k"]))
        if "__f" in v:
            return float(v["__f"])
        return {k: decode(x) for k, x in v.items()}
    return v
