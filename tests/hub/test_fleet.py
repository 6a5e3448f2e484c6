"""The fleet loop end to end: real agents under MicroPython, a real mosquitto, the hub, `edgestream devices`.

Agents run as `micropython -m edgestream_agent.main agent.json` on the board build (esp32 heap); the
hub runs in this process on a hub.yaml with a `devices` section; the CLI runs as a real process. Every
wait is bounded, every process is killed at the end.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from hubtest import check_entry, wait_for
from prometheus_client.parser import text_string_to_metric_families

from edgestream_shared.decoder import decode
from edgestream_tools import micropython as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agent"))
from linktools import PtyBridge, Subscriber

EPOCH_MIN = 946684800000  # 2000-01-01: the agent's timestamps are epoch ms from here on


class Fleet:
    """Agents, the hub and the CLI around one tmp folder; ``close()`` kills every process started."""

    def __init__(self, hub, tmp: Path) -> None:
        self.hub = hub
        self.tmp = tmp
        self.procs: list[subprocess.Popen] = []

    def agent_config(self, dev: str, transport: dict, window_ms: int = 100, version: int | None = None) -> dict:
        cfg: dict[str, Any] = {"device": dev,
               "sensors": [{"name": "temp", "period_ms": 10, "source": {"type": "sim", "wave": "steps"},
                            "windows": [{"name": "w", "size_ms": window_ms, "aggregates": ["count", "avg"]}]}],
               "transport": {"health_ms": 300, "poll_ms": 5, **transport}}
        if version is not None:
            cfg["version"] = version
        return cfg

    def mqtt(self, broker) -> dict:
        return {"type": "mqtt", "mqtt": {"host": "127.0.0.1", "port": broker.port, "backoff_min_ms": 100,
                                         "backoff_max_ms": 400, "keepalive_s": 5}}

    def start_agent(self, dev: str, cfg: dict | None = None, duration_ms: int | None = None) -> subprocess.Popen:
        d = self.tmp / f"agent-{dev}"
        d.mkdir(exist_ok=True)
        if cfg is not None:
            (d / "agent.json").write_text(json.dumps(cfg))
        args = ["-m", "edgestream_agent.main", "agent.json"] + ([str(duration_ms)] if duration_ms else [])
        p = subprocess.Popen(mp.command("esp32") + args, env=mp.environment([]), cwd=d, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
        self.procs.append(p)
        return p

    def saved_agent_config(self, dev: str) -> dict:
        return json.loads((self.tmp / f"agent-{dev}" / "agent.json").read_text())

    def engine(self, text: str):
        return self.hub.engine(text)

    def results(self) -> list[dict]:
        """What the hub's file sink wrote so far."""
        try:
            lines = (self.tmp / "out.jsonl").read_text().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(x) for x in lines if x.endswith("}")]

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "edgestream_tools.cli", "devices", *args, "-c",
                               str(self.tmp / "hub.yaml")], capture_output=True, text=True, timeout=timeout)

    def devices(self) -> dict[str, dict]:
        r = self.cli("list", "--json")
        assert r.returncode == 0, r.stderr
        return {d["device"]: d for d in map(json.loads, r.stdout.splitlines())}

    def write(self, name: str, data: dict) -> str:
        p = self.tmp / name
        p.write_text(json.dumps(data))
        return str(p)

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(10)
            if p.stdout is not None:
                p.stdout.close()


@pytest.fixture
def fleet(hub, tmp_path):
    f = Fleet(hub, tmp_path)
    try:
        yield f
    finally:
        f.close()


def hub_yaml(broker, extra: str = "", devices: str = "") -> str:
    return f"""
broker: {{host: 127.0.0.1, port: {broker.port}}}
sources:
  devs: {{mqtt: {{topics: ["edgestream/+/results"]{extra}}}}}
sinks: {{out: {{file: {{path: out.jsonl}}}}}}
pipelines: {{p: {{from: devs, to: out}}}}
state: {{dir: state}}
metrics: {{listen: "127.0.0.1:0"}}
devices: {{connection: default, missing_after: 1s{devices}}}
"""


