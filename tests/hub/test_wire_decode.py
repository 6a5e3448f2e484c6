"""The hub's decode path (wire -> records, seq tracking), fuzzed with hypothesis."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from edgestream_hub.wire import SeqTracker, WireDecoder
from edgestream_shared import decoder as _dec
from edgestream_shared.encoder import Encoder
from edgestream_shared.errors import WireError

# with each JSON engine (tests/conftest.py): the results must not depend on it
pytestmark = pytest.mark.usefixtures("json_engine")

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


# -- the fast paths must mean exactly what the detailed ones mean --

_edge_values = st.sampled_from([-1, 0, 12, True, False, 1.5, float("nan"), float("inf"), float("-inf"), None, "x",
                                 "te mp", "a" * 65, [1], {"a": 1}, {}])
_any_value = st.one_of(_edge_values, st.integers(-3, 2**40), st.floats(), st.text("ab/ é", max_size=4))
_keys6 = ("seq", "sensor", "window", "start", "end", "aggs")


@st.composite
def near_items(draw, keys=_keys6):
    """A valid result (or reading) item with zero, one or two faults: a field replaced by an edge
    value, an aggregate key or value replaced, a key dropped, a key added."""
    if keys == _keys6:
        start = draw(st.integers(0, 12))
        it = {"seq": draw(st.integers(0, 5)), "sensor": "temp", "window": "w10s", "start": start,
              "end": start + draw(st.integers(0, 3)), "aggs": {"count": 2, "avg": 1.5}}
        faults = [*keys, "agg key", "agg value", "drop", "extra"]
    else:
        it = {"seq": draw(st.integers(0, 5)), "sensor": "temp", "t": draw(st.integers(0, 12)),
              "value": draw(st.one_of(st.none(), st.integers(-5, 5), st.floats(-1e3, 1e3)))}
        faults = [*keys, "drop", "extra"]
    for fault in draw(st.lists(st.sampled_from(faults), max_size=2)):
        if fault.startswith("agg ") and not isinstance(it.get("aggs"), dict):
            continue  # aggs itself was replaced or dropped already
        if fault == "agg key":
            it["aggs"] = {draw(st.sampled_from(["seq", "n/a", "", "x" * 65])): 1, **it["aggs"]}
        elif fault == "agg value":
            it["aggs"] = dict(it["aggs"], avg=draw(_any_value))
        elif fault == "drop":
            it.pop(draw(st.sampled_from(keys)), None)
        elif fault == "extra":
            it["extra"] = 1
        else:
            it[fault] = draw(_any_value)
    return it


def _detailed_ok(check, it) -> bool:
    try:
        check(it, "items[0]")
        return True
    except WireError:
        return False


def _result_ok(it) -> bool:
    """The decoder's fast check (one call per batch) on a batch of this one item."""
    return _dec._results_from([it], 0) == 1


def _reading_ok(it) -> bool:
    return _dec._readings_from([it], 0) == 1


@settings(max_examples=400, deadline=None)
@given(near_items(), st.booleans())
def test_fast_result_check_accepts_only_what_the_detailed_check_accepts(it, warm):
    _dec._names.clear()  # the name cache is global: start each example from a known state
    if warm:  # names already seen (the fast path then decides alone) or not
        for n in ("temp", "w10s", "count", "avg"):
            _dec._name(n, "x")
    if _result_ok(it):
        assert _detailed_ok(_dec._result, it)
    if _detailed_ok(_dec._result, it):  # it cached the item's names: now the fast path must take it
        assert _result_ok(it)


@settings(max_examples=300, deadline=None)
@given(near_items(keys=("seq", "sensor", "t", "value")))
def test_fast_reading_check_accepts_only_what_the_detailed_check_accepts(it):
    _dec._names.clear()
    _dec._name("temp", "x")
    if _reading_ok(it):
        assert _detailed_ok(_dec._reading, it)
    if _detailed_ok(_dec._reading, it):
        assert _reading_ok(it), f"valid reading {it!r} missed the fast path"


_EDGES = [-1, 0, 12, True, False, 1.5, -0.0, float("nan"), float("inf"), float("-inf"), 2**70, None, "x", "te mp",
          "a" * 65, "", [1], {"a": 1}, {}]


def _single_faults(base: dict):
    """Every item that differs from the valid ``base`` in one place."""
    yield base
    for k in base:
        for v in _EDGES:
            yield {**base, k: v}
        yield {x: y for x, y in base.items() if x != k}
    yield {**base, "extra": 1}
    if "aggs" in base:
        for v in _EDGES:
            yield {**base, "aggs": {**base["aggs"], "avg": v}}
        for k in ("seq", "n/a", "", "x" * 65):
            yield {**base, "aggs": {k: 1, **base["aggs"]}}


