"""Engine lifecycle, backpressure, dead letters and isolation (script source, memory sink)."""

from __future__ import annotations

import time

import pytest
from hubtest import CRASH, PAUSE, wait_for

from edgestream_hub.errors import StartError
from edgestream_hub.processors import Passthrough

BASE = """
sources:
  s: {script: {name: s, batch: 50}}
sinks:
  out: {memory: {}, batch: {size: 64, linger: 5ms}}
pipelines:
  p: {from: s, to: out, batch: {size: 32, linger: 5ms}}
"""


def test_start_stop_drains_everything_in_order(hub):
    hub.scripts["s"] = [{"i": i} for i in range(20_000)]
    e = hub.engine(BASE)
    assert wait_for(lambda: hub.sources["s"].pos >= 20_000)
    assert e.stop()
    assert [r["i"] for r in hub.out["out"]] == list(range(20_000))
    assert hub.sinks["out"].closed
    assert e.metrics.value("edgestream_source_records_total", component="s") == 20_000
    assert e.metrics.value("edgestream_sink_records_total", component="out") == 20_000


def test_stop_drains_records_in_flight_through_a_slow_sink(hub):
    hub.scripts["s"] = [{"i": i} for i in range(3000)] + [PAUSE] + [{"i": -1}]
    e = hub.engine(BASE.replace("memory: {}", "memory: {delay: 2ms}"))
    assert wait_for(lambda: hub.sources["s"].pos >= 3000)
    assert len(hub.out.get("out", [])) < 3000  # still in flight when the stop begins
    assert e.stop(20)
    assert [r["i"] for r in hub.out["out"]] == list(range(3000))


def test_finite_sources_finish_the_engine(hub):
    hub.scripts["s"] = [{"i": i} for i in range(500)]
    e = hub.engine(BASE.replace("batch: 50", "batch: 50, finite: true"))
    assert e.finished.wait(10)
    assert e.stop()
    assert len(hub.out["out"]) == 500


def test_slow_sink_blocks_intake_within_queue_bounds(hub):
    n = 2000
    hub.scripts["s"] = [{"i": i} for i in range(n)]
    e = hub.engine("""
sources:
  s: {script: {name: s, batch: 50}}
sinks:
  out: {memory: {gated: true}, queue: 100, batch: {size: 20, linger: 0ms}}
pipelines:
  p: {from: s, to: out, queue: 100, batch: {size: 20, linger: 0ms}}
""")
    p, s = e.pipelines["p"], e.sinks["out"]
    # the sink is stuck: both queues fill up, then the source is held back
    assert wait_for(lambda: len(p.input) == 100 and len(s.queue) == 100)
    time.sleep(0.2)
    # queued (100 + 100) + one batch in each stage (20 + 20) + one source batch being emitted (50)
    assert hub.sources["s"].pos <= 290
    assert p.input.high_water <= 100 and s.queue.high_water <= 100
    hub.gates["out"].set()
    assert wait_for(lambda: hub.sources["s"].pos >= n)
    assert e.stop(30)
    assert [r["i"] for r in hub.out["out"]] == list(range(n))
    assert e.metrics.value("edgestream_sink_dropped_records_total", component="out") == 0


def test_drop_oldest_counts_every_drop(hub):
    n = 3000
    hub.scripts["s"] = [{"i": i} for i in range(n)]
    e = hub.engine("""
sources:
  s: {script: {name: s, batch: 100, finite: true}}
sinks:
  out: {memory: {delay: 5ms}, queue: 50, policy: drop_oldest, batch: {size: 10, linger: 0ms}}
pipelines:
  p: {from: s, to: out}
""")
    assert e.finished.wait(10)
    assert e.stop(20)
    got = [r["i"] for r in hub.out["out"]]
    dropped = e.metrics.value("edgestream_sink_dropped_records_total", component="out")
    assert dropped > 0
    assert len(got) + dropped == n
    assert got == sorted(got) and got[-1] == n - 1  # the newest survive, in order


