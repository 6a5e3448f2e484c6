"""SESSIONWINDOW against a model of the rule on generated data, and its invariants out of order."""

from __future__ import annotations

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