def scrape(engine) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(engine.metrics_url, timeout=10) as r:
        text = r.read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_online_offline_reboot_time_and_per_device_metrics(fleet, mosquitto):
    ha = Subscriber(mosquitto, ["homeassistant/#"], client_id="ha")
    try:
        e = fleet.engine(hub_yaml(mosquitto, devices=", homeassistant: true"))
        agent = fleet.start_agent("dev1", fleet.agent_config("dev1", fleet.mqtt(mosquitto)))
        assert wait_for(lambda: fleet.devices().get("dev1", {}).get("results_sent"), 30)
        d = fleet.devices()["dev1"]
        assert d["online"] is True and d["link"] == "mqtt" and d["reboots"] == 0 and d["heap_free"] > 20000
        assert d["agent_version"] and d["firmware"].startswith("mpy-") and d["config_state"] == "none"
        # time: the hub sent its clock when the device came online; results are epoch ms from then on
        assert wait_for(lambda: fleet.devices()["dev1"]["clock_source"] == "hub", 15)
        assert wait_for(lambda: any(r["start"] >= EPOCH_MIN for r in fleet.results()), 10)
        last = [r for r in fleet.results() if r["start"] >= EPOCH_MIN][-1]
        assert abs(last["end"] - time.time() * 1000) < 60_000
        boot = d["boot"]

        agent.kill()  # no clean stop: the broker publishes the last will
        agent.wait(10)
        assert wait_for(lambda: fleet.devices()["dev1"]["online"] is False, 15)

        fleet.start_agent("dev1")  # the same board again: a new boot id
        assert wait_for(lambda: fleet.devices()["dev1"]["reboots"] == 1 and fleet.devices()["dev1"]["online"], 30)
        assert fleet.devices()["dev1"]["boot"] != boot
        assert wait_for(lambda: fleet.devices()["dev1"]["results_sent"], 15)

        m = scrape(e)
        dev = (("device", "dev1"),)
        assert m[("edgestream_device_online", dev)] == 1
        assert m[("edgestream_device_reboots_total", dev)] == 1
        assert m[("edgestream_device_heap_free_bytes", dev)] > 20000
        assert abs(m[("edgestream_device_last_seen_timestamp_seconds", dev)] - time.time()) < 30
        assert m[("edgestream_device_results_sent_total", dev)] >= 1
        assert m[("edgestream_device_gaps_total", dev)] == 0
        assert m[("edgestream_device_missing_records_total", dev)] == 0
        assert ("edgestream_device_loop_lag_seconds", dev) in m
        assert m[("edgestream_devices_tracked", ())] == 1 and m[("edgestream_devices_overflow_total", ())] == 0
        assert m[("edgestream_devices_time_sends_total", ())] >= 2

        # Home Assistant found the device: retained discovery entries, on the agent's own topics
        assert wait_for(lambda: any(t.endswith("edgestream_dev1_temp_w_avg/config") for t, _, _ in ha.messages), 10)
        bodies = {t: check_entry(t, p) for t, p, retained in ha.messages}
        online = bodies["homeassistant/binary_sensor/edgestream_dev1_online/config"]
        assert online["state_topic"] == "edgestream/dev1/status" and online["device"]["name"] == "dev1"
        assert online["device"]["sw_version"] == d["agent_version"]
        late = Subscriber(mosquitto, ["homeassistant/#"], client_id="ha-late")  # retained: a later HA sees them
        try:
            assert wait_for(lambda: len(late.messages) >= len(bodies), 10)
            assert all(retained for _, _, retained in late.messages)
        finally:
            late.close()
    finally:
        ha.close()


