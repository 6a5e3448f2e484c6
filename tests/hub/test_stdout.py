"""The debugging sinks: one JSON line per record, and no record lost for what it holds."""

from __future__ import annotations

import json
import logging


def test_stdout_and_log_write_non_finite_numbers_as_null(hub, capsys, caplog):
    hub.scripts["s"] = [{"v": float("nan")}, {"v": [float("inf"), 2]}, {"v": {1, 2}}, {"v": "lone \udc80"}]
    caplog.set_level(logging.INFO, "edgestream.records.show")
    e = hub.engine("""
sources: {s: {script: {name: s, finite: true}}}
sinks: {print: {stdout: {}}, show: {log: {}}}
pipelines: {p: {from: s, to: [print, show]}}
""")
    assert e.finished.wait(10) and e.stop()
    printed = capsys.readouterr().out.splitlines()
    logged = [r.getMessage() for r in caplog.records if r.name == "edgestream.records.show"]
    for lines in (printed, logged):
        assert [json.loads(x) for x in lines[:3]] == [{"v": None}, {"v": [None, 2]}, {"v": [1, 2]}]
        assert "lone" in lines[3]
    for sink in ("print", "show"):
        assert e.metrics.value("edgestream_sink_nonfinite_values_total", component=sink) == 2
        assert e.metrics.value("edgestream_sink_records_total", component=sink) == 4
