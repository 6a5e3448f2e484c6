"""SESSIONWINDOW against a model of the rule on generated data, and its invariants out of order."""

from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, given, settings, strategies as st

from edgestream_hub.api import SimpleContext
from edgestream_hub.sql.processor import SqlProcessor

records = st.lists(st.tuples(st.integers(0, 3000), st.sampled_from(["a", "b", None])), max_size=50)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
Q = ("SELECT g, count(*) AS n, window_start() AS ws, window_end() AS we FROM s "
     "GROUP BY g, SESSIONWINDOW(ms, {mx}, {to})")


def _run(rows, mx, to, lateness=0):
    ctx = SimpleContext()
    p = SqlProcessor(Q.format(mx=mx, to=to), ctx, lateness_ms=lateness)
    out = p.process([{"ts": ts, "g": g} for ts, g in rows], 0) + p.flush()
    return out, ctx


@SETTINGS
@given(records, st.sampled_from([(1000, 100), (300, 100), (10_000, 250), (50, 50)]))
def test_in_order_matches_the_rule(rows, mx_to):
    """Per key: join when ts - last < timeout and ts - first < max; end = min(last + timeout, first + max)."""
    mx, to = mx_to
    rows = sorted(rows, key=lambda r: r[0])
    got, _ = _run(rows, mx, to)
    open_: dict = {}
    done, order = [], 0
    for ts, g in rows:
        s = open_.get(g)
        if s is not None and ts - s[1] < to and ts - s[0] < mx:
            s[1], s[2] = ts, s[2] + 1
            continue
        if s is not None:
            done.append(s)
        order += 1
        open_[g] = [ts, ts, 1, g, order]
    done += open_.values()
    want = sorted(done, key=lambda s: (min(s[1] + to, s[0] + mx), s[4]))
    assert got == [{"g": s[3], "n": s[2], "ws": s[0], "we": min(s[1] + to, s[0] + mx)} for s in want]


@SETTINGS
@given(records, st.randoms(use_true_random=False), st.sampled_from([(1000, 100), (300, 100), (200, 150)]))
def test_out_of_order_sessions_keep_their_bounds(rows, rnd, mx_to):
    """Shuffled within a large lateness: every record counted once, spans < max, ends in order."""
    mx, to = mx_to
    rows = list(rows)
    rnd.shuffle(rows)
    got, ctx = _run(rows, mx, to, lateness=5000)
    assert not ctx.late_records and not ctx.dead
    assert sum(r["n"] for r in got) == len(rows)
    ends = [r["we"] for r in got]
    assert ends == sorted(ends)
    for r in got:
        assert r["we"] - r["ws"] <= mx
        keyed = sorted(ts for ts, g in rows if g == r["g"] and r["ws"] <= ts < r["we"])
        assert keyed and keyed[0] == r["ws"]


values = st.lists(st.tuples(st.integers(0, 3000), st.sampled_from(["a", "b", None]),
                            st.one_of(st.none(), st.integers(-5, 5), st.floats(-1e6, 1e6))), max_size=60)
AGGS = ("SELECT g, count(v) AS n, sum(v) AS s, avg(v) AS a, min(v) AS lo, max(v) AS hi, first_value(v) AS f, "
        "last_value(v) AS l, collect(v) AS c, count(DISTINCT v) AS d, window_start() AS ws FROM s "
        "GROUP BY g, SESSIONWINDOW(ms, {mx}, {to})")


@SETTINGS
@given(values, st.sampled_from([(1000, 100), (300, 100), (50, 50)]), st.randoms(use_true_random=False),
       st.sampled_from([1, 7, 100]))
def test_every_aggregate_over_each_session_in_arrival_order_across_a_snapshot(rows, mx_to, rnd, batch):
    """In event-time order (ties in arrival order), each session's aggregates are those of its records; a
    snapshot taken anywhere and resumed changes nothing."""
    mx, to = mx_to
    rows = sorted(rows, key=lambda r: r[0])
    recs = [{"ts": ts, "g": g, "v": v} for ts, g, v in rows]
    q = AGGS.format(mx=mx, to=to)
    cut = rnd.randint(0, len(recs))
    p = SqlProcessor(q, SimpleContext())
    got = [row for i in range(0, cut, batch) for row in p.process(recs[i: min(i + batch, cut)], 0)]
    p = SqlProcessor(q, SimpleContext(), resume_state=json.loads(json.dumps(p.snapshot())))
    got += [row for i in range(cut, len(recs), batch) for row in p.process(recs[i: i + batch], 0)] + p.flush()
    open_: dict = {}
    done, order = [], 0
    for ts, g, v in rows:
        s = open_.get(g)
        if s is None or ts - s[1] >= to or ts - s[0] >= mx:
            if s is not None:
                done.append(s)
            order += 1
            s = open_[g] = [ts, ts, [], g, order]
        s[1] = ts
        s[2].append(v)
    done += open_.values()
    want = []
    for first, _last, vs, g, _ in sorted(done, key=lambda s: (min(s[1] + to, s[0] + mx), s[4])):
        xs = [v for v in vs if v is not None]
        want.append({"g": g, "n": len(xs), "s": math.fsum(xs) if xs else None,
                     "a": math.fsum(xs) / len(xs) if xs else None, "lo": min(xs, default=None),
                     "hi": max(xs, default=None), "f": xs[0] if xs else None, "l": xs[-1] if xs else None,
                     "c": xs, "d": len(set(xs)), "ws": first})
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert list(a) == list(b)
        for k in a:
            if isinstance(a[k], float) or isinstance(b[k], float):
                assert math.isclose(a[k], b[k], rel_tol=1e-12, abs_tol=1e-9), (k, a, b)
            else:
                assert a[k] == b[k], (k, a, b)


@SETTINGS
@given(values, st.sampled_from([(1000, 100), (300, 100), (50, 50)]), st.sampled_from([0, 40]),
       st.randoms(use_true_random=False), st.sampled_from([1, 7, 100]))
def test_the_inline_close_does_what_close_does(rows, mx_to, lateness, rnd, batch):
    """The generated code re-pushes the heap entries of sessions that grew itself and calls ``close`` only
    for a due one; the executor's ``close`` alone (which state limits that are never reached always take)
    must give the same rows, late records and state."""
    mx, to = mx_to
    rows = sorted(rows, key=lambda r: r[0] + rnd.randint(0, lateness))
    recs = [{"ts": ts, "g": g, "v": v} for ts, g, v in rows]
    q = AGGS.format(mx=mx, to=to)
    runs = []
    for max_keys in (None, 10**6):
        ctx = SimpleContext()
        p = SqlProcessor(q, ctx, lateness_ms=lateness, max_keys=max_keys)
        out = [row for i in range(0, len(recs), batch) for row in p.process(recs[i: i + batch], 0)]
        ex = p.executor
        state = (json.dumps(p.snapshot()["state"]), ex.nxt, ex.emitted)
        runs.append((out + p.flush(), ctx.dead, ctx.late_records, state))
    assert "_H[0]" in SqlProcessor(q, SimpleContext()).program.source  # the first run took the inline path
    assert runs[0] == runs[1]
