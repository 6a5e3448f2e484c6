"""The debugging sinks: one JSON line per record, and no record lost for what it holds."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from hubtest import wait_for
from prometheus_client.parser import text_string_to_metric_families

# with each JSON engine (tests/conftest.py): the results must not depend on it
pytestmark = pytest.mark.usefixtures("json_engine")


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


# -- a stdout whose reader went away (`edgestream hub run -c hub.yaml | head -1`) --------------------
def _scrape(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for fam in text_string_to_metric_families(r.read().decode()) for s in fam.samples}


def _append(path, records) -> None:
    with open(path, "a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in records))


def test_a_closed_stdout_drops_that_sinks_records_and_the_hub_goes_on(tmp_path):
    """A real pipe whose reader reads one line and closes it: one ERROR naming the sink, records counted
    as dropped (never retried, never blocking the pipeline), the other pipeline and sink keep working."""
    inp, archive = tmp_path / "in.jsonl", tmp_path / "archive.jsonl"
    inp.write_text("")
    (tmp_path / "hub.yaml").write_text(f"""
sources:
  f: {{file: {{path: {inp}, mode: follow, poll_interval: 20ms}}}}
sinks:
  console: {{stdout: {{}}, batch: {{size: 1, linger: 0ms}}}}
  archive: {{file: {{path: {archive}}}}}
pipelines:
  show: {{from: f, to: console}}
  keep: {{from: f, to: archive}}
metrics: {{listen: "127.0.0.1:0"}}
hub: {{watch: false}}
""")
    r, w = os.pipe()
    cmd = [sys.executable, "-m", "edgestream_tools.cli", "hub", "run", "-c", str(tmp_path / "hub.yaml")]
    hub = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=w, stderr=subprocess.PIPE, cwd=tmp_path)
    assert hub.stderr is not None
    stderr = hub.stderr
    os.close(w)
    try:
        err_lines: list[str] = []
        reader = threading.Thread(target=lambda: err_lines.extend(line.decode() for line in stderr), daemon=True)
        reader.start()
        assert wait_for(lambda: any("metrics at " in line for line in err_lines), 30), err_lines
        url = next(line for line in err_lines if "metrics at " in line).split("metrics at ")[1].split()[0]
        _append(inp, [{"n": 0}])
        with os.fdopen(r, "rb") as head:  # `head -1`: one line, then the reader goes away
            assert json.loads(head.readline()) == {"n": 0}
        for i in range(1, 201):  # in small batches, while the hub runs
            _append(inp, [{"n": i}])
            if i % 50 == 0:
                time.sleep(0.1)
        assert wait_for(lambda: len(archive.read_text().splitlines()) == 201, 30)
        dropped = ("edgestream_sink_dropped_records_total", (("component", "console"),))
        written = ("edgestream_sink_records_total", (("component", "console"),))
        # a write can still land in the pipe's buffer while the reader is closing it (more of them on a
        # loaded machine, where the hub gets ahead of the reader): every record is either written or
        # dropped, and most are dropped
        assert wait_for(lambda: (lambda m: m[written] + m[dropped])(_scrape(url)) == 201, 30)
        m = _scrape(url)
        assert m[dropped] >= 100 and m[written] >= 1
        assert m[("edgestream_sink_records_total", (("component", "archive"),))] == 201
        assert m[("edgestream_sink_queue_records", (("component", "console"),))] == 0
        _append(inp, [{"n": 201}])  # still running
        assert wait_for(lambda: len(archive.read_text().splitlines()) == 202, 30)
        hub.send_signal(signal.SIGTERM)
        assert hub.wait(30) == 0
        reader.join(10)
    finally:
        if hub.poll() is None:
            hub.kill()
            hub.wait()
        stderr.close()
    text = "".join(err_lines)
    gone = [line for line in err_lines if "went away" in line]
    assert len(gone) == 1 and "ERROR" in gone[0] and "console" in gone[0], text
    assert "Traceback" not in text and "Exception ignored" not in text and "retrying" not in text, text
