"""SLIDINGWINDOW runs incrementally: every record is added once and evicted once, never rescanned.

Operation counts stand in for timing here (speed is measured in
``bench/bench_sql.py``): comparisons made by min/max are counted through a
float subclass, and the executor's ``touched`` counter (values folded in
or evicted) must stay near two per record where a rescan would grow with
the window. Results are checked against a brute-force recomputation.
"""

from __future__ import annotations

import copy
import json
import math
import random
import statistics

from hypothesis import HealthCheck, given, settings, strategies as st

from edgestream_hub.api import SimpleContext
from edgestream_hub.sql.processor import SqlProcessor

N = 20_000
SIZE = 5_000  # ms; one record per ms, so each row covers ~5,000 records


class Counted(float):
    """A float that counts the comparisons made on it."""

    calls = 0

    def __lt__(self, other):
        Counted.calls += 1
        return float(self) < float(other)

    def __gt__(self, other):
        Counted.calls += 1
        return float(self) > float(other)


def _run(query: str, recs: list, **kw) -> tuple[list, SqlProcessor, SimpleContext]:
    ctx = SimpleContext()
    p = SqlProcessor(query, ctx, **kw)
    out = []
    for i in range(0, len(recs), 1000):
        out += p.process(recs[i: i + 1000], 0)
    return out + p.flush(), p, ctx