def test_fast_checks_agree_with_the_detailed_checks_on_every_single_fault():
    result = {"seq": 3, "sensor": "temp", "window": "w10s", "start": 5, "end": 9, "aggs": {"count": 2, "avg": 1.5}}
    reading = {"seq": 3, "sensor": "temp", "t": 7, "value": 1.5}
    n = 0
    for base, fast, detailed in ((result, _result_ok, _dec._result), (reading, _reading_ok, _dec._reading),
                                 (dict(reading, value=None), _reading_ok, _dec._reading)):
        for it in _single_faults(base):
            _dec._names.clear()
            for name in ("temp", "w10s", "count", "avg"):
                _dec._name(name, "x")
            ok = _detailed_ok(detailed, it)
            assert fast(it) == ok, f"fast check says {not ok} for {it!r}"
            n += 1
    assert n > 150


def test_a_bad_name_after_good_ones_is_still_named():
    good = {"seq": 0, "sensor": "temp", "window": "w", "start": 0, "end": 1, "aggs": {"avg": 1.0}}
    msg = {"v": 1, "dev": "d1", "boot": 1, "kind": "results",
           "items": [good, dict(good, seq=1), dict(good, seq=2, sensor="te mp")]}
    try:
        WireDecoder(prefix=None).decode(json.dumps(msg))
    except WireError as e:
        assert str(e).startswith("items[2].sensor:"), e
    else:
        raise AssertionError("a sensor with a space was accepted")
    bad_agg = dict(msg, items=[good, dict(good, seq=1, aggs={"avg": 1.0, "n/a": 2})])
    try:
        WireDecoder(prefix=None).decode(json.dumps(bad_agg))
    except WireError as e:
        assert str(e).startswith("items[1].aggs:"), e
    else:
        raise AssertionError("an aggregate named n/a was accepted")


def test_the_fast_check_goes_on_after_an_item_the_detailed_check_accepts():
    """The batch check stops at an item it cannot take alone (a name not seen yet), lets the detailed check
    accept it, and goes on from the next item: every later fault is still found and named."""
    _dec._names.clear()
    good = {"seq": 0, "sensor": "temp", "window": "w", "start": 0, "end": 1, "aggs": {"avg": 1.0}}
    items = [dict(good, seq=i, sensor=f"s{i % 3}") for i in range(9)]
    msg = {"v": 1, "dev": "d1", "boot": 1, "kind": "results", "items": items}
    assert [r["sensor"] for r in WireDecoder(prefix=None).decode(json.dumps(msg))] == [f"s{i % 3}" for i in range(9)]
    for bad_at in (0, 4, 8):
        _dec._names.clear()
        bad = [dict(it) for it in items]
        bad[bad_at]["end"] = -1
        try:
            WireDecoder(prefix=None).decode(json.dumps(dict(msg, items=bad)))
        except WireError as e:
            assert str(e).startswith(f"items[{bad_at}].end:"), e
        else:
            raise AssertionError(f"items[{bad_at}] with end -1 was accepted")


def test_the_name_cache_stays_bounded():
    for i in range(3 * _dec._NAMES_MAX):
        _dec._name(f"s{i}", "sensor")
    assert 0 < len(_dec._names) <= _dec._NAMES_MAX


def _message(dev: str, boot: int, seqs: list[int]) -> bytes:
    items = [{"seq": s, "sensor": "temp", "window": "w", "start": 0, "end": 10, "aggs": {"avg": 1.5}} for s in seqs]
    return json.dumps({"v": 1, "dev": dev, "boot": boot, "kind": "results", "items": items}).encode()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 1), st.integers(0, 30), st.integers(1, 6),
                          st.booleans()), min_size=1, max_size=25))
def test_batch_sequence_tracking_equals_per_item_tracking(batches):
    """Whole in-order batches take a shortcut; what is kept and counted must not change."""
    fast = WireDecoder(prefix=None)
    ref = SeqTracker()
    for dev, boot, first, n, shuffle in batches:
        seqs = list(range(first, first + n))
        if shuffle:
            seqs.reverse()
        got = [r["seq"] for r in fast.decode(_message(dev, boot, seqs))]
        want = [s for s in seqs if ref.accept(dev, "results", boot, s)]
        assert got == want
    assert fast.tracker is not None
    assert fast.tracker.stats == ref.stats
    assert fast.tracker.snapshot() == ref.snapshot()


