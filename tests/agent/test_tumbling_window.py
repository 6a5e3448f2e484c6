# Tumbling windows, time and count, on hand-computed examples.
from devtest import close
from wintest import ALL, feed, pipeline


def test_time_tumbling_bounds_and_emission_on_the_first_later_sample():
    p, got = pipeline({"name": "w", "size_ms": 1000, "aggregates": ALL})
    feed(p, [(100, 1), (500, 3), (999, 2)])
    assert got == []  # window [0, 1000) still open
    feed(p, [(1000, 10)])  # t >= end: [0, 1000) closes
    assert len(got) == 1
    start, end, r = got[0]
    assert (start, end) == (0, 1000)
    assert r["count"] == 3 and r["sum"] == 6 and r["avg"] == 2
    assert r["min"] == 1 and r["max"] == 3 and r["first"] == 1 and r["last"] == 2
    assert close(r["stddev"], (2 / 3) ** 0.5)  # population: sqrt(((1-2)^2 + (3-2)^2 + 0) / 3)
    # [1000, 2000) is skipped as empty when the next sample is at 3500
    feed(p, [(1500, 20), (3500, 7)])
    assert got[1][:2] == (1000, 2000) and got[1][2]["count"] == 2 and got[1][2]["avg"] == 15
    assert len(got) == 2
    p.flush()  # end of input: the open window [3000, 4000) is emitted
    assert got[2][:2] == (3000, 4000) and got[2][2]["last"] == 7
    p.flush()
    assert len(got) == 3


def test_time_tumbling_advance_closes_when_the_clock_passes():
    p, got = pipeline({"name": "w", "size_ms": 500, "aggregates": ["count"]})
    feed(p, [(10, 1)])
    p.advance(499)
    assert got == []
    p.advance(500)
    assert got == [(0, 500, {"count": 1})]


def test_time_tumbling_fractional_values_and_avg():
    p, got = pipeline({"name": "w", "size_ms": 60000, "aggregates": ["count", "avg", "sum", "stddev"]})
    feed(p, [(0, 21.5), (1000, 21.6), (2000, 21.7)])
    p.flush()
    r = got[0][2]
    assert r["count"] == 3 and close(r["sum"], 64.8) and close(r["avg"], 21.6)
    assert close(r["stddev"], 0.0816496580927726)


def test_count_tumbling_every_size_samples_start_end_are_sample_times():
    p, got = pipeline({"name": "c", "size": 3, "aggregates": ["count", "first", "last", "min", "max"]})
    feed(p, [(5, 4), (17, 8), (30, 6), (41, 1), (52, 2)])
    assert got == [(5, 30, {"count": 3, "first": 4, "last": 6, "min": 4, "max": 8})]
    p.flush()  # count windows are not flushed partial
    assert len(got) == 1
    feed(p, [(60, 9)])
    assert got[1] == (41, 60, {"count": 3, "first": 1, "last": 9, "min": 1, "max": 9})


def test_negative_times_use_floor_boundaries():
    p, got = pipeline({"name": "w", "size_ms": 1000, "aggregates": ["count"]})
    feed(p, [(-1500, 1), (-1, 2), (0, 3)])
    p.flush()
    assert got == [(-2000, -1000, {"count": 1}), (-1000, 0, {"count": 1}), (0, 1000, {"count": 1})]


def test_integer_sensor_gives_integer_results():
    p, got = pipeline({"name": "w", "size_ms": 1000, "aggregates": ["sum", "avg", "min"]}, decimals=0)
    feed(p, [(0, 512), (1, 513)])
    p.flush()
    assert got[0][2] == {"sum": 1025, "avg": 512.5, "min": 512}