def test_push_config_applies_or_says_why_not(fleet, mosquitto):
    fleet.engine(hub_yaml(mosquitto, devices=", config_retry: 5s"))
    fleet.start_agent("dev1", fleet.agent_config("dev1", fleet.mqtt(mosquitto), version=1))
    assert wait_for(lambda: fleet.devices().get("dev1", {}).get("config_reported") == 1, 30)

    new = fleet.agent_config("dev1", fleet.mqtt(mosquitto), window_ms=300)  # no version: desired + 1
    r = fleet.cli("push-config", "dev1", fleet.write("new.json", new), "--timeout", "20")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "dev1: config version 2 applied"
    assert wait_for(lambda: any(x["end"] - x["start"] == 300 for x in fleet.results()), 10)  # the new windows
    assert wait_for(lambda: fleet.devices()["dev1"]["config_state"] == "applied", 10)
    assert fleet.devices()["dev1"]["config_desired"] == 2
    assert fleet.saved_agent_config("dev1")["version"] == 2

    # the host validator refuses what the board would, with the board's message, before anything is sent
    bad = fleet.agent_config("dev1", fleet.mqtt(mosquitto))
    bad["sensors"][0]["period_ms"] = 0
    r = fleet.cli("push-config", "dev1", fleet.write("bad.json", bad), "--timeout", "5")
    assert r.returncode == 2 and "sensors[0].period_ms: must be > 0" in r.stderr, r.stderr
    assert fleet.devices()["dev1"]["config_desired"] == 2

    # valid on the host, refused by the board: more than its receive buffer holds
    big = fleet.agent_config("dev1", fleet.mqtt(mosquitto))
    big["sensors"] = [{"name": f"s{i}", "period_ms": 1000, "source": {"type": "sim"},
                       "windows": [{"name": "w", "size_ms": 60000, "aggregates": ["count", "avg", "min", "max"]}]}
                      for i in range(20)]
    r = fleet.cli("push-config", "dev1", fleet.write("big.json", big), "--timeout", "20")
    assert r.returncode == 3, (r.returncode, r.stderr)
    assert "dev1: refused config version 3: payload:" in r.stderr and "byte limit" in r.stderr, r.stderr
    assert wait_for(lambda: fleet.devices()["dev1"]["config_state"] == "refused", 10)
    d = fleet.devices()["dev1"]
    assert d["last_nack_version"] == 3 and "byte limit" in d["last_nack"] and d["config_reported"] == 2
    assert any(x["end"] - x["start"] == 300 for x in fleet.results()[-5:])  # still running version 2


def test_push_config_refuses_what_the_device_would_not_apply_and_forces_a_lower_version(fleet, mosquitto):
    fleet.engine(hub_yaml(mosquitto))
    fleet.start_agent("dev1", fleet.agent_config("dev1", fleet.mqtt(mosquitto), version=9))
    assert wait_for(lambda: fleet.devices().get("dev1", {}).get("config_reported") == 9, 30)
    new = fleet.agent_config("dev1", fleet.mqtt(mosquitto), window_ms=300)
    # the version it runs, with another config: it would ack it without applying it ("already running")
    r = fleet.cli("push-config", "dev1", fleet.write("same.json", {**new, "version": 9}), "--timeout", "5")
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "dev1 runs version 9 already: it would acknowledge this config without applying it" in r.stderr
    # an older one: refused on the host, with the way back
    r = fleet.cli("push-config", "dev1", fleet.write("old.json", {**new, "version": 3}), "--timeout", "5")
    assert r.returncode == 2 and "3 is older than the version 9 it runs of dev1" in r.stderr, r.stderr
    r = fleet.cli("push-config", "dev1", fleet.write("old.json", {**new, "version": 3}), "--force", "--timeout", "20")
    assert r.returncode == 0, (r.returncode, r.stderr)
    assert r.stdout.strip() == "dev1: config version 3 applied"
    assert fleet.saved_agent_config("dev1")["version"] == 3
    assert wait_for(lambda: any(x["end"] - x["start"] == 300 for x in fleet.results()), 10)  # the new windows
    assert wait_for(lambda: fleet.devices()["dev1"]["config_state"] == "applied", 10)
    assert fleet.devices()["dev1"]["config_reported"] == 3
    # what the broker keeps for the device (and the hub sends) is the forced message
    sub = Subscriber(mosquitto, ["edgestream/dev1/config"], client_id="retained")
    try:
        assert wait_for(lambda: sub.messages, 10)
        m = decode(sub.messages[-1][1])
        assert (m["version"], m.get("force")) == (3, True)
    finally:
        sub.close()


def test_push_config_to_an_offline_device_waits_for_it(fleet, mosquitto):
    (fleet.tmp / "hub.yaml").write_text(hub_yaml(mosquitto))  # no hub runs: the CLI publishes itself
    new = fleet.agent_config("dev2", fleet.mqtt(mosquitto), window_ms=200)
    r = fleet.cli("push-config", "dev2", fleet.write("new.json", new), "--timeout", "2")
    assert r.returncode == 4, r.stderr
    assert "dev2 did not answer within 2s (never seen by the hub); config version 1 stays desired" in r.stderr
    desired = json.loads((fleet.tmp / "state" / "desired" / "dev2.json").read_text())
    assert desired["version"] == 1 and desired["sensors"][0]["windows"][0]["size_ms"] == 200
    # the board starts later, with its own config: the broker hands it the retained one
    agent = fleet.start_agent("dev2", fleet.agent_config("dev2", fleet.mqtt(mosquitto)), duration_ms=3000)
    out, _ = agent.communicate(timeout=60)
    stats = json.loads(out.decode().strip().splitlines()[-1])
    assert stats["config_version"] == 1
    assert fleet.saved_agent_config("dev2")["sensors"][0]["windows"][0]["size_ms"] == 200
    # a hub started now sees it as applied from the registry's point of view once the device reports it
    fleet.engine(hub_yaml(mosquitto))
    fleet.start_agent("dev2")
    assert wait_for(lambda: fleet.devices().get("dev2", {}).get("config_state") == "applied", 30)


