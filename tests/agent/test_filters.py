# Each filter's semantics on hand-computed examples (values in units of
# 10**-3: decimals = 3, the default), under CPython and MicroPython.
from devtest import heap_locked
from edgestream_agent.config import validate
from edgestream_agent.filters import build
from edgestream_agent.pipeline import Pipeline

F = 1000


def chain(*filters):
    cfg = validate({"sensors": [{"name": "s", "filters": list(filters)}]})
    return build(cfg["sensors"][0]["filters"], F)


def run(filters, samples):
    # samples: [(t, value in units)] -> [value or None] after the whole chain
    out = []
    for t, v in samples:
        x = v
        for f in filters:
            x = f.push(t, x)
            if x is None:
                break
        out.append(x)
    return out


def ts(values, step=100):
    return [(i * step, v) for i, v in enumerate(values)]


def test_range_drops_values_outside_inclusive_bounds():
    fs = chain({"range": {"min": 0, "max": 100}})
    assert run(fs, ts([-1, 0, 50000, 100000, 100001])) == [None, 0, 50000, 100000, None]
    one_sided = chain({"range": {"min": 10}})
    assert run(one_sided, ts([9999, 10000, 10 ** 9])) == [None, 10000, 10 ** 9]


def test_clamp_clips_into_bounds():
    fs = chain({"clamp": {"min": -5, "max": 5.5}})
    assert run(fs, ts([-6000, -5000, 0, 5500, 7000])) == [-5000, -5000, 0, 5500, 5500]


def test_calibrate_is_slope_times_value_plus_offset():
    fs = chain({"calibrate": {"slope": 1.8, "offset": 32}})  # Celsius -> Fahrenheit
    assert run(fs, ts([0, 100000, 21500, -40000])) == [32000, 212000, 70700, -40000]
    # an inexact product rounds half to even at the sensor's decimals
    half = chain({"calibrate": {"slope": 0.5, "offset": 0}})
    assert run(half, ts([1, 3, 5, -1])) == [0, 2, 2, 0]


def test_delta_passes_first_then_changes_of_at_least_min():
    fs = chain({"delta": {"min": 0.5}})
    # vs last *passed* value: 20.0 passes; 20.3 no (0.3); 20.5 yes (0.5);
    # 20.2 no (0.3 from 20.5); 19.9 no... 19.9 is 0.6 from 20.5: yes
    assert run(fs, ts([20000, 20300, 20500, 20200, 19900])) == [20000, None, 20500, None, 19900]
    bare = chain({"delta": 1})
    assert run(bare, ts([0, 999, 1000])) == [0, None, 1000]


def test_throttle_passes_at_most_one_value_per_interval():
    fs = chain({"throttle": {"interval_ms": 1000}})
    samples = [(0, 1), (400, 2), (999, 3), (1000, 4), (1500, 5), (2100, 6), (3099, 7), (3100, 8)]
    assert run(fs, samples) == [1, None, None, 4, None, 6, None, 8]


def test_median_of_the_last_size_values_fewer_at_the_start():
    fs = chain({"median": {"size": 3}})
    # windows: [5] [5,1] [5,1,9] [1,9,7] [9,7,3] [7,3,3]
    assert run(fs, ts([5, 1, 9, 7, 3, 3])) == [5, 3, 5, 7, 7, 3]
    even = chain({"median": 4})
    # [10] [10,20]->15 [10,20,30]->20 [10,20,30,40]->25 [20,30,40,1]->25
    assert run(even, ts([10, 20, 30, 40, 1])) == [10, 15, 20, 25, 25]


def test_ema_weights_new_values_by_alpha():
    fs = chain({"ema": {"alpha": 0.5}})
    # y0 = 10; y1 = .5*20 + .5*10 = 15; y2 = .5*20 + .5*15 = 17.5; y3 = 8.75
    assert run(fs, ts([10000, 20000, 20000, 0])) == [10000, 15000, 17500, 8750]
    third = chain({"ema": 0.25})
    # 0, .25*1000 = 250, 250 + .25*(1000-250) = 437.5 -> 438 (half to even on units)
    assert run(third, ts([0, 1000, 1000])) == [0, 250, 438]


def test_round_to_digits_half_to_even():
    fs = chain({"round": {"digits": 1}})
    assert run(fs, ts([21549, 21550, 21650, 21551, -21550])) == [21500, 21600, 21600, 21600, -21600]
    whole = chain({"round": 0})
    assert run(whole, ts([2500, 3500, 2501])) == [2000, 4000, 3000]
    noop = chain({"round": 3})
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
    fs = chain({"calibrate": {"slope": 2}}, {"clamp": {"max": 10}}, {"delta": 1})
    assert run(fs, ts([1000, 4000, 6000, 9000, 3000])) == [2000, 8000, 10000, None, 6000]


def test_filters_allocate_nothing_per_value():
    fs = chain({"range": {"min": -1000}}, {"clamp": {"max": 1000}}, {"calibrate": {"slope": 1.5, "offset": 2}},
               {"delta": 0.001}, {"throttle": 10}, {"median": 5}, {"ema": 0.3}, {"round": 1}, {"heartbeat": 50})
    st = [0, 0]

    def one():
        t = st[0] + 7
        st[0] = t
        x = (t * 37) % 20000 - 10000
        for f in fs:
            x = f.push(t, x)
            if x is None:
                break

    heap_locked(one, 3000)
