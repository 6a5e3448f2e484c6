# Health metrics message: names, values, and that it is a valid wire message.
# Runs under CPython and MicroPython.
from edgestream_agent.clock import Clock
from edgestream_agent.health import Health
from edgestream_agent.offline_buffer import OfflineBuffer
from edgestream_shared.decoder import decode


class FakeScheduler:
    lag_max_ms = 7
    lag_mean_ms = 1
    errors = 2


class FakeAgent:
    samples = 1000
    results = 10


class LinkStub:
    # the Link.metrics contract: fills in the link's counters
    def __init__(self):
        self.buf = OfflineBuffer(128)

    def metrics(self, m):
        m["results_sent"] = self.buf.acked
        m["results_dropped"] = self.buf.dropped


def test_metrics_message_carries_every_source():
    h = Health("d1", 9)
    link = LinkStub()
    for _ in range(10):
        link.buf.push(b"x" * 40)
    m = h.collect(FakeScheduler(), FakeAgent(), link, Clock(now=lambda: 0), config_version=4)
    for k in ("heap_free", "heap_used", "uptime_ms", "fw", "mpy", "platform", "clock_source", "clock_age_ms"):
        assert k in m, k
    assert m["lag_max_ms"] == 7 and m["lag_mean_ms"] == 1 and m["loop_errors"] == 2
    assert m["samples"] == 1000 and m["results"] == 10 and m["config_version"] == 4
    assert m["results_dropped"] == 8 and m["results_sent"] == 0
    assert m["clock_source"] == "none" and m["clock_age_ms"] == -1
    msg = decode(h.encode(m))
    assert msg["kind"] == "metrics" and msg["boot"] == 9 and msg["metrics"]["samples"] == 1000
    assert h.sent == 1


def test_heap_numbers_are_real_under_micropython():
    import sys
    m = Health("d1", 1).collect()
    if sys.implementation.name == "micropython":
        assert m["heap_free"] > 0 and m["heap_used"] > 0 and m["mpy"].startswith("mpy-")
    else:
        assert m["heap_free"] == -1
