"""A sink queue's drop_oldest policy loses records on purpose: the loss is logged, not only counted."""

from __future__ import annotations

import logging


def test_records_dropped_by_drop_oldest_are_logged(hub, caplog):
    n = 3000
    hub.scripts["s"] = [{"i": i} for i in range(n)]
    caplog.set_level(logging.WARNING, "edgestream.hub.sink.out")
    e = hub.engine("""
sources: {s: {script: {name: s, batch: 100, finite: true}}}
sinks: {out: {memory: {delay: 5ms}, queue: 50, policy: drop_oldest, batch: {size: 10, linger: 0ms}}}
pipelines: {p: {from: s, to: out}}
""")
    assert e.finished.wait(10)
    assert e.stop(20)
    dropped = e.metrics.value("edgestream_sink_dropped_records_total", component="out")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("data loss: queue full")]
    assert dropped > 0 and lines  # the first drop is logged at once, the rest summed up (at the latest at stop)
    assert sum(int(x.split("dropped the oldest ")[1].split()[0]) for x in lines) == dropped
    assert len(lines) <= 3  # not a line per drop
