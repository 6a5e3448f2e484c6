"""Incremental aggregates for SLIDINGWINDOW: running state updated on add and on eviction.

A sliding group keeps its records with ts in [T - size, T] (T the
trigger being emitted) and, per aggregate, state that is updated when a
record enters and when it is evicted, so one output row costs O(1)
amortised whatever the window holds:

- ``count``: a counter; ``sum``/``avg``: the exact sums every window kind
  keeps (``aggregates.sum_add_code``), so evicting leaves no rounding
  behind and a row is the correctly rounded sum of its range; ``var``/``stddev``
  and the sample forms: exact integer sums of x and x², floats counted
  exactly in units of 2**-1074, so eviction never leaves rounding behind;
- ``min``/``max``: a monotonic deque of (index, value), amortised O(1);
- ``first_value``/``last_value``: a monotonic deque on the arrival number
  (records enter and leave the range in ts order; these read arrival order);
- ``count(DISTINCT x)``: a key (``keys.key``) -> multiplicity map (O(1) per update);
- ``median``/``percentile``: a sorted list (binary search to insert and
  to remove); ``collect``: the queue of (arrival number, value), read in
  arrival order. Only these holistic aggregates read the buffered values
  at emit.

``slide_code`` gives the generated-code template of each aggregate;
``SlideCode.check`` statements run when a record arrives, so a value
that could not be aggregated (``min`` of an object, a string after
numbers) fails that record there, never later when the window is
emitted.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from . import ir
from .aggregates import (
    E0,
    SUM_INITS,
    VAR_SLOTS,
    better,
    percentile_sorted,
    sum_add_code,
    sum_final_code,
    sum_sub,
    var_add,
    var_sub,
    var_value,
)
from .keys import key


@dataclass
class SlideCode:
    inits: list  # python expressions, one per slot
    add: list  # statements; value in v, state list s, record index _i (ts order), arrival number _n
    remove: list  # statements undoing add for the same value and index
    final: str  # python expression of the result
    check: list = field(default_factory=list)  # statements run on arrival (may raise)
    refs: int = 0  # per-group reference slots the check statements use


# -- holistic helpers ---------------------------------------------------------------------------------
def sorted_remove(xs: list, v: Any) -> None:
    i = bisect_left(xs, v)
    if i < len(xs) and xs[i] == v:
        del xs[i]
        return
    for j, x in enumerate(xs):  # NaN breaks the ordering: fall back to a scan
        if x is v or (x != x and v != v):
            del xs[j]
            return


def arrival_values(q: Any) -> list:
    """The values of a queue of (arrival number, value), in arrival order."""
    return [x[1] for x in sorted(q, key=_first)]


def _first(x: tuple) -> Any:
    return x[0]


def minmax_check(ref: Any, v: Any, what: str) -> None:
    """A value ``min``/``max`` could not order with the group's values (``ref``, the last one) fails on arrival."""
    better(ref, v, "<", what)


