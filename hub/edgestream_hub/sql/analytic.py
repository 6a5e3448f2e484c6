"""State of the analytic functions: one object per call site, state per partition key.

``lag(x [, n [, default]])`` returns x of the n-th previous record of the
partition; ``latest(x [, default])`` the last non-NULL x seen (this record
included); ``changed_col(ignore_null, x)`` x when it differs from the
previous value, else NULL; ``had_changed(ignore_null, x, ...)`` whether any
argument differs from its previous value (by ``=``: TRUE after 1 is a change,
1.0 after 1 is not; see ``keys``). With ``ignore_null`` TRUE, NULLs neither
count as changes nor replace the remembered value.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from .keys import key as as_key

_UNSET = object()


class Lag:
    def __init__(self, n: int) -> None:
        self.n = n
        self.state: dict = {}

    def __call__(self, key: Any, v: Any, n: Any = 1, default: Any = None) -> Any:
        d = self.state.get(key)
        if d is None:
            d = self.state[key] = deque(maxlen=self.n)
        out = d[0] if len(d) == self.n else default
        d.append(v)
        return out


class Latest:
    def __init__(self) -> None:
        self.state: dict = {}

    def __call__(self, key: Any, v: Any, default: Any = None) -> Any:
        if v is not None:
            self.state[key] = v
            return v
        return self.state.get(key, default)


class ChangedCol:
    def __init__(self) -> None:
        self.state: dict = {}

    def __call__(self, key: Any, ignore_null: Any, v: Any) -> Any:
        if v is None and ignore_null:
            return None
        prev = self.state.get(key, _UNSET)
        k = as_key(v)  # changes are seen as = sees them: TRUE after 1 is a change, 1.0 after 1 is not
        self.state[key] = k
        return v if prev is _UNSET or prev != k else None


class HadChanged:
    def __init__(self) -> None:
        self.state: dict = {}

    def __call__(self, key: Any, ignore_null: Any, *vs: Any) -> Any:
        prev = self.state.get(key)
        if prev is None:
            prev = [_UNSET] * len(vs)
        changed = False
        new = list(prev)
        for i, v in enumerate(vs):
            if v is None and ignore_null:
                continue
            k = as_key(v)
            if prev[i] is _UNSET or prev[i] != k:
                changed = True
            new[i] = k
        self.state[key] = new
        return changed


def make(name: str, args: tuple) -> Any:
    if name == "lag":
        n = args[1].value if len(args) > 1 else 1
        return Lag(n)
    if name == "latest":
        return Latest()
    if name == "changed_col":
        return ChangedCol()
    return HadChanged()
