"""Aggregate templates: the state slots, the update statements and the final value of each aggregate.

State for one window and group is one Python list; each aggregate owns a
few slots in it. Distributive and algebraic aggregates keep O(1) slots
(count, sum, avg, min, max, first/last, variance by Welford's method);
holistic ones (median, percentile, collect, count DISTINCT) keep their
values. Updates skip NULLs, except ``count(*)`` which counts rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import ir

NUMERIC = {"sum", "avg", "stddev", "stddevs", "var", "vars", "median", "percentile"}


@dataclass
class AggCode:
    inits: list  # python expressions, one per slot
    update: list  # statements using the value variable and the state variable
    final: str  # python expression of the result


def agg_code(a: ir.Agg, v: str, s: str, o: int, const) -> AggCode:
    """Code for aggregate ``a`` whose value is in variable ``v``, state list ``s``, first slot ``o``."""
    S = lambda k: f"{s}[{o + k}]"  # noqa: E731
    name = a.name
    if name == "count":
        if a.star:
            return AggCode(["0"], [f"{S(0)} += 1"], S(0))
        if a.distinct:
            return AggCode(["set()"], [f"if {v} is not None: {S(0)}.add({v})"], f"len({S(0)})")
        return AggCode(["0"], [f"if {v} is not None: {S(0)} += 1"], S(0))
    if name == "sum":
        return AggCode(["None"], [f"if {v} is not None: {S(0)} = {v} if {S(0)} is None else {S(0)} + {v}"], S(0))
    if name == "avg":
        return AggCode(["0", "0"], [f"if {v} is not None:", f"    {S(0)} += {v}", f"    {S(1)} += 1"],
                       f"({S(0)} / {S(1)} if {S(1)} else None)")
    if name == "min":
        return AggCode(["None"], [f"if {v} is not None and ({S(0)} is None or {v} < {S(0)}): {S(0)} = {v}"], S(0))
    if name == "max":
        return AggCode(["None"], [f"if {v} is not None and ({S(0)} is None or {v} > {S(0)}): {S(0)} = {v}"], S(0))
    if name in ("var", "vars", "stddev", "stddevs"):
        up = [f"if {v} is not None:", f"    {S(0)} += 1", f"    _d = {v} - {S(1)}", f"    {S(1)} += _d / {S(0)}",
              f"    {S(2)} += _d * ({v} - {S(1)})"]
        if name in ("var", "stddev"):
            val = f"(max(0.0, {S(2)}) / {S(0)} if {S(0)} else None)"
        else:
            val = f"(max(0.0, {S(2)}) / ({S(0)} - 1) if {S(0)} > 1 else None)"
        if name.startswith("stddev"):
            val = f"(None if (_v := {val}) is None else _sqrt(_v))"
        return AggCode(["0", "0.0", "0.0"], up, val)
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
