"""Overflowing and non-finite aggregate inputs give the same answer in every window kind.

Records never carry NaN or Infinity (the hub refuses them at ingest), but a
query can compute them (``v * m`` with m = 1e300) or overflow a sum of finite
values. sum/avg/min/max/var/stddev then answer alike in tumbling, hopping,
sliding, session and count windows and without a window: a sum is infinite
only when the true sum is, a mean of finite values never overflows, NaN
values are skipped by min/max and make sums and variances NaN.
"""

from __future__ import annotations

import json
import math

import pytest

from edgestream_hub.api import SimpleContext
from edgestream_hub.sql.processor import SqlProcessor

BIG = 1e308
AGGS = ", ".join(f"{agg}(v * m + w * m) AS {name}" for agg, name in [
    ("sum", "s"), ("avg", "a"), ("min", "lo"), ("max", "hi"), ("var", "var"), ("stddev", "sd"), ("vars", "vs"),
    ("stddevs", "sds")]) + ", count(*) AS n"
KINDS = ["TUMBLINGWINDOW(ss, 10)", "HOPPINGWINDOW(ss, 10, 5)", "SLIDINGWINDOW(ss, 10)", "SESSIONWINDOW(ss, 60, 10)",
         "COUNTWINDOW({n})", None]
INF_ = (1e10, 0, 1e300)  # v, w, m: x = v * m + w * m = +inf
NINF = (-1e10, 0, 1e300)
NAN_ = (1e10, -1e10, 1e300)  # inf + -inf


def _x(v, w=0, m=1):
    return (v, w, m)


# (values as (v, w, m), expected answers); None: not asserted beyond agreement across kinds
CASES = {
    "sum overflows, the mean does not": (
        [_x(BIG), _x(BIG)], {"s": math.inf, "a": BIG, "lo": BIG, "hi": BIG, "var": 0.0, "sd": 0.0}),
    "negative overflow": ([_x(-BIG), _x(-BIG)], {"s": -math.inf, "a": -BIG}),
    "an overflow the later values undo": ([_x(BIG), _x(BIG), _x(-BIG)], {"s": BIG, "a": BIG / 3}),
    "ints beyond the float range with a float": ([_x(2 * 10**308), _x(1.5)], {"s": math.inf, "a": BIG}),
    "a computed infinity": ([INF_, _x(1.0)], {"s": math.inf, "a": math.inf, "lo": 1.0, "hi": math.inf}),
    "both infinities": ([INF_, NINF, _x(2.0)], {"s": math.nan, "a": math.nan, "lo": -math.inf, "hi": math.inf,
                                                 "var": math.nan}),
    "a computed NaN": ([NAN_, _x(1.0), _x(3.0)], {"s": math.nan, "a": math.nan, "lo": 1.0, "hi": 3.0,
                                                  "var": math.nan, "sd": math.nan}),
    "a NaN first": ([NAN_, _x(2.0)], {"lo": 2.0, "hi": 2.0}),
    "a variance beyond floats": ([_x(1e200), _x(-1e200)], {"s": 0.0, "var": math.inf, "sd": 1e200,
                                                           "vs": math.inf, "sds": math.sqrt(2) * 1e200}),
}


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b or math.isclose(a, b, rel_tol=1e-12)
    return a == b


def _whole(window, values) -> list:
    """The rows over every record: one per window (or sliding row) that holds them all."""
    group = f" GROUP BY {window.format(n=len(values))}" if window else ""
    recs = [{"ts": 1000 * i, "v": v, "w": w, "m": m} for i, (v, w, m) in enumerate(values)]
    ctx = SimpleContext()
    p = SqlProcessor(f"SELECT {AGGS} FROM s{group}", ctx)
    rows = p.process(recs, 0) + p.flush()
    assert not ctx.dead, ctx.dead
    return [r for r in rows if r["n"] == len(values)]


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_every_window_kind_gives_the_same_answer(case):
    values, expected = CASES[case]
    answers = [(window, row) for window in KINDS for row in _whole(window, values)]
    assert {w for w, _ in answers} == set(KINDS)
    first = answers[0][1]
    for window, row in answers:
        assert all(_same(row[k], first[k]) for k in first), (window, row, first)
    for k, want in expected.items():
        assert _same(first[k], want), (k, first[k], want)


def test_a_sliding_sum_recovers_once_the_overflowing_values_leave():
    p = SqlProcessor("SELECT sum(v) AS s, avg(v) AS a FROM s GROUP BY SLIDINGWINDOW(ms, 5)", SimpleContext())
    rows = p.process([{"ts": 0, "v": BIG}, {"ts": 1, "v": BIG}, {"ts": 10, "v": 1.5}, {"ts": 11, "v": 2}], 0)
    rows += p.flush()
    assert rows == [{"s": BIG, "a": BIG}, {"s": math.inf, "a": BIG}, {"s": 1.5, "a": 1.5}, {"s": 3.5, "a": 1.75}]


@pytest.mark.parametrize("window", ["TUMBLINGWINDOW(ss, 10)", "SLIDINGWINDOW(ss, 10)", "COUNTWINDOW(4)"])
def test_state_holding_non_finite_values_snapshots_as_strict_json(window):
    query = f"SELECT {AGGS} FROM s GROUP BY {window}"
    recs = [{"ts": 1000 * i, "v": v, "w": w, "m": m} for i, (v, w, m) in enumerate([_x(BIG), _x(BIG), INF_, NAN_])]
    whole = SqlProcessor(query, SimpleContext())
    want = whole.process(recs, 0) + whole.flush()
    first = SqlProcessor(query, SimpleContext())
    got = first.process(recs[:3], 0)
    snap = json.loads(json.dumps(first.snapshot(), allow_nan=False))
    second = SqlProcessor(query, SimpleContext(), resume_state=snap)
    got += second.process(recs[3:], 0) + second.flush()
    assert len(got) == len(want) and all(_same(a[k], b[k]) for a, b in zip(got, want) for k in a)


@pytest.mark.parametrize("window", ["TUMBLINGWINDOW(ss, 10)", "SLIDINGWINDOW(ss, 10)", "COUNTWINDOW(2)"])
@pytest.mark.parametrize("values,median,p25", [
    ((INF_, INF_), math.inf, math.inf),
    ((NINF, NINF), -math.inf, -math.inf),
    ((_x(1.0), INF_), math.inf, math.inf),
    ((_x(-BIG), _x(BIG)), 0.0, -BIG / 2),
    ((_x(BIG), _x(BIG)), BIG, BIG),
])
def test_median_and_percentile_between_infinite_or_huge_values(window, values, median, p25):
    recs = [{"ts": 1000 * i, "v": v, "w": w, "m": m} for i, (v, w, m) in enumerate(values)]
    p = SqlProcessor(f"SELECT median(v * m + w * m) AS md, percentile(v * m + w * m, 0.25) AS p, count(*) AS n "
                     f"FROM s GROUP BY {window}", SimpleContext())
    rows = [r for r in p.process(recs, 0) + p.flush() if r["n"] == 2]
    assert rows and all(r["md"] == median and r["p"] == p25 for r in rows), rows
