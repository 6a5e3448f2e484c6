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
from typing import Any, Callable

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


def agg_code(a: ir.Agg, v: str, s: str, o: int, const: Callable[[Any], str]) -> AggCode:
    """Code for aggregate ``a`` whose value is in variable ``v``, state list ``s``, first slot ``o``."""

    def S(k: int) -> str:
        return f"{s}[{o + k}]"

    name = a.name
    if name == "count":
        if a.star:
            return AggCode(["0"], [f"{S(0)} += 1"], S(0))
        if a.distinct:
            return AggCode(["set()"], [f"if {v} is not None: {S(0)}.add({v})"], f"len({S(0)})",
                           [f"if {v} is not None: {v} in {S(0)}"])  # hashes v: raises if unhashable
        return AggCode(["0"], [f"if {v} is not None: {S(0)} += 1"], S(0))
    if name in ("sum", "avg"):
        # ints summed exactly; floats by plain addition while the sum stays finite (the usual case costs
        # one check), then exactly (see ``sum_overflow``); non-finite values counted apart
        t = f"_f{o}"
        return AggCode(SUM_INITS, [f"if {v} is not None:", f"    {S(0)} += 1",
                                   f"    if {v}.__class__ is int: {S(1)} += {v}",
                                   "    else:", f"        {t} = {S(2)} + {v}",
                                   f"        if {t} - {t} == 0: {S(2)} = {t}",
                                   f"        else: {const(sum_overflow)}({s}, {o}, {v})"],
                       f"{const(sum_value)}({s}, {o}, {name == 'avg'})")
    if name in ("min", "max"):
        # NaN (only a computed value can be one) is skipped like NULL: it compares false, so only the
        # first value needs the v == v test
        better = f"_b{o}"
        op = "<" if name == "min" else ">"
        return AggCode(["None"], [f"if {better}: {S(0)} = {v}"], S(0),
                       [f"{better} = {v} is not None and ({v} {op} {S(0)} if {S(0)} is not None else {v} == {v})"])
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
    num, den = max(0, n * s2 - s1 * s1), n * (n - 1 if sample else n) * scale
    return _sqrt_ratio(num, den) if root else _ratio(num, den)


def _sqrt_ratio(num: int, den: int) -> float:
    """sqrt(num / den) without overflowing on the way (the variance of ±1e200 is beyond floats, not its root)."""
    try:
        return math.sqrt(num / den)
    except OverflowError:
        shift = (num.bit_length() - den.bit_length() - 100) & ~1
        try:
            return math.ldexp(math.sqrt((num >> shift) / den), shift // 2)
        except OverflowError:
            return INF


# -- sum and avg: the same answer in every window kind --------------------------------------------------
# slots: 0 non-NULL count, 1 int sum (exact), 2 float sum, 3 its compensation (sliding and count windows:
# Neumaier, so adding and evicting does not drift), 4 the float sum in exact units of 2**-1074 once the
# float sum overflowed (else None), 5 floats held (sliding and count windows), 6 +inf, 7 -inf, 8 NaN held.
# Tumbling, hopping and session windows pay one plain addition and a finiteness check per float; on
# overflow the state turns exact, so in every window kind a sum is infinite only when the true sum is,
# and a mean of finite values comes from the exact sum (avg of [1e308, 1e308] is 1e308). Sliding windows
# turn exact the same way, and back to floats when the range holds no float.
SUM_INITS = ["0", "0", "0", "0.0", "None", "0", "0", "0", "0"]
INF = math.inf


def _ratio(a: int, b: int) -> float:
    """a / b correctly rounded (b > 0), infinite when it is beyond the largest float."""
    try:
        return a / b
    except OverflowError:
        return INF if a > 0 else -INF


def _non_finite(s: list, o: int, v: float, d: int) -> None:
    s[o + (6 if v > 0 else 7 if v < 0 else 8)] += d


def _to_exact(s: list, o: int) -> int:
    """Switch the float sum to exact units (it overflowed); later floats come to the exact sum."""
    u = s[o + 4] = _units(s[o + 2]) + _units(s[o + 3])
    s[o + 2], s[o + 3] = INF, 0.0  # a plain addition to INF is never finite: the fast path hands over
    return u


def sum_overflow(s: list, o: int, v: float) -> None:
    """Tumbling, hopping, session: the plain float sum went non-finite on ``v``."""
    if v - v != 0:
        _non_finite(s, o, v, 1)
        return
    u = s[o + 4]
    s[o + 4] = (_to_exact(s, o) if u is None else u) + _units(v)


def sum_add(s: list, o: int, v: float) -> None:
    """Sliding and count windows: add a float (compensated, or exact after an overflow)."""
    if v - v != 0:
        _non_finite(s, o, v, 1)
        return
    s[o + 5] += 1
    u = s[o + 4]
    if u is None:
        a = s[o + 2]
        t = a + v
        if t - t == 0:  # Neumaier: the rounding error of each addition goes to the compensation
            s[o + 3] += (a - t) + v if abs(a) >= abs(v) else (v - t) + a
            s[o + 2] = t
            return
        u = _to_exact(s, o)
    s[o + 4] = u + _units(v)


def sum_sub(s: list, o: int, v: float) -> None:
    """Sliding and count windows: evict a float added by ``sum_add``."""
    if v - v != 0:
        _non_finite(s, o, v, -1)
        return
    s[o + 5] -= 1
    if not s[o + 5]:  # no float left: start the float sum afresh, leaving no rounding behind
        s[o + 2], s[o + 3], s[o + 4] = 0, 0.0, None
        return
    u = s[o + 4]
    if u is None:
        a = s[o + 2]
        t = a - v
        if t - t == 0:
            s[o + 3] += (a - t) - v if abs(a) >= abs(v) else (-v - t) + a
            s[o + 2] = t
            return
        u = _to_exact(s, o)
    s[o + 4] = u - _units(v)


def sum_value(s: list, o: int, mean: bool) -> Any:
    """sum (an int while only ints are held) or avg; NaN with a NaN or both infinities, else ±inf if held."""
    n = s[o]
    if not n:
        return None
    if s[o + 8] or (s[o + 6] and s[o + 7]):
        return math.nan
    if s[o + 6] or s[o + 7]:
        return INF if s[o + 6] else -INF
    isum, f, u = s[o + 1], s[o + 2], s[o + 4]
    if not s[o + 5] and f.__class__ is not float:  # ints only
        return _ratio(isum, n) if mean else isum
    if u is None:
        try:
            total = isum + (f + s[o + 3])
        except OverflowError:  # an int beyond the float range
            total = INF
        if total - total == 0:
            return total / n if mean else total
        u = _units(f) + _units(s[o + 3])
    exact = (isum << _F) + u
    return _ratio(exact, n << _F) if mean else _ratio(exact, 1 << _F)


def percentile(values: list, p: float) -> Any:
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
