"""Random pipelines: push() (gathered runs) and push_block() against one sample at a time.

The reference is the per-sample path alone (``test_pipeline_paths.OneByOne``,
whose results ``test_replay`` checks against the naive model of the spec).
Random filters, windows (small ring capacities included, so windows
overwrite), times with repeats and gaps, and the clock moving on between
samples: the results must be the same, emitted at the same push, with the
same counters. Host only (hypothesis).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from edgestream_agent.config import validate
from edgestream_agent.pipeline import Pipeline
from test_pipeline_paths import OneByOne, counters

HOST_ONLY = True

_filters = st.one_of(
    st.builds(lambda lo, span: {"range": {"min": lo, "max": lo + span}}, st.integers(-20, 10), st.integers(0, 40)),
    st.builds(lambda lo, span: {"clamp": {"min": lo, "max": lo + span}}, st.integers(-20, 10), st.integers(0, 40)),
    st.builds(lambda a, b: {"calibrate": {"slope": a, "offset": b}}, st.sampled_from([0.5, 1, 1.8, -2, 3e6]),
              st.sampled_from([0, 32, -1.5])),
    st.builds(lambda m: {"delta": {"min": m}}, st.sampled_from([0, 0.5, 1, 3])),
    st.builds(lambda i: {"throttle": {"interval_ms": i}}, st.integers(1, 3000)),
    st.builds(lambda n: {"median": {"size": n}}, st.sampled_from([1, 2, 3, 5])),
    st.builds(lambda a: {"ema": {"alpha": a}}, st.sampled_from([0.1, 0.5, 1])),
    st.builds(lambda d: {"round": {"digits": d}}, st.integers(0, 3)),
    st.builds(lambda i: {"heartbeat": {"interval_ms": i}}, st.integers(500, 5000)),
)
_windows = st.one_of(
    st.builds(lambda s: {"size_ms": s}, st.integers(100, 5000)),
    st.builds(lambda s: {"size": s}, st.integers(1, 40)),
    st.builds(lambda s, d, c: {"size_ms": s, "every_ms": max(1, s // d), **({"capacity": c} if c else {})},
              st.integers(100, 5000), st.integers(1, 40), st.sampled_from([0, 0, 3, 20])),
    st.builds(lambda s, e: {"size": s, "every": min(s, e)}, st.integers(1, 80), st.integers(1, 10)),
)
# (dt, value, advance the clock by this much after the sample, or None)
_steps = st.lists(st.tuples(st.sampled_from([0, 1, 10, 10, 50, 333, 2000]), st.integers(-3000, 3000),
                            st.one_of(st.none(), st.integers(0, 3000))), min_size=1, max_size=300)


def _pipes(filters, windows, period):
    aggs = ["count", "sum", "avg", "min", "max", "stddev", "first", "last"]
    wins = [dict(w, name=f"w{i}", aggregates=aggs) for i, w in enumerate(windows)]
    cfg = validate({"sensors": [{"name": "s", "period_ms": period, "decimals": 2, "filters": filters,
                                 "windows": wins}]})["sensors"][0]
    ref: list = []
    got: list = []

    def sink(out: list):
        return lambda pipe, w, start, end: out.append((w.name, start, end, w.agg.values()))

    return OneByOne(cfg, sink(ref)), Pipeline(cfg, sink(got)), ref, got


@settings(max_examples=200, deadline=None)
@given(st.lists(_filters, max_size=3), st.lists(_windows, min_size=1, max_size=3), _steps)
def test_pushes_agree_with_one_sample_at_a_time(filters, windows, steps):
    a, b, ref, got = _pipes(filters, windows, 10)
    t = 0
    for dt, v, adv in steps:
        t += dt
        assert a.push(t, v) == b.push(t, v)
        if adv is not None:
            a.advance(t + adv)
            b.advance(t + adv)
        assert len(ref) == len(got)  # emitted at the same push
    assert counters(a) == counters(b)
    a.flush()
    b.flush()
    assert got == ref


@settings(max_examples=200, deadline=None)
@given(st.lists(_filters, max_size=3), st.lists(_windows, min_size=1, max_size=3),
       st.lists(st.integers(-3000, 3000), min_size=1, max_size=300), st.sampled_from([1, 3, 10, 250]),
       st.lists(st.tuples(st.integers(1, 70), st.sampled_from([0, 0, 7, 5000])), min_size=1, max_size=30))
def test_blocks_agree_with_one_sample_at_a_time(filters, windows, values, period, cuts):
    # values cut into blocks of the given sizes, with the given gaps between them
    a, b, ref, got = _pipes(filters, windows, period)
    t = 100
    i = k = 0
    while i < len(values):
        size, gap = cuts[k % len(cuts)]
        k += 1
        part = values[i:i + size]
        for j, v in enumerate(part):
            a.push(t + j * period, v)
        assert b.push_block(t, period, part, len(part)) == len(part)
        t += len(part) * period + gap
        i += size
    assert counters(a) == counters(b)
    a.flush()
    b.flush()
    assert got == ref