def test_min_max_compare_a_constant_number_of_times_per_record():
    rnd = random.Random(3)
    recs = [{"ts": i, "v": Counted(rnd.random())} for i in range(N)]
    Counted.calls = 0
    out, p, _ = _run(f"SELECT min(v) AS lo, max(v) AS hi FROM s GROUP BY SLIDINGWINDOW(ms, {SIZE})", recs)
    assert len(out) == N
    # a rescan would compare ~SIZE times per row (10^8 here); the monotonic deques stay near 3 per record each
    assert Counted.calls <= 8 * N, Counted.calls
    vals = [float(r["v"]) for r in recs]
    for i in (0, 1, SIZE - 1, SIZE, SIZE + 1, N // 2, N - 1):
        window = vals[max(0, i - SIZE): i + 1]
        assert (out[i]["lo"], out[i]["hi"]) == (min(window), max(window))


def test_count_windows_are_incremental_too():
    """COUNTWINDOW(5000, 1): a window per record over the last 5,000, without re-aggregating them."""
    rnd = random.Random(5)
    recs = [{"ts": i, "v": Counted(rnd.random())} for i in range(N)]
    Counted.calls = 0
    out, _, _ = _run(f"SELECT min(v) AS lo, max(v) AS hi, count(*) AS n FROM s GROUP BY COUNTWINDOW({SIZE}, 1)", recs)
    assert len(out) == N - SIZE + 1
    assert Counted.calls <= 8 * N, Counted.calls
    vals = [float(r["v"]) for r in recs]
    for i in (0, 1, len(out) // 2, len(out) - 1):
        window = vals[i: i + SIZE]
        assert (out[i]["lo"], out[i]["hi"], out[i]["n"]) == (min(window), max(window), SIZE)


def test_algebraic_aggregates_touch_each_value_twice():
    recs = [{"ts": i, "v": i % 97} for i in range(N)]
    out, p, _ = _run(f"SELECT count(*) AS n, sum(v) AS s, avg(v) AS a, stddev(v) AS sd, count(DISTINCT v) AS d "
                     f"FROM s GROUP BY SLIDINGWINDOW(ms, {SIZE})", recs)
    assert len(out) == N
    # every record enters once and is evicted at most once: no rescan of the range
    assert p.executor.touched <= 2 * N, p.executor.touched
    assert p.executor.touched >= N  # and it does count
    vals = [r["v"] for r in recs]
    for i in (0, SIZE, SIZE + 7, N - 1):
        window = vals[max(0, i - SIZE): i + 1]
        row = out[i]
        assert (row["n"], row["s"], row["d"]) == (len(window), sum(window), len(set(window)))
        assert math.isclose(row["a"], statistics.fmean(window), rel_tol=1e-12)
        assert math.isclose(row["sd"], statistics.pstdev(window), rel_tol=1e-9)


def test_floats_do_not_drift_after_large_values_are_evicted():
    """Spikes enter and leave the window; sums and variances of what remains stay exact to ~1e-9."""
    rnd = random.Random(11)
    recs = []
    for i in range(4000):
        v = rnd.choice([1e9, -3e8]) if rnd.random() < 0.02 else rnd.uniform(-1, 1)
        recs.append({"ts": i * 10, "v": v})
    out, _, _ = _run("SELECT sum(v) AS s, avg(v) AS a, var(v) AS var, vars(v) AS vs FROM s "
                     "GROUP BY SLIDINGWINDOW(ms, 500)", recs)
    vals = [r["v"] for r in recs]
    for i, row in enumerate(out):
        window = vals[max(0, i - 50): i + 1]
        assert math.isclose(row["s"], math.fsum(window), rel_tol=1e-9, abs_tol=1e-9), (i, row)
        assert math.isclose(row["var"], statistics.pvariance(window), rel_tol=1e-9, abs_tol=1e-9), (i, row)
        if len(window) > 1:
            assert math.isclose(row["vs"], statistics.variance(window), rel_tol=1e-9, abs_tol=1e-9), (i, row)


def test_int_sum_stays_int_once_the_floats_leave():
    recs = [{"ts": 0, "v": 1}, {"ts": 1, "v": 0.5}, {"ts": 5, "v": 2}]
    out, _, _ = _run("SELECT sum(v) AS s FROM s GROUP BY SLIDINGWINDOW(ms, 3)", recs)
    assert out == [{"s": 1}, {"s": 1.5}, {"s": 2}]
    assert type(out[2]["s"]) is int


def test_non_finite_values_count_while_in_the_window():
    recs = [{"ts": 0, "v": 1.0}, {"ts": 1, "v": "inf"}, {"ts": 2, "v": 2.0}, {"ts": 9, "v": 3.0}]
    out, _, ctx = _run("SELECT sum(CAST(v AS FLOAT)) AS s, var(CAST(v AS FLOAT)) AS var FROM s "
                       "GROUP BY SLIDINGWINDOW(ms, 5)", recs)
    assert [r["s"] for r in out] == [1.0, math.inf, math.inf, 3.0]
    assert math.isnan(out[1]["var"]) and out[3]["var"] == 0.0
    assert not ctx.dead


def test_values_that_cannot_be_aggregated_fail_on_arrival_only():
    recs = [{"k": "a", "ts": 0, "v": 1}, {"k": "a", "ts": 1, "v": "x"}, {"k": "b", "ts": 2, "v": "x"},
            {"k": "a", "ts": 3, "v": {"o": 1}}, {"k": "b", "ts": 4, "v": "y"}, {"k": "a", "ts": 5, "v": 3}]
    out, _, ctx = _run("SELECT k, min(v) AS lo, max(v) AS hi FROM s GROUP BY k, SLIDINGWINDOW(ms, 10)", recs)
    assert out == [{"k": "a", "lo": 1, "hi": 1}, {"k": "b", "lo": "x", "hi": "x"},
                   {"k": "b", "lo": "x", "hi": "y"}, {"k": "a", "lo": 1, "hi": 3}]
    reasons = [r for _, r in ctx.dead]
    assert len(reasons) == 2
    assert "min() cannot compare string 'x' with the group's earlier number values" in reasons[0]
    assert "takes numbers, strings or booleans, got object" in reasons[1]
    # count(DISTINCT) counts arrays too, by their contents
    out, _, ctx = _run("SELECT count(DISTINCT v) AS d FROM s GROUP BY SLIDINGWINDOW(ms, 10)",
                       [{"ts": 0, "v": [1]}, {"ts": 1, "v": 2}, {"ts": 2, "v": [1.0]}])
    assert out == [{"d": 1}, {"d": 2}, {"d": 2}] and not ctx.dead


def test_groups_that_go_quiet_are_dropped():
    """Keys that appear once and never again do not pile up."""
    p = SqlProcessor("SELECT k, count(*) AS n FROM s GROUP BY k, SLIDINGWINDOW(ms, 100)", SimpleContext())
    peaks = []
    for chunk in range(20):
        p.process([{"k": f"k{chunk}-{i}", "ts": chunk * 10_000 + i} for i in range(1000)], 0)
        peaks.append((len(p.executor.groups), p.metrics["live_states"]))
    assert max(g for g, _ in peaks[5:]) <= 1200, peaks
    assert max(s for _, s in peaks[5:]) <= 1200, peaks


records = st.lists(st.tuples(st.integers(0, 300), st.sampled_from(["a", "b"]),
                             st.one_of(st.none(), st.integers(-5, 5), st.floats(-1e6, 1e6))), max_size=40)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records, st.sampled_from([0, 30]), st.randoms(use_true_random=False))
def test_matches_brute_force_recomputation_and_survives_snapshots(rows, lateness, rnd):
    """Every aggregate, any order within the lateness, a snapshot/resume at a random point."""
    rows = sorted(rows, key=lambda r: r[0] + rnd.randint(0, lateness))
    recs = [{"ts": ts, "g": g, "v": v} for ts, g, v in rows]
    q = ("SELECT g, count(*) AS n, count(v) AS nv, sum(v) AS s, min(v) AS lo, max(v) AS hi, median(v) AS m, "
         "percentile(v, 0.9) AS p9, collect(v) AS c, count(DISTINCT v) AS d, first_value(v) AS f, "
         "last_value(v) AS l, stddevs(v) AS sd, window_end() AS we FROM s GROUP BY g, SLIDINGWINDOW(ms, 50)")
    ctx = SimpleContext()
    p = SqlProcessor(q, ctx, lateness_ms=lateness)
    cut = rnd.randint(0, len(recs))
    got = p.process(recs[:cut], 0)
    snap = json.loads(json.dumps(p.snapshot()))
    p2 = SqlProcessor(q, SimpleContext(), lateness_ms=lateness, resume_state=snap)
    got += p2.process(recs[cut:], 0) + p2.flush()
    # brute force: a row per non-late record, in (ts, arrival) order, over every accepted record in range
    wm, accepted = -math.inf, []
    for i, r in enumerate(recs):
        if r["ts"] < wm:
            continue
        wm = max(wm, r["ts"] - lateness)
        accepted.append((r["ts"], i, r))
    accepted.sort(key=lambda x: (x[0], x[1]))
    want = []
    for ts, i, r in accepted:
        # a row is emitted when the watermark reaches ts: it sees records that arrived by then
        emitted_at = next((j for j, x in enumerate(recs) if j >= i and x["ts"] - lateness >= ts), len(recs))
        # first_value, last_value and collect read the range in arrival order
        win = [x for t, j, x in sorted(accepted, key=lambda a: a[1])
               if x["g"] == r["g"] and ts - 50 <= t <= ts and j <= emitted_at]
        vs = [x["v"] for x in win if x["v"] is not None]
        srt = sorted(vs)
        pos = 0.9 * (len(srt) - 1)
        lo = int(pos)
        p9 = None if not srt else srt[lo] + (srt[min(lo + 1, len(srt) - 1)] - srt[lo]) * (pos - lo)
        want.append({"g": r["g"], "n": len(win), "nv": len(vs), "s": math.fsum(vs) if vs else None,
                     "lo": min(vs) if vs else None, "hi": max(vs) if vs else None,
                     "m": statistics.median(vs) if vs else None, "p9": p9, "c": vs, "d": len(set(vs)),
                     "f": vs[0] if vs else None, "l": vs[-1] if vs else None,
                     "sd": statistics.stdev(vs) if len(vs) > 1 else None, "we": ts})
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert list(a) == list(b)
        for k in a:
            if isinstance(b[k], float) or isinstance(a[k], float):
                assert math.isclose(a[k], b[k], rel_tol=1e-9, abs_tol=1e-6), (k, a, b)
            else:
                assert a[k] == b[k], (k, a, b)


def test_stddev_after_a_huge_value_leaves_the_window_is_exact():
    # a running float sum of squares would keep the huge value's rounding error
    p = SqlProcessor("SELECT stddev(v) AS sd, var(v) AS vr FROM s GROUP BY SLIDINGWINDOW(ms, 10)", SimpleContext())
    rows = p.process([{"ts": 0, "v": -138037.72384613415}, {"ts": 1, "v": 1.0}, {"ts": 51, "v": 0.0},
                      {"ts": 52, "v": 1.0}], 0) + p.flush()
    assert rows[-1]["vr"] == 0.25 and rows[-1]["sd"] == 0.5
    assert rows[-2]["sd"] == 0.0


mixed = st.lists(st.tuples(st.integers(0, 400), st.sampled_from(["a", "b", "c"]),
                           st.one_of(st.none(), st.integers(-5, 5), st.floats(-1e6, 1e6), st.just("x"))),
                 max_size=150)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mixed, st.sampled_from([0, 30]), st.randoms(use_true_random=False), st.sampled_from([1, 5, 100]))
