"""Values as keys: one equality for grouping, DISTINCT, PARTITION BY, join keys and change detection.

Python's ``==`` and ``hash`` make ``True == 1 == 1.0``, so a dict keyed by
raw values would put a boolean into a number's group. SQL's kinds say a
boolean is not a number, while ``1`` and ``1.0`` are one number. ``key(v)``
maps a value to a key that is equal to another key exactly when ``=`` says
the values are equal (arrays and objects by their contents, every NaN one
key); ``unkey`` gives the value back, kind and all, for output.

>>> key(True) == key(1), key(1) == key(1.0), key([1, True]) == key([1.0, True])
(False, True, True)
>>> unkey(key([1, True]))
[1, True]
"""

from __future__ import annotations

from typing import Any


class Key:
    """A value whose Python equality is not SQL's (a boolean, NaN, an array or an object), as a key.

    Equal to another ``Key`` with the same normal form, never to a plain value; ``value`` is the
    original value (the first one seen, when a dict keeps it).
    """

    __slots__ = ("value", "norm")

    def __init__(self, value: Any, norm: tuple) -> None:
        self.value = value
        self.norm = norm

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Key) and self.norm == other.norm

    def __hash__(self) -> int:
        return hash(self.norm)

    def __repr__(self) -> str:
        return f"Key({self.value!r})"


TRUE = Key(True, ("boolean", True))
FALSE = Key(False, ("boolean", False))
NAN = Key(float("nan"), ("number", "nan"))


def key(v: Any) -> Any:
    """``v`` as a key: strings, integers, finite floats and NULL as they are; booleans, NaN, arrays and
    objects as a ``Key``. Values of other types (a plugin's) are their own keys."""
    c = v.__class__
    if c is str or c is int or v is None:
        return v
    if c is bool:
        return TRUE if v else FALSE
    if c is float:
        return NAN if v != v else v
    if c is list or c is tuple:
        return Key(v, ("array", tuple(key(x) for x in v)))
    if c is dict:
        return Key(v, ("object", frozenset((k, key(x)) for k, x in v.items())))
    return v


def unkey(k: Any) -> Any:
    """The value a key stands for."""
    return k.value if k.__class__ is Key else k


def key_value(k: Any) -> Any:
    """A group key (one value, or a tuple of them) as JSON-able values, for messages and dead letters."""
    if k.__class__ is tuple:
        return [unkey(x) for x in k]
    return unkey(k)


def equal(a: Any, b: Any) -> bool:
    """Whether two values are one key (NULL equals NULL here; ``=`` itself gives NULL for it)."""
    return key(a) == key(b)
