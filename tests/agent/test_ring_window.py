# Sliding windows over the ring buffer, time and count, hand-computed.
from devtest import close
from wintest import ALL, feed, pipeline


def test_time_sliding_windows_at_each_multiple_of_every():
    p, got = pipeline({"name": "s", "size_ms": 1000, "every_ms": 500, "aggregates": ["count", "min", "max", "sum"]})
    feed(p, [(100, 1), (600, 2), (1100, 3), (1600, 4)])
    # boundary 500: [-500, 500) = {1}; 1000: [0, 1000) = {1, 2}; 1500: [500, 1500) = {2, 3}
    assert got == [(-500, 500, {"count": 1, "min": 1, "max": 1, "sum": 1}),
                   (0, 1000, {"count": 2, "min": 1, "max": 2, "sum": 3}),
                   (500, 1500, {"count": 2, "min": 2, "max": 3, "sum": 5})]
    p.flush()  # remaining windows holding samples: 2000 = {3, 4}, 2500 = {4}
    assert got[3:] == [(1000, 2000, {"count": 2, "min": 3, "max": 4, "sum": 7}),
                       (1500, 2500, {"count": 1, "min": 4, "max": 4, "sum": 4})]


def test_time_sliding_skips_empty_windows_across_a_gap():
    p, got = pipeline({"name": "s", "size_ms": 1000, "every_ms": 500, "aggregates": ["count"]})
    feed(p, [(0, 1), (10000, 2)])
    assert [g[:2] for g in got] == [(-500, 500), (0, 1000)]
    p.flush()
    assert [g[:2] for g in got] == [(-500, 500), (0, 1000), (9500, 10500), (10000, 11000)]


def test_time_sliding_boundary_sample_belongs_to_the_next_window():
    p, got = pipeline({"name": "s", "size_ms": 1000, "every_ms": 1000, "type": "sliding", "aggregates": ["count"]})
    feed(p, [(999, 1), (1000, 2), (2000, 3)])
    assert got == [(0, 1000, {"count": 1}), (1000, 2000, {"count": 1})]


def test_sliding_min_max_follow_the_window_not_the_history():
    p, got = pipeline({"name": "c", "size": 3, "every": 1, "aggregates": ["min", "max", "first", "last"]})
    feed(p, [(i, v) for i, v in enumerate([5, 1, 9, 7, 3, 8, 8, 2])])
    mins = [g[2]["min"] for g in got]
    maxs = [g[2]["max"] for g in got]
    # windows: [5,1,9] [1,9,7] [9,7,3] [7,3,8] [3,8,8] [8,8,2]
    assert mins == [1, 1, 3, 3, 3, 2]
    assert maxs == [9, 9, 9, 8, 8, 8]
    assert [(g[0], g[1]) for g in got] == [(0, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7)]
    assert got[-1][2]["first"] == 8 and got[-1][2]["last"] == 2


def test_count_sliding_after_every_kth_sample_once_size_have_come():
    p, got = pipeline({"name": "c", "size": 4, "every": 2, "aggregates": ["count", "sum"]})
    feed(p, [(i * 10, i + 1) for i in range(9)])  # values 1..9 at t 0..80
    # every 2nd sample: after samples 2 (<4 seen), 4, 6, 8
    assert got == [(0, 30, {"count": 4, "sum": 10}), (20, 50, {"count": 4, "sum": 18}),
                   (40, 70, {"count": 4, "sum": 26})]
    odd, got2 = pipeline({"name": "c", "size": 5, "every": 2, "aggregates": ["sum"]})
    feed(odd, [(i, i + 1) for i in range(8)])
    # samples 2 and 4 come before 5 samples have; 6: last five = 2..6; 8: 4..8
    assert got2 == [(1, 5, {"sum": 20}), (3, 7, {"sum": 30})]


def test_sliding_stddev_and_avg_stay_exact_while_values_leave():
    p, got = pipeline({"name": "c", "size": 4, "every": 1, "aggregates": ALL})
    vals = [20.5, 21.25, 19.75, 30.0, -4.5, 12.125, 12.125, 0.0]
    feed(p, [(i, v) for i, v in enumerate(vals)])
    for k, (start, end, r) in enumerate(got):
        w = vals[k:k + 4]
        m = sum(w) / 4
        assert close(r["avg"], m) and close(r["sum"], sum(w))
        assert close(r["stddev"], (sum((x - m) ** 2 for x in w) / 4) ** 0.5)
        assert r["min"] == min(w) and r["max"] == max(w) and r["first"] == w[0] and r["last"] == w[-1]


