# The tiny board's memory budget: an agent with 4 sensors x 2 sliding windows of 256
# samples starts in the `tiny` (64 KB) heap and runs 10,000 samples with the
# heap locked. Under MicroPython this module runs with BOARD's heap on the
# board build, the agent frozen in as in a firmware (this module's own code
# is compiled from source on the heap).
import gc
import json

# imported first: every module this agent needs
import edgestream_agent.ring_window
import edgestream_agent.filters.median
import edgestream_agent.filters.ema  # noqa: F401
from edgestream_agent.agent import Agent
from devtest import MICROPYTHON, heap_locked

BOARD = "tiny"
DATA = __file__.rsplit("/", 1)[0] + "/data/tiny_agent.json"


def _now():
    return 0


def _validated():
    # The normalised config (config.validate()'s output) from a file, as
    # main.py holds it once the validator is unloaded (bench_agent measures
    # the whole start, main.py's way, frozen and from .mpy). test_config.py's
    # test_the_tiny_config_file_is_what_the_validator_makes keeps it honest.
    with open(DATA) as f:
        return json.load(f)


def test_4_sensors_x_2_sliding_windows_of_256_start_and_run_in_the_tiny_heap():
    cfg = _validated()
    agent = Agent(cfg, clock=_now, validated=True)  # samples pushed below, not sampled
    cfg = None
    gc.collect()
    if MICROPYTHON:
        print("tiny heap: %d bytes used after start, %d free" % (gc.mem_alloc(), gc.mem_free()))
    pipes = agent.sensors
    for i in range(300):  # fill the rings (30 s of samples at 100 ms)
        for p in pipes:
            p.push(i * 100, (i * 7919) % 5000)
    assert agent.samples == 4 * 300
    state = [29900]

    def step():
        t = state[0] + 100
        state[0] = t
        v = ((t % 5000) * 7919) % 5000  # (t * 7919) % 5000, in 31-bit small ints
        for p in pipes:
            p.push(t, v)

    before = agent.results
    heap_locked(step, 2500)  # 10,000 samples, windows closing included
    steps = (state[0] - 29900) // 100  # 2500 (+1 warm-up call under MicroPython)
    assert steps >= 2500 and agent.samples == 4 * 300 + 4 * steps
    # per sensor: c256 every 32 samples, t256 every 5 s: ~78 + ~50 in 250 s
    per = (agent.results - before) // 4
    assert 120 <= per <= 132, per
    for p in pipes:
        w = p.windows[0]
        assert w.agg.n == 256 and w.minq is None  # min/max by a scan at close
        assert p.late == 0 and p.rejected == 0
