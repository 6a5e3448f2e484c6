"""`edgestream hub run` as a process: signals, reload, exit codes."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time

from hubtest import wait_for

CONFIG = """
hub: {watch: false, shutdown_timeout: 5s}
sources:
  f: {file: {path: in.jsonl, mode: follow, poll_interval: 10ms}}
sinks:
  out: {file: {path: out.jsonl}, batch: {size: 100, linger: 5ms}}
pipelines:
  p: {from: f, processors: [{filter: {field: i, ge: 0}}], to: out}
"""


def start(tmp_path, *extra):
    return subprocess.Popen([sys.executable, "-m", "edgestream_tools.cli", "hub", "run", "-c",
                             str(tmp_path / "hub.yaml"), *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def count(path):
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_run_reload_on_sighup_and_drain_on_sigterm(tmp_path):
    (tmp_path / "hub.yaml").write_text(CONFIG)
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"i": i}) + "\n" for i in range(5000)))
    p = start(tmp_path)
    try:
        assert wait_for(lambda: count(tmp_path / "out.jsonl") == 5000, 20)
        (tmp_path / "hub.yaml").write_text(CONFIG.replace("ge: 0", "ge: 100000"))  # now keeps nothing new
        p.send_signal(signal.SIGHUP)
        time.sleep(0.5)  # give the reload a moment (the check below is what matters)
        with open(src, "a") as f:
            f.write("".join(json.dumps({"i": i}) + "\n" for i in range(10)))
            f.write(json.dumps({"i": 100001}) + "\n")
        assert wait_for(lambda: count(tmp_path / "out.jsonl") == 5001, 20)
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, err
    assert "config reloaded: restarted {'pipelines': ['p']}" in err and "hub stopped" in err
    assert json.loads((tmp_path / "out.jsonl").read_text().splitlines()[-1]) == {"i": 100001}


def test_run_exit_codes(tmp_path):
    (tmp_path / "hub.yaml").write_text(CONFIG.replace("ge: 0", "ge: zero"))
    p = start(tmp_path)
    _, err = p.communicate(timeout=20)
    assert p.returncode == 2 and "pipelines.p.processors[0].filter.ge: line 8: expected a number" in err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        web = f"sources:\n  web: {{http: {{port: {port}}}}}\n"
        (tmp_path / "hub.yaml").write_text(CONFIG.replace("sources:\n", web).replace("from: f", "from: [f, web]"))
        (tmp_path / "in.jsonl").write_text("")
        p = start(tmp_path)
        _, err = p.communicate(timeout=20)
    assert p.returncode == 1 and f"cannot start: web: cannot listen on 127.0.0.1:{port}" in err


def test_a_once_file_source_runs_to_the_end_and_exits(tmp_path):
    (tmp_path / "hub.yaml").write_text(CONFIG.replace("mode: follow, ", ""))
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"i": i}) + "\n" for i in range(100)) + "oops\n")
    p = start(tmp_path, "--set", "metrics.listen=127.0.0.1:0")
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert count(tmp_path / "out.jsonl") == 100
    assert "rejected a record (no dead-letter sink)" in err and "line 101: not JSON" in err
