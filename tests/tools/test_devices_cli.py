"""`edgestream devices` on its own: the registry file, version rules, refusals, exit codes (no hub, no broker).

The loop with agents, a broker and a running hub is in tests/hub/test_fleet.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgestream_hub.devices import PUBLIC_KEYS, DeviceRegistry, registry_path
from edgestream_hub.wire import SeqStats
from edgestream_shared.decoder import decode
from edgestream_shared.encoder import encode_metrics, encode_status

AGENT = {"device": "pico1", "sensors": [{"name": "t", "period_ms": 10, "source": {"type": "sim"}}]}
HUB = """
sources: {board: {serial: {port: /dev/ttyACM0}}}
sinks: {out: {stdout: {}}}
pipelines: {p: {from: board, to: out}}
devices: {}
"""


def cli(tmp: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgestream_tools.cli", "devices", *args, "-c",
                           str(tmp / "hub.yaml")], capture_output=True, text=True, timeout=timeout, cwd=tmp)


@pytest.fixture
def tmp(tmp_path):
    (tmp_path / "hub.yaml").write_text(HUB)
    return tmp_path


def registry(tmp: Path, **health) -> None:
    """A registry as a hub that heard pico1 over serial would have left it."""
    reg = DeviceRegistry(10, {"board": "serial"})
    for m in (encode_status("pico1", 4, "online"), encode_metrics("pico1", 4, {"heap_free": 41000, **health})):
        reg.observe("board", decode(m), 1, SeqStats())
    reg.save(registry_path(None, str(tmp)), pid=2**22 + 12345)  # no such process: the hub is not running


def write(tmp: Path, name: str, cfg) -> str:
    (tmp / name).write_text(cfg if isinstance(cfg, str) else json.dumps(cfg))
    return name


def test_list_reads_the_registry_of_a_stopped_hub(tmp):
    r = cli(tmp, "list")
    assert r.returncode == 0 and r.stdout == "" and "no device registry at" in r.stderr
    registry(tmp, config_version=3, results_sent=17)
    r = cli(tmp, "list", "--json")
    assert r.returncode == 0, r.stderr
    (row,) = [json.loads(x) for x in r.stdout.splitlines()]
    assert list(row) == list(PUBLIC_KEYS)
    assert (row["device"], row["online"], row["boot"], row["heap_free"], row["config_reported"], row["link"],
            row["results_sent"]) == ("pico1", True, 4, 41000, 3, "serial:board", 17)
    table = cli(tmp, "list")
    head, line = table.stdout.splitlines()
    assert head.split()[:3] == ["DEVICE", "ONLINE", "LAST"] and line.split()[:2] == ["pico1", "yes"]
    assert "3/- none" in line and "hub not running" in table.stderr


def test_a_hub_yaml_without_devices_is_refused(tmp):
    (tmp / "hub.yaml").write_text(HUB.replace("devices: {}\n", ""))
    r = cli(tmp, "list")
    assert r.returncode == 2 and "no `devices` section" in r.stderr


@pytest.mark.parametrize("cfg, message", [
    ("{not json", "bad.json: not JSON: "),
    ({**AGENT, "sensors": [{"name": "t", "period_ms": 0, "source": {"type": "sim"}}]},
     "bad.json: sensors[0].period_ms: must be > 0"),
    ({**AGENT, "version": 2**31}, "bad.json: version: expected an integer 1..2147483647"),
    ({**AGENT, "version": 0}, "bad.json: version: expected an integer 1..2147483647"),
    ({**AGENT, "device": "other"}, "bad.json: device: the config is for 'other', not 'pico1'"),
])
def test_push_config_refuses_what_the_board_would(tmp, cfg, message):
    r = cli(tmp, "push-config", "pico1", write(tmp, "bad.json", cfg), "--timeout", "1")
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
    assert not (tmp / ".edgestream" / "desired" / "pico1.json").exists()


def test_push_config_versions_and_the_timeout_without_a_hub(tmp):
    registry(tmp, config_version=3)
    r = cli(tmp, "push-config", "pico1", write(tmp, "a.json", AGENT), "--timeout", "1")
    assert r.returncode == 4, r.stderr  # reached over serial, and no hub runs to send it
    assert "config version 4 stays desired: a running hub sends it when the device is heard (no hub is running " \
           "now)" in r.stderr  # reported 3, nothing desired yet: the next is 4
    desired = tmp / ".edgestream" / "desired" / "pico1.json"
    assert json.loads(desired.read_text())["version"] == 4
    r = cli(tmp, "push-config", "pico1", write(tmp, "b.json", {**AGENT, "version": 3}), "--timeout", "1")
    assert r.returncode == 2 and "version: 3 is older than the desired version 4 of pico1" in r.stderr
    other = {**AGENT, "sensors": [{"name": "u", "period_ms": 10, "source": {"type": "sim"}}], "version": 4}
    r = cli(tmp, "push-config", "pico1", write(tmp, "c.json", other), "--timeout", "1")
    assert r.returncode == 2 and "version: 4 is already desired for pico1 with another config" in r.stderr
    r = cli(tmp, "push-config", "pico1", write(tmp, "d.json", {**AGENT, "version": 4}), "--timeout", "1")
    assert r.returncode == 4  # the same config again: fine, still waiting for the device
    r = cli(tmp, "push-config", "pico1", write(tmp, "e.json", AGENT), "--timeout", "1")
    assert r.returncode == 4 and json.loads(desired.read_text())["version"] == 5
    assert sorted(p.name for p in desired.parent.iterdir()) == [".lock", "pico1.json"]  # no temp file left


def test_sync_time_needs_a_way_to_the_device(tmp):
    r = cli(tmp, "sync-time")
    assert r.returncode == 1 and "no devices known yet" in r.stderr
    registry(tmp)
    r = cli(tmp, "sync-time", "pico1")
    assert r.returncode == 1 and "pico1: time not sent: reached over serial:board and no hub is running" in r.stderr


def test_a_killed_hub_left_as_a_zombie_or_a_reused_pid_is_not_taken_for_the_hub():
    from edgestream_tools.devices_cli import hub_alive

    def state(pid: int) -> str:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]

    saved_ms = int(time.time() * 1000)  # a registry saved now
    me = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])  # started with the save: its hub?
    gone = subprocess.Popen([sys.executable, "-c", "pass"])  # never reaped: a zombie
    time.sleep(2)
    other = subprocess.Popen(["sleep", "30"])  # started after the save, as a reused pid would be
    try:
        assert hub_alive(me.pid, saved_ms) and hub_alive(other.pid)
        deadline = time.monotonic() + 10
        while state(gone.pid) != "Z" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not hub_alive(gone.pid, saved_ms)
        assert not hub_alive(other.pid, saved_ms)
    finally:
        for p in (me, other):
            p.kill()
        for p in (me, gone, other):
            p.wait()
