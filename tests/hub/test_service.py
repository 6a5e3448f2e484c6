"""The hub as a service: sd_notify readiness over a real datagram socket, the unit install-service writes
(checked by systemd-analyze where it exists), JSON logs, and the default config location."""

from __future__ import annotations

import doctest
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgestream_hub import logs, systemd
from edgestream_hub.config import DEFAULT_CONFIGS

CLI = [sys.executable, "-m", "edgestream_tools.cli"]

HUB = """
sources: {f: {file: {path: in.jsonl, mode: follow, start: beginning, poll_interval: 20ms}}}
sinks: {o: {file: {path: out.jsonl}}}
pipelines: {p: {from: f, to: o}}
hub: {watch: false}
api: {listen: "127.0.0.1:0"}
"""


def test_module_examples():
    for mod in (logs, systemd):
        assert doctest.testmod(mod).failed == 0, mod


class Notifications:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET; ``next()`` waits (bounded) for a message."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(30)

    def next(self) -> dict[str, str]:
        data = self.sock.recv(4096).decode()
        return dict(line.split("=", 1) for line in data.splitlines() if line)

    def close(self) -> None:
        self.sock.close()


def test_notify_speaks_the_datagram_protocol_to_a_path_and_to_the_abstract_namespace(tmp_path):
    n = Notifications(tmp_path / "notify")
    try:
        assert systemd.notify("READY=1", "STATUS=up", env={"NOTIFY_SOCKET": str(n.path)})
        assert n.next() == {"READY": "1", "STATUS": "up"}
        assert systemd.notify("READY=1", env={}) is False  # not under systemd: nothing to do
        assert systemd.notify("READY=1", env={"NOTIFY_SOCKET": str(tmp_path / "gone")}) is False  # never raises
    finally:
        n.close()
    name = f"edgestream-test-{os.getpid()}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.bind("\0" + name)
        s.settimeout(10)
        assert systemd.notify("STOPPING=1", env={"NOTIFY_SOCKET": "@" + name})
        assert s.recv(100) == b"STOPPING=1\n"
    finally:
        s.close()


