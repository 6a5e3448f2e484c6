# The fused paths of a pipeline give what one sample at a time gives: the
# same results, at the same push, with the same counters. The reference is
# the per-sample path alone (a pipeline that never gathers a run); against
# it: push() (runs of samples that close no window, settled as blocks),
# push_block() (a source's block), and blocks read by the scheduler. Under
# CPython and the board build (32-bit, native code); the heap stays locked.
import edgestream_agent.config  # noqa: F401 - compile the biggest module first, on an empty heap
from binascii import crc32

from devtest import MICROPYTHON, heap_locked, raises
from edgestream_agent.agent import Agent
from edgestream_agent.config import validate
from edgestream_agent.pipeline import Pipeline
from edgestream_agent.scheduler import Scheduler


class OneByOne(Pipeline):
    # the reference: every sample through the per-sample path, nothing gathered
    def _horizon(self, t):
        return False


BENCH = {"name": "temp", "period_ms": 10,
         "filters": [{"range": {"min": -50, "max": 150}}, {"calibrate": {"slope": 1.8, "offset": 32}}, {"ema": 0.3}],
         "windows": [{"name": "slide", "size_ms": 2000, "every_ms": 500,
                      "aggregates": ["count", "avg", "min", "max", "stddev"]},
                     {"name": "count", "size": 100, "aggregates": ["count", "sum", "min", "max", "first", "last"]}]}
SENSORS = [
    BENCH,
    # every filter but heartbeat, values crossing zero, tumbling windows
    {"name": "mix", "period_ms": 10,
     "filters": [{"median": 3}, {"range": {"min": -7, "max": 9}}, {"delta": 0.05}, {"throttle": 25},
                 {"calibrate": {"slope": 1.5, "offset": -2}}, {"clamp": {"min": -9, "max": 9}}, {"round": 1}],
     "windows": [{"name": "t", "size_ms": 700}, {"name": "c", "size": 9}]},
    # sliding windows, with min/max by a scan and by deques (size > 16 * every)
    {"name": "slide", "period_ms": 10, "filters": [{"median": 4}],
     "windows": [{"name": "st", "size_ms": 900, "every_ms": 300}, {"name": "sc", "size": 12, "every": 5},
                 {"name": "dt", "size_ms": 5000, "every_ms": 250}, {"name": "dc", "size": 64, "every": 3}]},
    # a sliding time window whose ring is too small for the rate: it overwrites
    {"name": "full", "period_ms": 100,
     "windows": [{"name": "small", "size_ms": 1000, "every_ms": 250, "capacity": 6},
                 {"name": "tc", "size": 7}]},
    # a window closing at every sample: nothing to gather
    {"name": "every", "period_ms": 10, "windows": [{"name": "fast", "size": 20, "every": 1,
                                                    "aggregates": ["min", "max"]}]},
    # heartbeats: one sample at a time
    {"name": "hb", "period_ms": 10, "filters": [{"delta": 1}, {"heartbeat": 400}],
     "windows": [{"name": "t", "size_ms": 500, "aggregates": ["count", "last"]}]},
]
BOARD = "rp2040"  # room for the results the comparisons keep


class Results:
    # what a pipeline emitted: a count and a CRC-32 of the results in order
    # (the lists themselves would not fit a board's heap)
    def __init__(self):
        self.n = 0
        self.crc = 0
        self.last = None

    def on(self, pipe, w, start, end):
        self.last = (w.name, start, end, w.agg.values())
        self.crc = crc32(repr(self.last).encode(), self.crc)
        self.n += 1

    def __eq__(self, other):
        return (self.n, self.crc) == (other.n, other.crc)

    def __repr__(self):
        return "<%d results, crc %x, last %r>" % (self.n, self.crc, self.last)


def build(cls, sensor, got=None):
    cfg = validate({"sensors": [sensor]})["sensors"][0]
    return cls(cfg, None if got is None else got.on)


def samples(n, seed):
    # irregular times (repeats, gaps) and values across zero, as fixed point
    out = []
    t = 1000
    x = seed
    for i in range(n):
        x = (x * 75 + 74) % 65537
        t += (0, 3, 10, 10, 10, 17, 40, 900)[x % 8] if i % 211 else 5000
        out.append((t, (x % 20001) - 10000))
    return out


def counters(p):
    return (p.samples, p.passed, p.dropped, p.rejected, p.late, p.results,
            [(w.emitted, w.overwritten, w.pending()) for w in p.windows])


def test_pushed_runs_give_the_same_results_at_the_same_pushes():
    for sensor in SENSORS:
        for seed in (1, 7):
            ref, got = Results(), Results()
            a = build(OneByOne, sensor, ref)
            b = build(Pipeline, sensor, got)
            for i, (t, v) in enumerate(samples(1500, seed)):
                a.push(t, v)
                b.push(t, v)
                if i % 97 == 0:  # the clock moves on between samples
                    a.advance(t + 5)
                    b.advance(t + 5)
                assert ref.n == got.n, (sensor["name"], i)  # at the same push
            assert counters(a) == counters(b), sensor["name"]
            a.flush()
            b.flush()
            assert got == ref and ref.n > 20, (sensor["name"], ref, got)


