# Each filter's semantics on hand-computed examples (values in units of
# 10**-3: decimals = 3, the default), under CPython and MicroPython.
from devtest import heap_locked
from edgestream_agent.chain import run as chain
from edgestream_agent.config import validate
from edgestream_agent.filters import build
from edgestream_agent.pipeline import Pipeline

F = 1000


def make(*filters):
    cfg = validate({"sensors": [{"name": "s", "filters": list(filters)}]})
    return build(cfg["sensors"][0]["filters"], F)


def run(filters, samples):
    # samples: [(t, value in units)] -> [value or None] after the whole
    # chain, one sample at a time (a block of one, as Pipeline.push runs it)
    out = []
    vb = [0]
    ob = [0]
    for t, v in samples:
        vb[0] = v
        ob[0] = 0
        out.append(vb[0] if chain(filters, t, vb, ob, 1) else None)
    return out


def run_block(filters, t0, samples):
    # the same samples as one block (times as offsets from t0) -> the
    # (t, value) that pass, as Pipeline.push_block runs it
    vb = [v for _, v in samples]
    ob = [t - t0 for t, _ in samples]
    m = chain(filters, t0, vb, ob, len(vb))
    return [(t0 + ob[i], vb[i]) for i in range(m)]


def ts(values, step=100):
    return [(i * step, v) for i, v in enumerate(values)]


def test_range_drops_values_outside_inclusive_bounds():
    fs = make({"range": {"min": 0, "max": 100}})
    assert run(fs, ts([-1, 0, 50000, 100000, 100001])) == [None, 0, 50000, 100000, None]
    one_sided = make({"range": {"min": 10}})
    assert run(one_sided, ts([9999, 10000, 10 ** 9])) == [None, 10000, 10 ** 9]


def test_clamp_clips_into_bounds():
    fs = make({"clamp": {"min": -5, "max": 5.5}})
    assert run(fs, ts([-6000, -5000, 0, 5500, 7000])) == [-5000, -5000, 0, 5500, 5500]


def test_calibrate_is_slope_times_value_plus_offset():
    fs = make({"calibrate": {"slope": 1.8, "offset": 32}})  # Celsius -> Fahrenheit
    assert run(fs, ts([0, 100000, 21500, -40000])) == [32000, 212000, 70700, -40000]
    # an inexact product rounds half to even at the sensor's decimals
    half = make({"calibrate": {"slope": 0.5, "offset": 0}})
    assert run(half, ts([1, 3, 5, -1])) == [0, 2, 2, 0]


def test_delta_passes_first_then_changes_of_at_least_min():
    fs = make({"delta": {"min": 0.5}})
    # vs last *passed* value: 20.0 passes; 20.3 no (0.3); 20.5 yes (0.5);
    # 20.2 no (0.3 from 20.5); 19.9 no... 19.9 is 0.6 from 20.5: yes
    assert run(fs, ts([20000, 20300, 20500, 20200, 19900])) == [20000, None, 20500, None, 19900]
    bare = make({"delta": 1})
    assert run(bare, ts([0, 999, 1000])) == [0, None, 1000]


def test_throttle_passes_at_most_one_value_per_interval():
    fs = make({"throttle": {"interval_ms": 1000}})
    samples = [(0, 1), (400, 2), (999, 3), (1000, 4), (1500, 5), (2100, 6), (3099, 7), (3100, 8)]
    assert run(fs, samples) == [1, None, None, 4, None, 6, None, 8]


def test_median_of_the_last_size_values_fewer_at_the_start():
    fs = make({"median": {"size": 3}})
    # windows: [5] [5,1] [5,1,9] [1,9,7] [9,7,3] [7,3,3]
    assert run(fs, ts([5, 1, 9, 7, 3, 3])) == [5, 3, 5, 7, 7, 3]
    even = make({"median": 4})
    # [10] [10,20]->15 [10,20,30]->20 [10,20,30,40]->25 [20,30,40,1]->25
    assert run(even, ts([10, 20, 30, 40, 1])) == [10, 15, 20, 25, 25]


def test_ema_weights_new_values_by_alpha():
    fs = make({"ema": {"alpha": 0.5}})
    # y0 = 10; y1 = .5*20 + .5*10 = 15; y2 = .5*20 + .5*15 = 17.5; y3 = 8.75
    assert run(fs, ts([10000, 20000, 20000, 0])) == [10000, 15000, 17500, 8750]
    third = make({"ema": 0.25})
    # 0, .25*1000 = 250, 250 + .25*(1000-250) = 437.5 -> 438 (half to even on units)
    assert run(third, ts([0, 1000, 1000])) == [0, 250, 438]


