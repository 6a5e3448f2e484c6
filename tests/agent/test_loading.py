# Code loaded while the agent runs (edgestream_agent.need, and what a
# config loads) gives the heap back when the heap cannot hold it.
import gc
import sys

from devtest import MICROPYTHON, raises
from edgestream_agent import need, unload


def _free():
    gc.collect()
    return gc.mem_free() if MICROPYTHON else 0


def test_a_module_that_runs_out_of_heap_while_loading_leaves_nothing_behind():
    # outofheap.py holds 16 KB when its last line raises MemoryError:
    # MicroPython takes it out of sys.modules but kept it referenced from
    # the table's slot, with its 16 KB, until need() reused the slot. What
    # may stay: the names the first attempt interned (a few hundred bytes).
    before = _free()
    for _ in range(3):
        raises(MemoryError, need, "outofheap", "KEPT", "")
        assert "outofheap" not in sys.modules
        assert _free() >= before - 1024, (before, _free())


def _sensor(capacity):
    from edgestream_agent.config import validate
    return validate({"device": "d", "sensors": [
        {"name": "x", "period_ms": 100, "filters": [{"delta": 0.1}, {"round": 1}],
         "windows": [{"name": "s", "size_ms": 60000, "every_ms": 1000, "capacity": capacity}]}]})["sensors"][0]


def test_a_sensor_whose_ring_cannot_fit_is_refused_before_its_code_is_loaded():
    # From .mpy every module loaded keeps its names on the heap for good: a
    # sensor refused for its size loads none of its filters and windows.
    from edgestream_agent.pipeline import Pipeline
    cfg = _sensor(20000)  # a ring of 160 KB
    if not MICROPYTHON:
        return  # CPython has no heap cap to refuse it
    mods = ("edgestream_agent.ring_window", "edgestream_agent.filters.delta", "edgestream_agent.filters.round")
    unload(*mods)
    e = raises(MemoryError, Pipeline, cfg)
    assert "bytes for a ring" in str(e), e
    for m in mods:
        assert m not in sys.modules, m
    # one that fits is built as before
    p = Pipeline(_sensor(100))
    assert p.ring.cap == 101 and len(p.filters) == 2


def test_the_filter_chain_is_loaded_with_the_first_sensor_that_has_filters():
    # chain.run is every filter's per-sample code (several KB of machine code from a board's bundle): an
    # agent whose sensors have no filters never loads it
    if not MICROPYTHON:
        return  # CPython keeps its modules
    unload("pipeline", "chain")
    from edgestream_agent.config import validate
    from edgestream_agent.pipeline import Pipeline
    cfg = validate({"device": "d", "sensors": [{"name": "a", "windows": [{"size_ms": 1000}]},
                                               {"name": "b", "filters": [{"median": 3}],
                                                "windows": [{"size_ms": 1000}]}]})["sensors"]
    p = Pipeline(cfg[0])
    assert "edgestream_agent.chain" not in sys.modules
    p.push(0, 5)
    p = Pipeline(cfg[1])
    assert "edgestream_agent.chain" in sys.modules
    p.push(0, 5)
    assert p.samples == 1