DL = """
hub: {dead_letter: dlq}
sources:
  s: {script: {name: s}}
sinks:
  out: {memory: {}}
  dlq: {memory: {}}
pipelines:
  p:
    from: s
    processors: [{filter: {field: v, gt: 1}}]
    to: out
"""


def test_rejected_records_go_to_the_dead_letter_sink_with_the_reason(hub):
    hub.scripts["s"] = [{"v": 5}, {"v": "hot"}, {"w": 1}, {"v": 7, "reject": True}, {"v": 9}, {"v": 0}]
    e = hub.engine(DL)
    assert wait_for(lambda: len(hub.out.get("dlq", [])) == 3)
    assert e.stop()
    assert hub.out["out"] == [{"v": 5}, {"v": 9}]
    reasons = {d["record"].get("v", d["record"].get("w")): d for d in hub.out["dlq"]}
    assert "expected a number" in reasons["hot"]["reason"] and reasons["hot"]["component"] == "p.filter"
    assert reasons["hot"]["pipeline"] == "p"
    assert "missing" in reasons[1]["reason"]
    assert reasons[7]["component"] == "out" and "asked to be rejected" in reasons[7]["reason"]
    assert e.metrics.value("edgestream_hub_dead_letters_total", component="p.filter") == 2
    assert e.metrics.value("edgestream_hub_dead_letters_total", component="out") == 1


def test_a_crashing_processor_dead_letters_its_batch_and_spares_other_pipelines(hub):
    from edgestream_hub.registry import component
    from edgestream_hub.spec import Spec

    class Boom(Passthrough):
        def process(self, records, now_ms):
            if any(r.get("boom") for r in records):
                raise ZeroDivisionError("scripted processor failure")
            return records

    hub.registry.register("processor", "boom", component(Spec("boom", "x", []))(lambda c, ctx: Boom()))
    hub.scripts["s"] = [{"i": 0}, PAUSE, {"i": 1, "boom": True}, PAUSE, {"i": 2}]
    hub.scripts["t"] = [{"j": j} for j in range(100)]
    e = hub.engine("""
hub: {dead_letter: dlq}
sources:
  s: {script: {name: s}}
  t: {script: {name: t}}
sinks:
  out: {memory: {}}
  other: {memory: {}}
  dlq: {memory: {}}
pipelines:
  p: {from: s, processors: [boom: {}], to: out, batch: {size: 1}}
  q: {from: t, to: other}
""")
    assert wait_for(lambda: len(hub.out.get("out", [])) == 1)
    hub.resume["s"].set()
    assert wait_for(lambda: len(hub.out.get("out", [])) == 2 and len(hub.out.get("dlq", [])) == 1)
    assert e.stop()
    assert [r["i"] for r in hub.out["out"]] == [0, 2]
    assert "ZeroDivisionError: scripted processor failure" in hub.out["dlq"][0]["reason"]
    assert len(hub.out["other"]) == 100
    assert e.metrics.value("edgestream_pipeline_errors_total", component="p") == 1


def test_a_crashing_source_is_retried(hub):
    hub.scripts["s"] = [{"i": 0}, CRASH, {"i": 1}]
    e = hub.engine(BASE)
    assert wait_for(lambda: len(hub.out.get("out", [])) == 2)
    assert e.stop()
    assert e.metrics.value("edgestream_source_reconnects_total", component="s") == 1


def test_a_failing_sink_is_retried_with_backoff_until_it_recovers(hub):
    hub.scripts["s"] = [{"i": i} for i in range(50)]
    e = hub.engine(BASE.replace("memory: {}", "memory: {fail_first: 3}").replace(
        "linger: 5ms}\npipelines", "linger: 5ms}, retry: {initial: 10ms, max: 40ms}\npipelines"))
    assert wait_for(lambda: len(hub.out.get("out", [])) == 50)
    assert e.stop()
    assert [r["i"] for r in hub.out["out"]] == list(range(50))
    assert e.metrics.value("edgestream_sink_errors_total", component="out") == 3


