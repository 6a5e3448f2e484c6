# The steady state allocates nothing: 10,000 samples through 3 filters and 2
# windows (windows closing included) with MicroPython's heap locked, so any
# allocation raises MemoryError. Under CPython the same loop just runs.
import edgestream_agent.config  # noqa: F401 - compile the biggest module first, on an empty heap
from devtest import MICROPYTHON, alloc_bytes, heap_locked
from edgestream_agent.agent import Agent
from edgestream_agent.sources.sim import Sim

CONFIG = {"device": "d1", "sensors": [{
    "name": "temp", "period_ms": 10,
    "filters": [{"range": {"min": -50, "max": 150}}, {"calibrate": {"slope": 1.8, "offset": 32}}, {"ema": 0.3}],
    "windows": [
        {"name": "slide", "size_ms": 2000, "every_ms": 500, "aggregates": ["count", "avg", "min", "max", "stddev"]},
        {"name": "count", "size": 100, "aggregates": ["count", "sum", "min", "max", "first", "last", "stddev"]},
    ]}]}


class Clock:
    def __init__(self, step):
        self.t = 0
        self.step = step

    def now(self):
        self.t += self.step
        return self.t


def test_10000_samples_through_3_filters_and_2_windows_allocate_nothing():
    agent = Agent(CONFIG)  # no on_result: windows close without building a result
    p = agent.pipeline("temp")
    st = Clock(10)

    def one():
        t = st.now()
        p.push(t, 20000 + (t * 7919) % 5000)  # 20.000 .. 24.999 degrees

    heap_locked(one, 10000)
    assert p.samples >= 10000
    w_slide, w_count = p.windows
    assert w_slide.emitted >= 190 and w_count.emitted == 100
    assert w_slide.overwritten == 0
    assert agent.results == p.results  # counted, though nobody asked for them
    assert p.results == w_slide.emitted + w_count.emitted


def test_mem_alloc_does_not_grow_over_10000_samples():
    agent = Agent(CONFIG)
    p = agent.pipeline("temp")
    st = Clock(10)

    def one():
        t = st.now()
        # (t * 104729) % 3000 without the product leaving 31-bit small ints
        # (t reaches 100,000 here), which would allocate on a 32-bit board
        p.push(t, 20000 + ((t % 3000) * 104729) % 3000)

    n = alloc_bytes(one, 10000)
    if MICROPYTHON:
        assert n == 0, n
        assert p.passed == 10001


def test_sampling_a_simulated_source_allocates_nothing():
    cfg = {"sensors": [{"name": "s", "period_ms": 10, "source": {"type": "sim", "wave": "sine", "amplitude": 5,
                                                                  "offset": 20, "noise": 0.5, "seed": 3},
                        "filters": [{"median": 5}, {"delta": 0.01}, {"round": 2}],
                        "windows": [{"name": "t", "size_ms": 1000, "aggregates": ["avg", "max"]},
                                    {"name": "c", "size": 50, "every": 10, "aggregates": ["min", "max", "avg"]}]}]}
    clock = Clock(10)
    agent = Agent(cfg, clock=clock.now)
    p = agent.pipeline("s")
    p.source = Sim(p.src, p.factor)
    p.clock = agent.clock
    heap_locked(p.sample, 10000)
    assert p.samples >= 10000 and p.read_errors == 0
    assert p.windows[0].emitted >= 99


def test_result_building_is_the_only_allocation():
    got = []
    agent = Agent(CONFIG, on_result=lambda *r: got.append(r))
    p = agent.pipeline("temp")
    for t in range(0, 3000, 10):
        agent.feed("temp", t, 21)
    counts = [r for r in got if r[1] == "count"]
    assert counts[0][:4] == ("temp", "count", 0, 990)
    assert counts[0][4] == (b"count", b"sum", b"min", b"max", b"first", b"last", b"stddev")
    if MICROPYTHON:
        # with a result consumer, closing windows allocates; samples in between do not
        st = Clock(10)
        st.t = 3000

        def quiet():
            t = st.now()
            p.push(t, 21000)

        n = alloc_bytes(quiet, 40)  # 41 samples: no window closes (count window at 400)
        assert n == 0, n


# Every filter and every kind of window, on values that cross zero: on a
# 32-bit board (31-bit small ints) a long-int constant negated per sample, or
# a product that leaves small ints, allocates on each sample and fails here.
EDGES = {"device": "d1", "sensors": [
    {"name": "a", "period_ms": 10,
     "filters": [{"range": {"min": -1000, "max": 1000}}, {"clamp": {"min": -7.5, "max": 7.5}},
                 {"calibrate": {"slope": 1.5, "offset": -2}}, {"delta": 0.01}, {"throttle": {"interval_ms": 20}},
                 {"heartbeat": {"interval_ms": 100}}],
     "windows": [{"name": "t", "size_ms": 1000}, {"name": "c", "size": 50}]},
    {"name": "b", "period_ms": 10,
     "filters": [{"median": 5}, {"ema": 0.25}, {"round": 1}],
     "windows": [{"name": "st", "size_ms": 2000, "every_ms": 500}, {"name": "sc", "size": 64, "every": 16},
                 {"name": "fast", "size": 32, "every": 1, "aggregates": ["min", "max"]}]},
]}


def test_every_filter_and_window_allocates_nothing_on_a_32_bit_board():
    import sys
    if MICROPYTHON:
        # the board build: small ints end at 2**30, as on ESP32 and RP2040
        assert sys.maxsize == 2**31 - 1, sys.maxsize
    agent = Agent(EDGES)
    a, b = agent.sensors
    st = Clock(10)

    def one():
        t = st.now()
        i = t // 10
        v = ((i % 1601) * 7919) % 16001 - 8000  # -8.000 .. 8.000, both signs
        if i % 97 < 40:
            v = -v
        a.push(t, v)
        b.push(t, v)
        if i % 50 == 0:
            agent.flush(t)  # the clock moves on: time windows close, heartbeats fire

    heap_locked(one, 5000)
    assert a.samples >= 5000 and b.samples >= 5000
    assert a.rejected == 0 and b.rejected == 0
    assert all(w.emitted >= 48 for w in a.windows), [w.emitted for w in a.windows]
    assert all(w.emitted >= 24 for w in b.windows), [w.emitted for w in b.windows]