def test_flattened_records_keep_their_key_order_and_share_names():
    recs = WireDecoder(prefix=None).decode(_message("d1", 7, [0, 1]))
    assert list(recs[0]) == ["device", "boot", "seq", "sensor", "window", "start", "end", "avg", "ts"]
    assert recs[0] == {"device": "d1", "boot": 7, "seq": 0, "sensor": "temp", "window": "w", "start": 0, "end": 10,
                       "avg": 1.5, "ts": 10}
    assert recs[0]["sensor"] is recs[1]["sensor"]  # one str per name, not one per record


# -- sequence tracking: exact for late fills whatever the gap, bounded in memory --

def test_a_record_late_into_a_large_gap_is_kept():
    t = SeqTracker()
    kept = [s for s in (0, 1, 2, 5000, 3, 4, 5) if t.accept("d4", "results", 1, s)]
    assert kept == [0, 1, 2, 5000, 3, 4, 5]
    assert (t.stats.gaps, t.stats.missing, t.stats.late_fills, t.stats.duplicates) == (1, 4997, 3, 0)
    assert not t.accept("d4", "results", 1, 4)  # a seq really seen is still a duplicate
    assert t.stats.duplicates == 1


def test_a_huge_jump_does_not_silence_the_device():
    t = SeqTracker()
    assert t.accept("d", "results", 1, 0) and t.accept("d", "results", 1, 2**31 - 1)
    assert all(t.accept("d", "results", 1, s) for s in range(1, 100))
    assert t.stats.duplicates == 0 and t.stats.late_fills == 99


def test_records_before_the_first_one_seen_are_kept_once():
    t = SeqTracker()
    kept = [s for s in (7, 3, 9, 3, 0, 8, 7) if t.accept("d", "results", 1, s)]
    assert kept == [7, 3, 9, 0, 8]
    # what came before the first record seen was never counted missing, so it fills no gap
    assert (t.stats.gaps, t.stats.missing, t.stats.late_fills, t.stats.duplicates) == (1, 1, 1, 2)


def test_past_the_bound_the_oldest_gap_is_forgotten_and_said_so():
    from edgestream_hub.wire import MAX_GAPS

    t = SeqTracker()
    seq = 0
    t.accept("d", "results", 1, 0)
    for _ in range(MAX_GAPS + 1):  # each jump opens one more gap
        seq += 2
        t.accept("d", "results", 1, seq)
    assert t.stats.forgotten_gaps == 1
    assert t.forgot["d"].gaps == 1 and (t.forgot["d"].first, t.forgot["d"].last) == (1, 1)
    # below the forgotten gap nothing can be checked: kept (never silently dropped), and counted
    assert t.accept("d", "results", 1, 1) and t.accept("d", "results", 1, 0)
    assert t.stats.unchecked == 2 and t.stats.duplicates == 0
    # the gaps still remembered are exact
    assert t.accept("d", "results", 1, 3) and not t.accept("d", "results", 1, 3) and not t.accept("d", "results", 1, 4)
    assert len(t._streams["d", "results"].gaps or ()) <= 2 * MAX_GAPS


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 60), min_size=1, max_size=120).flatmap(
    lambda xs: st.tuples(st.just(xs), st.permutations(xs))), st.integers(0, 3))
def test_any_order_of_any_seqs_delivers_each_distinct_seq_once(pair, base):
    """Permuted and duplicated seqs (spread out by ``base``, so gaps are large): each distinct seq
    is kept exactly once and every other arrival is counted as a duplicate."""
    _, order = pair
    order = [s * 10**base for s in order]
    t = SeqTracker()
    kept = [s for s in order if t.accept("d", "results", 1, s)]
    assert sorted(kept) == sorted(set(order))
    assert t.stats.duplicates == len(order) - len(set(order))
    assert t.stats.unchecked == 0  # fewer gaps than the bound: every check was exact


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 400), min_size=1, max_size=300))
def test_past_the_gap_bound_no_record_is_lost(order):
    """Many gaps at once: some are forgotten, yet every distinct seq is still kept (at least once),
    and a record is only dropped as a duplicate if its seq was really seen."""
    t = SeqTracker()
    seen: set[int] = set()
    for s in order:
        if not t.accept("d", "results", 1, s):
            assert s in seen
        seen.add(s)
    st_ = t.stats
    assert st_.duplicates + st_.unchecked >= len(order) - len(seen)