def test_a_sink_out_of_attempts_dead_letters_the_batch(hub):
    hub.scripts["s"] = [{"v": 3}]
    failing = "out: {memory: {fail_first: 5}, retry: {initial: 1ms, attempts: 2}}"
    e = hub.engine(DL.replace("out: {memory: {}}", failing))
    assert wait_for(lambda: len(hub.out.get("dlq", [])) == 1)
    assert e.stop()
    assert "sink out failed 2 times: ConnectionError: scripted sink failure" in hub.out["dlq"][0]["reason"]
    assert hub.out["dlq"][0]["record"] == {"v": 3}
    assert hub.sinks["out"].writes == 2


def test_start_fails_before_consuming_anything(hub):
    import socket

    hub.scripts["s"] = [{"i": 1}]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        text = BASE.replace("sources:\n", f"sources:\n  web: {{http: {{port: {port}}}}}\n").replace(
            "p: {from: s", "p: {from: [s, web]")
        with pytest.raises(StartError, match=f"web: cannot listen on 127.0.0.1:{port}"):
            hub.engine(text)
    assert not hub.sources["s"].started.is_set()
    assert hub.out.get("out", []) == []
    assert not hub.sinks["out"].writes


def test_a_stop_out_of_time_names_only_the_pipelines_that_still_hold_records(hub, caplog):
    import re
    import threading

    from edgestream_hub.registry import component
    from edgestream_hub.spec import Spec

    gate = threading.Event()

    class Stall(Passthrough):
        def process(self, records, now_ms):
            gate.wait(20)  # stuck until the test lets it go
            return records

    hub.registry.register("processor", "stall", component(Spec("stall", "x", []))(lambda c, ctx: Stall()))
    hub.scripts["s"] = [{"i": i} for i in range(500)]
    e = hub.engine("""
sources:
  s: {script: {name: s, batch: 50}}
  t: {script: {name: t}}
  u: {script: {name: u}}
sinks:
  out: {memory: {}}
pipelines:
  busy: {from: s, processors: [stall: {}], to: out, queue: 100, batch: {size: 10}}
  calm: {from: t, to: out}
  still: {from: u, processors: [passthrough: {}], to: out}
""")
    busy = e.pipelines["busy"]
    assert wait_for(lambda: len(busy.input) >= 90)
    try:
        with caplog.at_level("ERROR", logger="edgestream.hub"):
            assert not e.stop(0.3)
    finally:
        gate.set()
    said = [r.getMessage() for r in caplog.records if "did not drain" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("pipeline busy did not drain before the stop deadline"), said
    m = re.search(r": (\d+) records still held \((\d+) queued, (\d+) in its processors\)", said[0])
    assert m and int(m.group(3)) == 10 and int(m.group(1)) == int(m.group(2)) + 10 and int(m.group(2)) >= 90, said


def test_a_sink_thread_that_crashes_is_restarted_and_says_so(hub, caplog):
    hub.scripts["s"] = [{"i": 0}, PAUSE, {"i": 1}]
    e = hub.engine(BASE)
    q = e.sinks["out"].queue
    real_get, crashes = q.get, [1]

    def flaky(*a, **kw):
        if crashes[0]:
            crashes[0] -= 1
            raise OverflowError("timestamp out of range for platform time_t")
        return real_get(*a, **kw)

    q.get = flaky
    assert wait_for(lambda: not crashes[0])
    hub.resume["s"].set()
    assert wait_for(lambda: len(hub.out.get("out", [])) == 2)
    assert e.stop()
    (line,) = [r for r in caplog.records if "sink out crashed" in r.getMessage()]
    assert line.levelname == "ERROR" and "OverflowError" in line.getMessage()