def test_serial_config_push_and_time(fleet):
    bridge = PtyBridge()
    try:
        fleet.engine(f"""
sources:
  board: {{serial: {{port: {bridge.host_path}, poll_interval: 5ms}}}}
sinks: {{out: {{file: {{path: out.jsonl}}}}}}
pipelines: {{p: {{from: board, to: out}}}}
devices: {{time_sync: 1s}}
""")
        serial = {"type": "serial", "serial": {"port": bridge.device_path}}
        fleet.start_agent("pico1", fleet.agent_config("pico1", serial, version=1))
        assert wait_for(lambda: fleet.devices().get("pico1", {}).get("link") == "serial:board", 30)
        assert wait_for(lambda: fleet.devices()["pico1"]["clock_source"] == "hub", 15)
        new = fleet.agent_config("pico1", serial, window_ms=200)
        r = fleet.cli("push-config", "pico1", fleet.write("new.json", new), "--timeout", "20")
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "pico1: config version 2 applied"
        assert wait_for(lambda: any(x.get("end", 0) - x.get("start", 0) == 200 for x in fleet.results()), 10)
        assert all(x["start"] >= EPOCH_MIN for x in fleet.results()[-3:] if "start" in x)
        assert fleet.devices()["pico1"]["config_state"] == "applied"
        assert fleet.cli("sync-time", "pico1").returncode == 0  # over the running hub's port
    finally:
        bridge.close()


def test_loss_the_hub_cannot_see_as_a_gap_is_missing(fleet, mosquitto, caplog):
    # a hub on a clean session misses what the device delivers while it is away, and sees no gap
    # afterwards: its new sequence tracking starts where the device is. A witness subscribed all along
    # bounds what the hub missed: at least what came while no hub ran, at most what came from just
    # before the stop to just after the new hub subscribed.
    witness = Subscriber(mosquitto, ["edgestream/dev1/results"], client_id="witness")

    def delivered() -> int:
        return sum(len(decode(p)["items"]) for p in witness.on("edgestream/dev1/results"))

    try:
        # without checkpoints: a hub with them resumes its sequence positions and sees this loss as a gap
        text = hub_yaml(mosquitto, extra=", clean_session: true").replace("state: {dir: state}",
                                                                          "state: {dir: state, enabled: false}")
        e = fleet.engine(text)
        fleet.start_agent("dev1", fleet.agent_config("dev1", fleet.mqtt(mosquitto)))
        assert wait_for(lambda: (fleet.devices().get("dev1") or {}).get("results_received", 0) > 5, 30)
        before_stop = delivered()
        e.stop(5)
        stopped = delivered()
        assert wait_for(lambda: delivered() >= stopped + 5, 20)  # delivered to the broker, and to no hub
        at_restart = delivered()
        with caplog.at_level(logging.WARNING, "edgestream.hub.devices"):
            e2 = fleet.engine(text)
            assert wait_for(lambda: e2.sources["devs"].source.subscribed.is_set(), 10)
            after_subscribe = delivered()
            lower, upper = at_restart - stopped, after_subscribe - before_stop
            assert wait_for(lambda: fleet.devices()["dev1"]["missing"] >= lower, 30), (lower, fleet.devices())
    finally:
        witness.close()
    d = fleet.devices()["dev1"]
    assert lower <= d["missing"] <= upper, (lower, d["missing"], upper)
    assert d["gaps"] == 0 and d["reboots"] == 0
    devs = (("component", "devs"),)
    assert wait_for(lambda: scrape(e2)[("edgestream_source_missing_records_total", devs)] == d["missing"], 10)
    assert scrape(e2)[("edgestream_source_gaps_total", devs)] == 0
    assert "data loss: device dev1:" in caplog.text and "across a restart of the source's sequence tracking" \
        in caplog.text
