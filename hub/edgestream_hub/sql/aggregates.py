"""Aggregate templates: the state slots, the update statements and the final value of each aggregate.

State for one window and group is one Python list; each aggregate owns a
few slots in it. Distributive and algebraic aggregates keep O(1) slots
(count, sum, avg, min, max, first/last, variance from exact sums);
holistic ones (median, percentile, collect, count DISTINCT) keep their
values. Updates skip NULLs, except ``count(*)`` which counts rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from . import ir

NUMERIC = {"sum", "avg", "stddev", "stddevs", "var", "vars", "median", "percentile"}


@dataclass
class AggCode:
    inits: list  # python expressions, one per slot
    update: list  # statements using the value variable and the state variable
    final: str  # python expression of the result
    # statements that may raise on a bad value (comparisons, hashing); every aggregate's run before
    # any update, so a record that fails changes no aggregate of its window
    pre: list = field(default_factory=list)


def agg_code(a: ir.Agg, v: str, s: str, o: int, const) -> AggCode:
    """Code for aggregate ``a`` whose value is in variable ``v``, state list ``s``, first slot ``o``."""
    S = lambda k: f"{s}[{o + k}]"  # noqa: E731
    name = a.name
    if name == "count":
        if a.star:
            return AggCode(["0"], [f"{S(0)} += 1"], S(0))
        if a.distinct:
            return AggCode(["set()"], [f"if {v} is not None: {S(0)}.add({v})"], f"len({S(0)})",
                           [f"if {v} is not None: {v} in {S(0)}"])  # hashes v: raises if unhashable
        return AggCode(["0"], [f"if {v} is not None: {S(0)} += 1"], S(0))
    if name == "sum":
        return AggCode(["None"], [f"if {v} is not None: {S(0)} = {v} if {S(0)} is None else {S(0)} + {v}"], S(0))
    if name == "avg":
        return AggCode(["0", "0"], [f"if {v} is not None:", f"    {S(0)} += {v}", f"    {S(1)} += 1"],
                       f"({S(0)} / {S(1)} if {S(1)} else None)")
    if name in ("min", "max"):
        better = f"_b{o}"
        op = "<" if name == "min" else ">"
        return AggCode(["None"], [f"if {better}: {S(0)} = {v}"], S(0),
                       [f"{better} = {v} is not None and ({S(0)} is None or {v} {op} {S(0)})"])
    if name in ("var", "vars", "stddev", "stddevs"):
        return AggCode(["0"] * VAR_SLOTS, [f"if {v} is not None: {const(var_add)}({s}, {o}, {v})"],
                       f"{const(var_value)}({s}, {o}, {name.endswith('s')}, {name.startswith('stddev')})")
    if name == "first_value":
        return AggCode(["None"], [f"if {v} is not None and {S(0)} is None: {S(0)} = {v}"], S(0))
    if name == "last_value":
        return AggCode(["None"], [f"if {v} is not None: {S(0)} = {v}"], S(0))
    if name == "collect":
        return AggCode(["[]"], [f"if {v} is not None: {S(0)}.append({v})"], f"list({S(0)})")
    if name in ("median", "percentile"):
        p = 0.5 if name == "median" else float(a.args[1].value)  # validated constant
        return AggCode(["[]"], [f"if {v} is not None: {S(0)}.append({v})"], f"{const(percentile)}({S(0)}, {p!r})")
    raise ValueError(name)


# -- variance: exact over ints and floats -----------------------------------------------------------
# Every finite double is an integer multiple of 2**-1074, so floats are summed as exact integers in
# that unit: adding and evicting never round, and a huge value that leaves the window leaves no
# cancellation error behind (a shifted float sum of squares did). int / int true division at emit
# rounds once, correctly.
# slots: 0 n_int, 1 sum_int, 2 sumsq_int, 3 n_float, 4 sum_float (units 2**-1074),
#        5 sumsq_float (units 2**-2148), 6 non-finite count
VAR_SLOTS = 7
_F = 1074


def _units(v: float) -> int:
    num, den = v.as_integer_ratio()
    return num << (_F + 1 - den.bit_length())


def var_add(s: list, o: int, v: Any) -> None:
    if v.__class__ is int:
        s[o] += 1
        s[o + 1] += v
        s[o + 2] += v * v
    elif v - v != 0:
        s[o + 6] += 1
    else:
        x = _units(v)
        s[o + 3] += 1
        s[o + 4] += x
        s[o + 5] += x * x


def var_sub(s: list, o: int, v: Any) -> None:
    if v.__class__ is int:
        s[o] -= 1
        s[o + 1] -= v
        s[o + 2] -= v * v
    elif v - v != 0:
        s[o + 6] -= 1
    else:
        x = _units(v)
        s[o + 3] -= 1
        s[o + 4] -= x
        s[o + 5] -= x * x


def var_value(s: list, o: int, sample: bool, root: bool) -> Any:
    ni, nf = s[o], s[o + 3]
    n = ni + nf + s[o + 6]
    if n == 0 or (sample and n < 2):
        return None
    if s[o + 6]:
        return math.nan
    if nf:
        s1 = (s[o + 1] << _F) + s[o + 4]
        s2 = (s[o + 2] << (2 * _F)) + s[o + 5]
        scale = 1 << (2 * _F)
    else:
        s1, s2, scale = s[o + 1], s[o + 2], 1
    # n * sum(x²) - sum(x)² = n² · population variance, exactly
    var = max(0, n * s2 - s1 * s1) / (n * (n - 1 if sample else n) * scale)
    return math.sqrt(var) if root else var


def percentile(values: list, p: float):
    """Exact percentile by linear interpolation between closest ranks (median = p 0.5)."""
    if not values:
        return None
    xs = sorted(values)
    pos = p * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    frac = pos - lo
    if frac == 0:
        return xs[lo]
    return xs[lo] + (xs[hi] - xs[lo]) * frac
