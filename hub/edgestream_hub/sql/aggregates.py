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
from .errors import SqlRuntimeError
from .functions import kind, show

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
            d = f"_d{o}"  # the value as a key (keys.key): TRUE and 1 are two values, 1 and 1.0 one
            return AggCode(["set()"], [f"if {d} is not None: {S(0)}.add({d})"], f"len({S(0)})",
                           [f"{d} = {v} if {v}.__class__ is str or {v}.__class__ is int else _keyof({v})",
                            f"if {d} is not None: {d} in {S(0)}"])  # hashes it: a plugin's value may not hash
        return AggCode(["0"], [f"if {v} is not None: {S(0)} += 1"], S(0))
    if name in ("sum", "avg"):
        return AggCode(list(SUM_INITS), sum_add_code(v, s, o, const), sum_final_code(s, o, name == "avg", const))
    if name in ("min", "max"):
        # a value of the class of the group's current one compares inline (that one was checked, so this
        # one is of a kind min/max take); so does a group's first number, string or boolean (NaN, which
        # only a computation makes, is skipped like NULL); anything else goes to ``better``, which fails
        # a value of another kind than the group's
        b = f"_b{o}"
        op = "<" if name == "min" else ">"
        return AggCode(["None"], [f"if {b}: {S(0)} = {v}"], S(0),
                       [f"{b} = {v} is not None and ({v} {op} {S(0)} if {v}.__class__ is {S(0)}.__class__ "
                        f"else {v} == {v} if {S(0)} is None and {v}.__class__ in _PLAIN "
                        f"else {const(better)}({S(0)}, {v}, {op!r}, {name + '()'!r}))"])
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


def better(cur: Any, v: Any, op: str, what: str) -> bool:
    """Whether ``v`` replaces ``cur`` as the min (``op`` "<") or max (">") of a group, when they are not of one
    class. ``min``/``max`` take numbers, strings or booleans, one kind per group; NaN is skipped like NULL."""
    k = kind(v)
    if k not in ("number", "string", "boolean"):
        raise SqlRuntimeError(f"{what} takes numbers, strings or booleans, got {k} {show(v)}")
    if cur is None:
        return v == v
    if kind(cur) != k:
        raise SqlRuntimeError(f"{what} cannot compare {k} {show(v)} with the group's earlier {kind(cur)} values")
    return v < cur if op == "<" else v > cur


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


# -- sum and avg: the correctly rounded sum, the same in every window kind -----------------------------------
# A float sum is kept exactly, as an integer count of units of 2**-E, with E the finest binary place any of
# the values needs (0.1 needs 2**-55): a float times 2.0**E is then an integer-valued float, converted to an
# int without rounding. Adding and evicting are exact, so the answer is the correctly rounded sum of the
# values (as math.fsum gives it), whatever the window kind, the arrival order or the values evicted before;
# the mean is that exact sum divided by the count, rounded once. The usual value costs one multiplication, a
# test and an integer addition (``sum_add_code``); a value that needs a finer E, or is huge or not finite,
# goes through ``sum_slow``.
# E starts at 52, where every float of magnitude 1 or more is a whole number of units and v * 2.0**52 stays
# below 2**63 (a fast int) up to v = 2048: typical readings never take the slow path after the first.
# slots: 0 ints held, 1 their exact sum, 2 2.0**E (NaN when E is beyond the float range: always slow), 3 the
#        floats' exact sum in units of 2**-E, 4 finite floats held, 5 E, 6 +inf held, 7 -inf held, 8 NaN held
E0 = 52
SUM_INITS = ["0", "0", repr(2.0**E0), "0", "0", str(E0), "0", "0", "0"]
INF = math.inf
NAN = math.nan


def sum_add_code(v: str, s: str, o: int, const: Callable[[Any], str]) -> list[str]:
    """Statements adding the value in ``v`` to the sum state from slot ``o`` of ``s`` (every window kind)."""
    x = f"_x{o}"
    # math.floor of an integer-valued float is that integer, exactly, and cheaper to call than int()
    return [f"if {v}.__class__ is float:",
            f"    {x} = {v} * {s}[{o + 2}]",
            f"    if {x}.is_integer():", f"        {s}[{o + 3}] += _floor({x})", f"        {s}[{o + 4}] += 1",
            f"    else: {const(sum_slow)}({s}, {o}, {v}, 1)",
            f"elif {v}.__class__ is int:", f"    {s}[{o}] += 1", f"    {s}[{o + 1}] += {v}",
            f"elif {v} is not None: {const(sum_slow)}({s}, {o}, {v}, 1)"]