def test_the_inline_path_does_what_add_and_close_do(rows, lateness, rnd, batch):
    """The generated code adds, evicts and emits a row due at once itself; the executor's add and close (which
    state limits that are never reached always take) must give the same rows, dead letters and state."""
    rows = sorted(rows, key=lambda r: r[0] + rnd.randint(0, lateness))
    recs = [{"ts": ts, "g": g, "v": v} for ts, g, v in rows]
    q = ("SELECT g, count(*) AS n, sum(v) AS s, avg(v) AS a, min(v) AS lo, max(v) AS hi, collect(v) AS c, "
         "first_value(v) AS f, last_value(v) AS l, count(DISTINCT v) AS d, window_start() AS ws "
         "FROM s GROUP BY g, SLIDINGWINDOW(ms, 20) HAVING count(v) > 0")
    runs = []
    for max_keys in (None, 10**6):
        ctx = SimpleContext()
        p = SqlProcessor(q, ctx, lateness_ms=lateness, max_keys=max_keys)
        out = []
        for i in range(0, len(recs), batch):
            out += p.process(recs[i: i + batch], 0)
        ex = p.executor
        state = (copy.deepcopy(ex.state()), ex.touched, ex.emitted, ex._closes)  # groups in any order
        runs.append((out + p.flush(), ctx.dead, ctx.late_records, state))
    assert "_g = _G.get(k)" in SqlProcessor(q, SimpleContext()).program.source  # the first run took the path
    assert runs[0] == runs[1]


def test_rows_emitted_as_their_record_arrives_carry_their_result_id():
    # an upserting sink keys each row on the result id: the rows the generated code emits itself must carry
    # the same ids as the rows the executor emits (which state limits that are never reached always do)
    recs = [{"ts": ts, "g": g} for ts in range(0, 60, 3) for g in ("a", "b")]
    q = "SELECT g, count(*) AS n FROM s GROUP BY g, SLIDINGWINDOW(ms, 10)"
    runs = []
    for max_keys in (None, 10**6):
        p = SqlProcessor(q, SimpleContext(), id_field="_id", id_scope="p/p.sql", max_keys=max_keys)
        runs.append(p.process(recs, 0) + p.flush())
    assert len(runs[0]) == len(recs) and all("_id" in r for r in runs[0])
    assert len({r["_id"] for r in runs[0]}) == len(recs)
    assert runs[0] == runs[1]