def test_hub_run_reports_ready_reloading_and_stopping(tmp_path):
    (tmp_path / "hub.yaml").write_text(HUB)
    (tmp_path / "in.jsonl").write_text('{"v": 1}\n')
    n = Notifications(tmp_path / "notify")
    env = {**os.environ, "NOTIFY_SOCKET": str(n.path)}
    p = subprocess.Popen([*CLI, "hub", "run", "-c", "hub.yaml", "--log-format", "json"], cwd=tmp_path, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready = n.next()
        assert ready == {"READY": "1", "STATUS": "running hub.yaml"}
        assert (tmp_path / "out.jsonl").exists()  # ready means running: the sink is open
        p.send_signal(signal.SIGHUP)  # what `systemctl reload` does (ExecReload)
        reloading = n.next()
        assert reloading["RELOADING"] == "1" and reloading["STATUS"] == "reloading hub.yaml"
        assert abs(int(reloading["MONOTONIC_USEC"]) - time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000) < 30e6
        assert n.next() == {"READY": "1", "STATUS": "running hub.yaml"}
        p.send_signal(signal.SIGTERM)
        assert n.next() == {"STOPPING": "1", "STATUS": "stopping hub.yaml"}
        _, err = p.communicate(timeout=30)
        assert p.returncode == 0, err
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
        n.close()
    # --log-format json: one object per line with time, level, logger, message
    lines = [json.loads(x) for x in err.splitlines()]
    assert lines and all({"time", "level", "logger", "message"} <= set(x) for x in lines)
    assert any(x["message"].startswith("api: serving http://127.0.0.1:") for x in lines)
    assert any(x["message"] == "config reloaded: restarted nothing" for x in lines)
    assert lines[-1]["message"] == "hub stopped" and lines[-1]["level"] == "info"


def test_json_logs_carry_the_component_and_extra_fields():
    import io
    import logging

    out = io.StringIO()
    h = logs.setup("json", logging.INFO, out)
    try:
        logging.getLogger("edgestream.hub.source.devs").warning("bad payload: %s", "ü")
        logging.getLogger("edgestream.hub.devices").info("device came online", extra={"device": "d1"})
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("edgestream.hub").exception("failed")
    finally:
        logging.getLogger().removeHandler(h)
    a, b, c = (json.loads(x) for x in out.getvalue().splitlines())
    assert a["kind"] == "source" and a["component"] == "devs" and a["message"] == "bad payload: ü"
    assert a["level"] == "warning" and a["time"].endswith("Z")
    assert b["device"] == "d1" and "component" not in b
    assert c["level"] == "error" and "ValueError: boom" in c["exception"]
    assert "ü" in out.getvalue()  # UTF-8, not \\u escapes


def systemd_analyze() -> str:
    import shutil

    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed: the unit file is not verified here")
    return tool


def test_install_service_writes_a_unit_that_systemd_accepts(tmp_path):
    (tmp_path / "hub.yaml").write_text(HUB)
    (tmp_path / "in.jsonl").write_text("")
    home = tmp_path / "home"
    env = {**os.environ, "HOME": str(home)}
    r = subprocess.run([*CLI, "hub", "install-service", "--user", "-c", "hub.yaml"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    unit = home / ".config" / "systemd" / "user" / "edgestream-hub.service"
    text = unit.read_text()
    assert r.stdout.startswith(f"wrote {unit}:\n\n{text}")
    assert "systemctl --user enable --now edgestream-hub" in r.stdout and "loginctl enable-linger" in r.stdout
    lines = text.splitlines()
    for want in ("Type=notify", "Restart=on-failure", "ExecReload=/bin/kill -HUP $MAINPID",
                 f"ExecStart={sys.executable} -m edgestream_tools.cli hub run -c {tmp_path / 'hub.yaml'} "
                 "--log-format json", f"WorkingDirectory={tmp_path}", "WantedBy=default.target"):
        assert want in lines, (want, text)
    # the system unit, as --dry-run prints it
    r = subprocess.run([*CLI, "hub", "install-service", "-c", "hub.yaml", "--dry-run"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "WantedBy=multi-user.target" in r.stdout and "Wants=network-online.target" \
        in r.stdout
    system = tmp_path / "system" / "edgestream-hub.service"
    system.parent.mkdir()
    system.write_text(r.stdout)
    tool = systemd_analyze()
    for f in (unit, system):
        v = subprocess.run([tool, "verify", str(f)], capture_output=True, text=True, timeout=60)
        assert v.returncode == 0 and not v.stderr.strip(), v.stderr
    broken = tmp_path / "broken" / "edgestream-hub.service"  # the check can fail: an ExecStart it cannot run
    broken.parent.mkdir()
    broken.write_text(r.stdout.replace(f"ExecStart={sys.executable}", "ExecStart=bin/python"))
    v = subprocess.run([tool, "verify", str(broken)], capture_output=True, text=True, timeout=60)
    assert v.returncode and "bin/python" in v.stderr


def test_a_missing_default_config_names_both_places(tmp_path):
    if Path(DEFAULT_CONFIGS[0]).exists():
        pytest.skip(f"{DEFAULT_CONFIGS[0]} exists on this machine")
    want = "no config file given and none found at /etc/edgestream/hub.yaml or ./hub.yaml: give one with -c PATH"
    for args, head in ((["hub", "check"], "edgestream hub check"), (["hub", "run"], "edgestream hub run"),
                       (["devices", "list"], "edgestream devices")):
        r = subprocess.run([*CLI, *args], cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and r.stderr.strip().endswith(want), (args, r.stderr)
        assert r.stderr.startswith(head), r.stderr
    (tmp_path / "hub.yaml").write_text("sources: {b: {serial: {port: /dev/null}}}\nsinks: {o: {stdout: {}}}\n"
                                       "pipelines: {p: {from: b, to: o}}\ndevices: {}\n")
    r = subprocess.run([*CLI, "hub", "check"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("./hub.yaml: ok"), r.stderr
    r = subprocess.run([*CLI, "devices", "list"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "no device registry at" in r.stderr, r.stderr