def sum_final_code(s: str, o: int, mean: bool, const: Callable[[Any], str]) -> str:
    """The expression of sum (``mean`` False) or avg from the state at slot ``o`` of ``s``: ``sum_value``, with
    the usual avg (finite floats only) inline. That mean is a ratio of exact integers no larger than the
    largest value held, so it cannot overflow."""
    call = f"{const(sum_value)}({s}, {o}, {mean})"
    if not mean:
        return call
    return (f"({s}[{o + 3}] / ({s}[{o + 4}] << {s}[{o + 5}]) if {s}[{o + 4}] and not ({s}[{o}] or {s}[{o + 6}] "
            f"or {s}[{o + 7}] or {s}[{o + 8}]) else {call})")


def _ratio(a: int, b: int) -> float:
    """a / b correctly rounded (b > 0), infinite when it is beyond the largest float."""
    try:
        return a / b
    except OverflowError:
        return INF if a > 0 else -INF


def sum_slow(s: list, o: int, v: Any, d: int) -> None:
    """Add (``d`` 1) or evict (-1) a float the fast path could not take: a non-finite one is counted apart;
    a finite one needing a finer unit refines the state's unit first."""
    if v.__class__ is not float:  # a plugin's number (an int subclass, a Decimal): as the float it is nearest
        if isinstance(v, int):
            s[o] += d
            s[o + 1] += d * int(v)
            return
        v = float(v)
    if v - v != 0:
        s[o + (6 if v > 0 else 7 if v < 0 else 8)] += d
        return
    num, den = v.as_integer_ratio()
    e = den.bit_length() - 1  # v = num * 2**-e exactly
    if e > s[o + 5]:
        s[o + 3] <<= e - s[o + 5]
        s[o + 5] = e
        s[o + 2] = 2.0**e if e < 1000 else NAN  # NaN: no float scales these values exactly, take this path
    s[o + 3] += d * (num << (s[o + 5] - e))
    s[o + 4] += d


def sum_sub(s: list, o: int, v: Any) -> None:
    """Sliding and count windows: evict a float added by ``sum_add_code``. The state returns to its first
    unit when no float is left, so the integers it holds stay small."""
    x = v * s[o + 2] if v.__class__ is float else NAN
    if x.is_integer():
        s[o + 3] -= int(x)
        s[o + 4] -= 1
    else:
        sum_slow(s, o, v, -1)
    if not s[o + 4]:
        s[o + 2], s[o + 3], s[o + 5] = 2.0**E0, 0, E0


def sum_value(s: list, o: int, mean: bool) -> Any:
    """sum (an int while only ints are held) or avg; NaN with a NaN or both infinities, else ±inf if held."""
    n = s[o] + s[o + 4] + s[o + 6] + s[o + 7] + s[o + 8]
    if not n:
        return None
    if s[o + 8] or (s[o + 6] and s[o + 7]):
        return NAN
    if s[o + 6] or s[o + 7]:
        return INF if s[o + 6] else -INF
    if not s[o + 4]:  # ints only
        return _ratio(s[o + 1], n) if mean else s[o + 1]
    e = s[o + 5]
    exact = (s[o + 1] << e) + s[o + 3]
    return _ratio(exact, n << e) if mean else _ratio(exact, 1 << e)


def percentile(values: list, p: float) -> Any:
    """Exact percentile by linear interpolation between closest ranks (median = p 0.5)."""
    return percentile_sorted(sorted(values), p)


def percentile_sorted(xs: list, p: float) -> Any:
    """``percentile`` of values already sorted. Between two equal values it is that value (so the median of
    [inf, inf] is inf), and the interpolation never overflows between finite values."""
    if not xs:
        return None
    pos = p * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    frac = pos - lo
    a, b = xs[lo], xs[hi]
    if frac == 0 or a == b:
        return a
    step = b - a
    if step - step != 0:  # an infinite value, or finite ones whose distance overflows
        return a * (1 - frac) + b * frac
    return a + step * frac
