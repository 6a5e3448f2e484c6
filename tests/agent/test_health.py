# Health metrics: names, values, a valid wire message, and counters that only
# grow within a boot (a remote config included). Runs under CPython and
# MicroPython.
from edgestream_shared.decoder import decode  # the biggest module first, on an empty heap
from edgestream_agent.agent import Agent
from edgestream_agent.clock import Clock
from edgestream_agent.health import collect
from edgestream_agent.link import Link
from edgestream_agent.offline_buffer import OfflineBuffer
from edgestream_agent.scheduler import Scheduler
from edgestream_agent.wire_out import message
from edgestream_shared.encoder import encode_config


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
    link = LinkStub()
    for _ in range(10):
        link.buf.push(b"x" * 40)
    m = collect(0, FakeScheduler(), FakeAgent(), link, Clock(now=lambda: 0), config_version=4)
    for k in ("heap_free", "heap_used", "uptime_ms", "fw", "mpy", "platform", "clock_source", "clock_age_ms"):
        assert k in m, k
    assert m["lag_max_ms"] == 7 and m["lag_mean_ms"] == 1 and m["loop_errors"] == 2
    assert m["samples"] == 1000 and m["results"] == 10 and m["config_version"] == 4
    assert m["results_dropped"] == 8 and m["results_sent"] == 0
    assert m["clock_source"] == "none" and m["clock_age_ms"] == -1
    msg = decode(message("metrics", "d1", 9, "metrics", m))
    assert msg["kind"] == "metrics" and msg["boot"] == 9 and msg["metrics"]["samples"] == 1000


def test_heap_numbers_are_real_under_micropython():
    import sys
    m = collect(0)
    if sys.implementation.name == "micropython":
        assert m["heap_free"] > 0 and m["heap_used"] > 0 and m["mpy"].startswith("mpy-")
    else:
        assert m["heap_free"] == -1


# metrics that are not counters: they may go down
GAUGES = ("heap_free", "heap_used", "lag_mean_ms", "results_buffered", "link_up", "clock_age_ms",
          "config_version")


def test_every_counter_only_grows_across_a_remote_config():
    # A real agent and link (no transport) on a driven clock: sample, apply
    # a config that rebuilds one sensor and removes the other, sample on.
    T = [0]

    def clock():
        return T[0]

    def sensor(name, size_ms):
        return {"name": name, "period_ms": 100, "source": {"type": "sim", "wave": "steps"},
                "windows": [{"name": "w", "size_ms": size_ms, "aggregates": ["count", "avg"]}]}

    cfg = {"device": "d1", "version": 1, "sensors": [sensor("a", 500), sensor("b", 500)],
           "transport": {"type": "none", "buffer_bytes": 1024, "max_message": 256}}
    sched = Scheduler(clock=clock, sleep_ms=lambda ms: None)
    agent = Agent(cfg, clock=clock)
    agent.attach(sched)
    link = Link(cfg, 3)
    agent.on_result = link.result
    link.attach(sched, agent)
    seen = []

    def run(ms):
        for _ in range(ms // 10):
            T[0] += 10
            sched.step()
        seen.append(link.collect())

    run(2000)
    assert seen[-1]["samples"] >= 38 and seen[-1]["results"] >= 6
    new = {"device": "d1", "sensors": [sensor("a", 300)],
           "transport": {"type": "none", "buffer_bytes": 1024, "max_message": 256}}
    link._rx(encode_config("d1", 2, new), "config")
    assert decode(link._ctrl[-1][1])["ok"] is True
    seen.append(link.collect())
    run(1000)
    assert seen[-1]["config_version"] == 2 and seen[-1]["configs_applied"] == 1
    for before, after in zip(seen, seen[1:]):
        for k in before:
            if k not in GAUGES and isinstance(before[k], int):
                assert after.get(k, -1) >= before[k], (k, before[k], after.get(k))
    assert seen[-1]["samples"] > seen[0]["samples"] + 9