def slide_code(a: ir.Agg, v: str, s: str, o: int, ref: int, const: Callable[[Any], str]) -> SlideCode:
    """Template of aggregate ``a`` (value variable ``v``, state ``s`` from slot ``o``, first ref slot ``ref``)."""

    def S(k: int) -> str:
        return f"{s}[{o + k}]"

    name = a.name
    nn = f"if {v} is not None: "
    if name == "count":
        if a.star:
            return SlideCode(["0"], [f"{S(0)} += 1"], [f"{S(0)} -= 1"], S(0))
        if a.distinct:
            k = f"{const(key)}({v})"  # the value as a key: TRUE and 1 are two values, 1 and 1.0 one
            return SlideCode(
                ["{}"], [nn + f"{S(0)}[_k] = {S(0)}.get(_k := {k}, 0) + 1"],
                [f"if {v} is not None:", f"    _k = {k}", f"    _c = {S(0)}[_k] - 1", "    if _c:",
                 f"        {S(0)}[_k] = _c", "    else:", f"        del {S(0)}[_k]"],
                f"len({S(0)})", [nn + f"hash({k})"])
        return SlideCode(["0"], [nn + f"{S(0)} += 1"], [nn + f"{S(0)} -= 1"], S(0))
    if name in ("sum", "avg"):
        # the exact state of every window kind (aggregates.SUM_INITS); eviction subtracts exactly. The usual
        # float is ``sum_sub``'s first case, inline
        x = f"_x{o}"
        rem = [f"if {v}.__class__ is float and ({x} := {v} * {S(2)}).is_integer():", f"    {S(3)} -= _floor({x})",
               f"    {S(4)} -= 1", f"    if not {S(4)}: {S(2)}, {S(3)}, {S(5)} = {SUM_INITS[2]}, 0, {E0}",
               f"elif {v}.__class__ is int:", f"    {S(0)} -= 1", f"    {S(1)} -= {v}",
               f"elif {v} is not None: {const(sum_sub)}({s}, {o}, {v})"]
        return SlideCode(list(SUM_INITS), sum_add_code(v, s, o, const), rem,
                         sum_final_code(s, o, name == "avg", const))
    if name in ("var", "vars", "stddev", "stddevs"):
        sample = name.endswith("s")
        return SlideCode(["0"] * VAR_SLOTS,
                         [nn + f"{const(var_add)}({s}, {o}, {v})"], [nn + f"{const(var_sub)}({s}, {o}, {v})"],
                         f"{const(var_value)}({s}, {o}, {sample}, {name.startswith('stddev')})")
    if name in ("min", "max"):
        worse = ">" if name == "min" else "<"
        q = S(0)
        add = [f"if {v} is not None and {v} == {v}:", f"    _q = {q}",  # NaN is skipped, as in every window
               f"    while _q and _q[-1][1] {worse} {v}: _q.pop()", f"    _q.append((_i, {v}))"]
        rem = [f"if {v} is not None and {q}[0][0] == _i: {q}.popleft()"]
        # the usual case (a number of the same type as the group's last one) needs no call
        chk = [f"if {v} is not None and not ({v}.__class__ is c[{ref}].__class__ and ({v}.__class__ is float"
               f" or {v}.__class__ is int)): {const(minmax_check)}(c[{ref}], {v}, {name + '()'!r})"]
        return SlideCode([f"{const(deque)}()"], add, rem, f"({q}[0][1] if {q} else None)", chk, 1)
    if name in ("first_value", "last_value"):
        # the smallest (largest) arrival number in the range: a monotonic deque of (index, arrival, value),
        # as for min/max, since records enter and leave in ts order, not in arrival order
        q = S(0)
        later = ">" if name == "first_value" else "<"
        add = [f"if {v} is not None:", f"    _q = {q}", f"    while _q and _q[-1][1] {later} _n: _q.pop()",
               f"    _q.append((_i, _n, {v}))"]
        rem = [f"if {v} is not None and {q}[0][0] == _i: {q}.popleft()"]
        return SlideCode([f"{const(deque)}()"], add, rem, f"({q}[0][2] if {q} else None)")
    if name == "collect":
        # (arrival, value) in ts order; read in arrival order (sorting an in-order range costs O(n))
        q = S(0)
        return SlideCode([f"{const(deque)}()"], [nn + f"{q}.append((_n, {v}))"], [nn + f"{q}.popleft()"],
                         f"{const(arrival_values)}({q})")
    if name in ("median", "percentile"):
        p = 0.5 if name == "median" else float(a.args[1].value)
        return SlideCode(["[]"], [nn + f"{const(insort)}({S(0)}, {v})"],
                         [nn + f"{const(sorted_remove)}({S(0)}, {v})"], f"{const(percentile_sorted)}({S(0)}, {p!r})")
    raise ValueError(name)