def test_big_swings_keep_exact_sums():
    # values far from the window's reference: the two-limb sum of squares
    p, got = pipeline({"name": "c", "size": 3, "every": 1, "aggregates": ["avg", "stddev"]}, decimals=3)
    vals = [1000000.0, -1000000.0, 999999.999, 0.001, 2000000.0]
    feed(p, [(i, v) for i, v in enumerate(vals)])
    for k, (_, _, r) in enumerate(got):
        w = vals[k:k + 3]
        m = sum(w) / 3
        assert close(r["avg"], m, 1e-9)
        assert close(r["stddev"], (sum((x - m) ** 2 for x in w) / 3) ** 0.5, 1e-9)


def test_full_ring_overwrites_the_oldest_and_counts_it():
    p, got = pipeline({"name": "s", "size_ms": 1000, "every_ms": 1000, "type": "sliding", "capacity": 2,
                       "aggregates": ["count", "min"]})
    feed(p, [(0, 5), (1, 1), (2, 7), (1000, 0)])
    assert got == [(0, 1000, {"count": 2, "min": 1})]
    assert p.windows[0].overwritten == 1


def test_elastic_ring_grows_instead():
    p, got = pipeline({"name": "s", "size_ms": 1000, "every_ms": 1000, "type": "sliding", "capacity": 2,
                       "aggregates": ["count", "min", "max"]}, elastic=True)
    feed(p, [(0, 5), (1, 1), (2, 7), (3, 3), (4, 9), (1000, 0)])
    assert got == [(0, 1000, {"count": 5, "min": 1, "max": 9})]
    assert p.windows[0].overwritten == 0 and p.windows[0].grown == 8


def test_epoch_millisecond_timestamps():
    t0 = 1700000000000
    # (a 1 s period: the ring holds 77 samples, not 752, on the small heap)
    p, got = pipeline({"name": "s", "size_ms": 60000, "every_ms": 30000, "aggregates": ["count"]}, period_ms=1000)
    feed(p, [(t0 + 1, 1), (t0 + 45000, 2), (t0 + 100000, 3)])
    p.flush()
    # t0 % 30000 == 20000: boundaries at t0 + 10000 + k * 30000; each window
    # of 60 s holds exactly one of the three samples
    assert t0 % 30000 == 20000
    assert [g[:2] for g in got] == [(t0 + 10000 + k * 30000 - 60000, t0 + 10000 + k * 30000) for k in range(6)]
    assert [g[2]["count"] for g in got] == [1] * 6


def _min_max_windows(window, n=200, size=40):
    # -> (windows' min/max, the same from the last `size` values, recomputed)
    p, got = pipeline(window, decimals=0)
    vals = [(i * 7919) % 101 - (i % 13) * 3 for i in range(n)]
    for i in range(n):
        p.feed(i, vals[i])
    want = [(min(vals[j - size + 1:j + 1]), max(vals[j - size + 1:j + 1]))
            for j in range(size - 1, n) if (j + 1) % window["every"] == 0]
    return [(g[2]["min"], g[2]["max"]) for g in got], want


def test_sliding_min_max_by_deque_when_the_window_closes_often():
    # size > 16 * every: monotonic deques
    w = {"name": "c", "size": 40, "every": 2, "aggregates": ["min", "max"]}
    p, _ = pipeline(w)
    assert p.windows[0].minq is not None and p.windows[0].maxq is not None
    got, want = _min_max_windows(w)
    assert len(got) == 81 and got == want


def test_sliding_min_max_by_scan_at_close_otherwise():
    # size <= 16 * every: no deque, the window's samples are scanned at close
    w = {"name": "c", "size": 40, "every": 5, "aggregates": ["min", "max"]}
    p, _ = pipeline(w)
    assert p.windows[0].minq is None and p.windows[0].maxq is None
    got, want = _min_max_windows(w)
    assert len(got) == 33 and got == want
    only_min = {"name": "c", "size": 40, "every": 5, "aggregates": ["min"]}
    p, got = pipeline(only_min, decimals=0)
    feed(p, [(i, 50 - i) for i in range(45)])
    assert [g[2]["min"] for g in got] == [11, 6]  # after samples 40 (50..11) and 45 (45..6)
