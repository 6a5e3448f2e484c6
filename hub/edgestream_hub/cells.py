"""Typing CSV cells: one rule for every CSV the hub reads (file source, SQL inputs and tables)."""

from __future__ import annotations

from typing import Any

_NON_FINITE = (float("inf"), float("-inf"))


def convert_cell(v: str) -> Any:
    """'' is NULL; integers and finite decimals become numbers; true/false (any case) booleans; else text.

    "nan" and "inf" stay text: no EdgeStream boundary accepts a non-finite number.
    """
    if v == "":
        return None
    try:
        return int(v)
    except ValueError:
        pass
    try:
        f = float(v)
    except ValueError:
        low = v.lower()
        return low == "true" if low in ("true", "false") else v
    return f if f == f and f not in _NON_FINITE else v
