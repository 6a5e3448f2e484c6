"""The hub's decode path (wire -> records, seq tracking), fuzzed with hypothesis."""

from __future__ import annotations

import json

from hypothesis import given, settings, strategies as st

from edgestream_hub.wire import SeqTracker, WireDecoder
from edgestream_shared.encoder import Encoder
from edgestream_shared.errors import WireError

names = st.text("abcdefghijklmnopqrstuvwxyz0123456789_.-", min_size=1, max_size=8)
nums = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False, width=32), st.none())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_wire_error(data):
    try:
        out = WireDecoder().decode(data, "edgestream/d1/results")
    except WireError:
        return
    assert isinstance(out, list)


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5), nums),
                    lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(st.sampled_from(
                        ["v", "dev", "kind", "boot", "items", "seq", "sensor", "t", "value", "window", "start",
                         "end", "aggs", "state"]), c, max_size=6)), max_leaves=20))
def test_structured_junk_raises_only_wire_error(obj):
    try:
        WireDecoder(prefix=None).decode(json.dumps(obj))
    except WireError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(names, st.integers(0, 10**9), st.integers(0, 10**6), nums), min_size=1, max_size=30),
       names)
def test_encoded_results_flatten_one_record_per_item(items, dev):
    e = Encoder(dev, 1, 8192)
    e.begin(b"results")
    seq = 0
    kept = []
    for sensor, start, width, v in items:
        if e.add_result(seq, sensor.encode(), b"w", start, start + width, (b"avg", b"seq"), (v, 5)):
            kept.append((seq, sensor, start, start + width, v))
            seq += 1
    recs = WireDecoder(prefix=None).decode(bytes(e.finish()))
    assert len(recs) == len(kept)
    for r, (s, sensor, start, end, v) in zip(recs, kept):
        assert (r["device"], r["seq"], r["sensor"], r["start"], r["end"], r["ts"]) == (dev, s, sensor, start, end, end)
        assert r["agg_seq"] == 5  # an aggregate named like a fixed key is prefixed
        assert (r["avg"] is None) == (v is None)


@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 40)), max_size=200))
def test_tracker_keeps_each_boot_seq_once(events):
    t = SeqTracker()
    kept = []
    for boot, seq in events:
        if t.accept("d", "results", boot, seq):
            kept.append((boot, seq))
    # within one uninterrupted run of a boot, a seq is kept at most once
    runs: list[set] = []
    last = None
    for boot, seq in kept:
        if boot != last:
            runs.append(set())
            last = boot
        assert seq not in runs[-1]
        runs[-1].add(seq)
    st_ = t.stats
    assert st_.duplicates == len(events) - len(kept)
    assert st_.late_fills <= st_.missing