def test_a_block_gives_the_results_of_its_samples_pushed_one_by_one():
    for sensor in SENSORS:
        for period, size in ((10, 16), (3, 5), (10, 64), (250, 40)):
            ref, got = Results(), Results()
            a = build(OneByOne, sensor, ref)
            b = build(Pipeline, sensor, got)
            vals = [v for _, v in samples(960, period)]
            t = 700
            for k in range(0, len(vals), size):
                part = vals[k:k + size]
                for i in range(len(part)):
                    a.push(t + i * period, part[i])
                assert b.push_block(t, period, part, len(part)) == len(part)
                t += len(part) * period
                if k % 3 == 0:
                    t += 1234  # a gap between blocks
            assert counters(a) == counters(b), (sensor["name"], period, size)
            a.flush()
            b.flush()
            assert got == ref and ref.n > 5, (sensor["name"], period, size, ref, got)


def test_late_samples_of_a_block_are_refused_like_pushes():
    got = Results()
    p = build(Pipeline, {"name": "s", "windows": [{"name": "c", "size": 2, "aggregates": ["first", "last"]}]}, got)
    p.push(1000, 1000)
    assert p.push_block(970, 10, [2000, 3000, 4000, 5000, 6000], 5) == 2  # 970, 980, 990 are before 1000
    assert p.late == 3 and p.samples == 3
    assert got.n == 1 and got.last == ("c", 1000, 1000, [1, 5])  # (1000, 1), (1000, 5): a count window of 2
    assert p.push_block(900, 10, [7, 8], 2) == 0 and p.late == 5


def test_a_block_too_large_for_the_pipeline_buffer_is_refused():
    p = build(Pipeline, {"name": "s", "block": 4, "windows": [{"name": "c", "size": 2}]})
    e = raises(ValueError, p.push_block, 0, 10, p.vs, len(p.vs) + 1)
    assert "do not fit" in str(e)


def test_the_fused_paths_allocate_nothing_on_a_32_bit_board():
    import sys
    if MICROPYTHON:
        assert sys.maxsize == 2**31 - 1, sys.maxsize
    pipes = [build(Pipeline, s) for s in SENSORS]  # no result consumer: closing allocates nothing
    buf = [0] * 16
    st = [1000, 0]

    def pushes():
        for _ in range(16):
            st[0] += 10
            st[1] += 1
            i = st[1]
            v = ((i % 1601) * 7919) % 16001 - 8000
            for p in pipes:
                p.push(st[0], v)

    def blocks():
        t = st[0] + 10
        for k in range(16):
            i = st[1] + k
            buf[k] = ((i % 1601) * 7919) % 16001 - 8000
        st[1] += 16
        st[0] = t + 150
        for p in pipes:
            p.push_block(t, 10, buf, 16)

    def both():
        pushes()
        blocks()
        for p in pipes:
            p.advance(st[0])

    heap_locked(both, 400)
    for p in pipes:
        assert p.samples >= 400 * 32 and p.results > 50, (p.name, p.samples, p.results)


def test_a_sensor_with_blocks_samples_on_the_scheduler_like_one_by_one():
    class Clock:
        def __init__(self):
            self.ms = 0

        def now(self):
            return self.ms

        def sleep(self, ms):
            self.ms += ms

    src = {"type": "sim", "wave": "sine", "amplitude": 5, "offset": 20, "noise": 0.5, "seed": 3, "wave_ms": 3000}
    filters = [{"median": 3}, {"ema": 0.5}]
    windows = [{"name": "t", "size_ms": 1000}, {"name": "s", "size_ms": 1000, "every_ms": 250},
               {"name": "c", "size": 30}]
    cfg = {"sensors": [{"name": "one", "period_ms": 10, "source": src, "filters": filters, "windows": windows},
                       {"name": "blk", "period_ms": 10, "block": 8, "source": src, "filters": filters,
                        "windows": windows}]}
    got = {"one": [], "blk": []}
    clock = Clock()
    agent = Agent(cfg, clock=clock.now, on_result=lambda s, *r: got[s].append(r))
    sched = Scheduler(clock=clock.now, sleep_ms=clock.sleep)
    agent.attach(sched)
    assert agent.tasks["blk"].period_ms == 80 and agent.tasks["one"].period_ms == 10
    one, blk = agent.sensors
    heap_locked(sched.step, 20)  # a block read and pushed allocates nothing either
    sched.run(6000 - clock.ms)  # to 6000 ms: a multiple of the block's 80 ms
    # the same samples: the block sensor reads 8 at 80, 160, ...: the ones at
    # 10, 20, ..., 80, then 90 ... 160, as the other reads them one by one
    assert one.samples == blk.samples == 600 and one.read_errors == blk.read_errors == 0
    agent.flush()
    assert len(got["one"]) > 40 and got["blk"] == got["one"]


def test_a_burst_of_adc_readings_is_paced_and_scaled():
    from edgestream_agent.sources.adc import Adc
    from edgestream_agent.sources.scale import linear
    from edgestream_agent.timebase import ticks_diff, ticks_ms

    class FakeADC:  # the machine.ADC boundary: counts up, remembers when it was read
        def __init__(self):
            self.n = 0
            self.at = []

        def read_u16(self):
            self.at.append(ticks_ms())  # the clock the source paces itself by
            self.n += 1
            return self.n * 1000

    class Opened(Adc):  # (the unix port has no machine.ADC to open)
        def __init__(self):
            self.adc = FakeADC()
            self.num, self.den, self.off = linear(0.5, -1, 100)  # raw * 0.5 - 1, at 2 decimals

    src = Opened()
    buf = [0] * 6
    assert src.read_block(12345, 5, buf, 6) == 12345  # the burst starts now, at t
    assert buf == [49900, 99900, 149900, 199900, 249900, 299900]
    at = src.adc.at
    assert all(ticks_diff(at[i], at[0]) >= 5 * i for i in range(6)), at  # 5 ms apart, or later