def test_round_to_digits_half_to_even():
    fs = make({"round": {"digits": 1}})
    assert run(fs, ts([21549, 21550, 21650, 21551, -21550])) == [21500, 21600, 21600, 21600, -21600]
    whole = make({"round": 0})
    assert run(whole, ts([2500, 3500, 2501])) == [2000, 4000, 3000]
    noop = make({"round": 3})
    assert run(noop, ts([21549])) == [21549]


def test_heartbeat_resends_last_value_when_nothing_passed():
    cfg = validate({"sensors": [{"name": "s", "filters": [{"delta": {"min": 1}}, {"heartbeat": {"interval_ms": 1000}}],
                                 "windows": [{"name": "c", "size": 1, "aggregates": ["last"]}]}]})
    got = []
    p = Pipeline(cfg["sensors"][0], lambda pipe, w, start, end: got.append((start, w.agg.values()[0])))
    # 5 passes at 0; 5 at 500 is dropped by delta; nothing passes until 2600:
    # heartbeats re-send 5 at 1000 and 2000; 9 passes at 2600; 9 at 3000 dropped;
    # heartbeat at 3600 re-sends 9 (seen when the sample at 3700 arrives)
    for t, v in [(0, 5), (500, 5), (2600, 9), (3000, 9), (3700, 9)]:
        p.feed(t, v)
    assert got == [(0, 5), (1000, 5), (2000, 5), (2600, 9), (3600, 9)]
    assert p.dropped == 3


def test_a_chain_applies_filters_in_order():
    fs = make({"calibrate": {"slope": 2}}, {"clamp": {"max": 10}}, {"delta": 1})
    assert run(fs, ts([1000, 4000, 6000, 9000, 3000])) == [2000, 8000, 10000, None, 6000]


def test_filters_allocate_nothing_per_value():
    fs = make({"range": {"min": -1000}}, {"clamp": {"max": 1000}}, {"calibrate": {"slope": 1.5, "offset": 2}},
               {"delta": 0.001}, {"throttle": 10}, {"median": 5}, {"ema": 0.3}, {"round": 1}, {"heartbeat": 50})
    st = [0, 0]
    vb = [0] * 8
    ob = [0] * 8

    def one():
        t = st[0] + 7
        st[0] = t
        vb[0] = (t * 37) % 20000 - 10000
        ob[0] = 0
        chain(fs, t, vb, ob, 1)
        for i in range(8):  # and a block of 8
            vb[i] = ((t + i) * 37) % 20000 - 10000
            ob[i] = i
        chain(fs, t, vb, ob, 8)

    heap_locked(one, 3000)


SPECS = ({"range": {"min": -3, "max": 4}}, {"clamp": {"min": -2.5, "max": 2}},
         {"calibrate": {"slope": 1.7, "offset": -0.3}}, {"delta": 0.5}, {"throttle": 250}, {"median": 4},
         {"ema": 0.35}, {"round": 1}, {"heartbeat": 1000})


def test_a_block_gives_what_one_sample_at_a_time_gives():
    # every filter, alone and chained, on blocks of several lengths
    samples = [(1000 + 70 * i, ((i * 7919) % 9001) - 4500) for i in range(120)]
    chains = [[s] for s in SPECS] + [list(SPECS[:8]), [SPECS[5], SPECS[3], SPECS[4], SPECS[0]]]
    for specs in chains:
        one = run(make(*specs), samples)
        want = [(samples[i][0], one[i]) for i in range(len(one)) if one[i] is not None]
        for size in (1, 2, 7, 64, 120):
            fs = make(*specs)
            got = []
            for k in range(0, len(samples), size):
                part = samples[k:k + size]
                got += run_block(fs, part[0][0] - 3, part)
            assert got == want, (specs, size)


def test_a_value_beyond_32_bits_before_a_median_is_dropped_not_wrapped():
    # the median's rings hold 32 bits: 716 * 3e6 = 2148000000 does not fit
    # (a board would store it wrapped around, CPython refuse it with an error)
    cfg = validate({"sensors": [{"name": "s", "decimals": 0,
                                 "filters": [{"calibrate": {"slope": 3000000}}, {"median": 3}],
                                 "windows": [{"name": "c", "size": 1, "aggregates": ["last"]}]}]})
    got = []
    p = Pipeline(cfg["sensors"][0], lambda pipe, w, start, end: got.append(w.agg.values()[0]))
    for t, v in [(0, 716), (1, 700), (2, -716), (3, 10)]:
        p.feed(t, v)
    assert got == [2100000000, 1065000000] and p.dropped == 2
