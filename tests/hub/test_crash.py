"""Crash tests with real processes: nothing lost, nothing doubled, with the shipped defaults.

Each scenario runs ``edgestream hub run`` as a child process on a real mosquitto running the shipped
broker config (``edgestream broker``: persistence on, the in-flight and queue limits), fed by numbered
QoS 1 publishers (crashkit), with an SQL window query into a SQLite sink keyed on the result id and a
JSON-lines file sink. The hub is disrupted (SIGKILL at random points, some inside a checkpoint write;
broker restarts; SIGSTOP longer than its intake absorbs; 16 publishers at full rate), then the sink is
compared with the results of the same query over the same records without crashes: every window present,
each counted exactly, none twice. The file sink may repeat a result after a crash, but every line of it
is exactly the reference row.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from crashkit import (
    SENTINEL,
    TIMINGS,
    BrokerStore,
    HubProcess,
    device_names,
    publish_one,
    records,
    reference,
    sentinel_message,
    start_publisher,
)
from hubtest import wait_for

from edgestream_hub.checkpoint import WRITE_DELAY_ENV

pytestmark = pytest.mark.slow

TUMBLING = ("SELECT device, window_start() AS ws, count(*) AS n, sum(value) AS total FROM readings "
            "GROUP BY device, TUMBLINGWINDOW(ss, 1)")
SESSIONS = ("SELECT device, window_start() AS ws, window_end() AS we, count(*) AS n, sum(value) AS total "
            "FROM readings GROUP BY device, SESSIONWINDOW(ss, 10, 1)")
# $SYS statistics every second (BrokerStore reads how many messages the broker holds)
SYS_STATS = "sys_interval 1\n"


@pytest.fixture
def broker(tmp_path):
    from mosquitto import Mosquitto

    (tmp_path / "broker").mkdir()
    # the config `edgestream broker run` runs (recommended_config: persistence, queue and in-flight limits)
    b = Mosquitto(tmp_path / "broker", extra_conf=SYS_STATS).start()
    try:
        yield b
    finally:
        b.stop()


def hub_config(tmp_path: Path, port: int, query: str, lateness: str) -> Path:
    cfg = tmp_path / "hub.yaml"
    cfg.write_text(f"""
broker: {{host: 127.0.0.1, port: {port}}}
sources:
  devs: {{mqtt: {{topics: ["edgestream/+/data"], client_id: crash-hub}}}}
pipelines:
  agg:
    from: devs
    processors:
      - sql: {{query: "{query}", lateness: {lateness}}}
    to: [db, lines]
sinks:
  db: {{sqlite: {{path: out.db, table: results, key: [_id]}}}}
  lines: {{file: {{path: results.jsonl}}}}
""")
    return cfg


def sink_rows(tmp_path: Path) -> dict[str, dict[str, Any]]:
    db = tmp_path / "out.db"
    if not db.exists():
        return {}
    con = sqlite3.connect(db)
    try:
        con.row_factory = sqlite3.Row
        return {r["_id"]: dict(r) for r in con.execute("SELECT * FROM results")}
    except sqlite3.OperationalError:  # the table is created with the first result
        return {}
    finally:
        con.close()


def check_exact(tmp_path: Path, ref: dict[str, dict[str, Any]], hub: HubProcess) -> None:
    got = sink_rows(tmp_path)
    missing = sorted(set(ref) - set(got))
    extra = sorted(set(got) - set(ref))
    wrong = [(got[i], ref[i]) for i in set(got) & set(ref) if got[i] != ref[i]]
    log = hub.log.read_text(errors="replace")
    assert not missing and not extra and not wrong, (
        f"{len(missing)} windows missing, {len(extra)} unknown, {len(wrong)} miscounted "
        f"(first: {[ref[i] for i in missing[:3]]} {[got[i] for i in extra[:3]]} {wrong[:3]})\n{log[-3000:]}")
    lines = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert {r["_id"] for r in lines} == set(ref)
    assert all(r == ref[r["_id"]] for r in lines), "a result written twice is written the same"
    assert "Traceback" not in log, log[-3000:]


def finish(tmp_path: Path, broker: Any, hub: HubProcess, ref: dict[str, dict[str, Any]]) -> None:
    """Close every window with the sentinel, wait for all of them in the sink, stop the hub cleanly."""
    publish_one(broker.port, f"edgestream/{SENTINEL}/data", sentinel_message())
    assert wait_for(lambda: len(sink_rows(tmp_path)) >= len(ref), 90), \
        f"{len(sink_rows(tmp_path))} of {len(ref)} windows\n{hub.log.read_text(errors='replace')[-3000:]}"
    assert hub.stop() == 0
    check_exact(tmp_path, ref, hub)
    verify = subprocess.run([hub_cli(), "state", "verify", "-c", str(hub.config)], capture_output=True, text=True,
                            timeout=60)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def hub_cli() -> str:
    from crashkit import EDGESTREAM

    return EDGESTREAM


def wait_publishers(pubs: list[subprocess.Popen], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for p in pubs:
        assert p.wait(max(1.0, deadline - time.monotonic())) == 0


def test_sigkill_ten_times_loses_and_doubles_nothing(tmp_path, broker):
    devices, readings = 10, 5000  # 50,000 records in 5,000 messages
    cfg = hub_config(tmp_path, broker.port, TUMBLING, "2s")
    ref = reference(TUMBLING, 2000, "agg/agg.sql", records(device_names(0, devices), readings, TIMINGS["tumbling"]))
    hub = HubProcess(cfg, tmp_path / "hub.log").start()
    assert hub.subscribed()  # its persistent session exists from now on
    pub = start_publisher(broker.port, 0, devices, readings, 10, "tumbling", 220, 200, tmp_path / "pub.log")
    rng = random.Random(20261129)
    state = tmp_path / ".edgestream" / "state"
    in_write = 0
    try:
        for k in range(10):
            if k in (2, 5, 8):  # this run's checkpoints sleep half way through their write: the kill lands there
                hub.kill()
                hub.start(env={WRITE_DELAY_ENV: "400"})
                assert wait_for(lambda: any(state.glob(".checkpoint-*.tmp")), 20), "no checkpoint write to land in"
                in_write += 1
            else:
                time.sleep(rng.uniform(0.8, 2.6))
            hub.kill()
            hub.start()
        wait_publishers([pub], 120)
        finish(tmp_path, broker, hub, ref)
    finally:
        hub.close()
        pub.kill()
    log = hub.log.read_text()
    assert in_write == 3 and log.count("a checkpoint a crash left half written") >= 3
    assert hub.starts == 14 and log.count("state: resuming from checkpoint") >= 10


def test_broker_restarts_with_session_windows(tmp_path, broker):
    devices, readings = 10, 3000  # 30,000 records: 60 sessions of 50 readings per device
    cfg = hub_config(tmp_path, broker.port, SESSIONS, "2s")
    ref = reference(SESSIONS, 2000, "agg/agg.sql", records(device_names(0, devices), readings, TIMINGS["sessions"]))
    hub = HubProcess(cfg, tmp_path / "hub.log").start()
    assert hub.subscribed()
    pub = start_publisher(broker.port, 0, devices, readings, 10, "sessions", 250, 200, tmp_path / "pub.log")
    try:
        for _ in range(5):
            time.sleep(2.0)
            broker.stop()
            time.sleep(0.5)
            broker.start()
        wait_publishers([pub], 120)
        finish(tmp_path, broker, hub, ref)
    finally:
        hub.close()
        pub.kill()
    assert hub.log.read_text().count("lost the broker") >= 5
    assert "Error saving" not in (tmp_path / "broker" / "mosquitto.log").read_text()  # persistence worked


def test_a_hub_paused_longer_than_its_intake_absorbs_loses_nothing(tmp_path, broker):
    devices, readings = 20, 5000  # 100,000 records (~6 MB), published at full rate while the hub is stopped
    cfg = hub_config(tmp_path, broker.port, TUMBLING, "2s")
    ref = reference(TUMBLING, 2000, "agg/agg.sql", records(device_names(0, devices), readings, TIMINGS["tumbling"]))
    hub = HubProcess(cfg, tmp_path / "hub.log").start()
    assert hub.subscribed()
    store = BrokerStore(broker.port)
    pub = start_publisher(broker.port, 0, devices, readings, 10, "tumbling", 0, 500, tmp_path / "pub.log")
    try:
        time.sleep(0.5)
        hub.signal(signal.SIGSTOP)
        try:
            wait_publishers([pub], 60)  # the whole run reaches the broker while the hub sleeps
            time.sleep(3.0)
        finally:
            hub.signal(signal.SIGCONT)
        finish(tmp_path, broker, hub, ref)
    finally:
        store.close()
        hub.close()
        pub.kill()
    # more came than the hub's intake (its queues and socket) could take: the broker kept thousands
    assert store.most >= 2000, store.most


def test_sixteen_publishers_at_full_rate_lose_nothing(tmp_path, broker):
    publishers, readings = 16, 5000  # 80,000 records, one device per publisher, no pause between messages
    cfg = hub_config(tmp_path, broker.port, TUMBLING, "1h")  # devices drift apart: windows close at the end
    recs = records(device_names(0, publishers), readings, TIMINGS["tumbling"])
    ref = reference(TUMBLING, 3_600_000, "agg/agg.sql", recs)
    hub = HubProcess(cfg, tmp_path / "hub.log").start()
    assert hub.subscribed()
    pubs = [start_publisher(broker.port, k, 1, readings, 10, "tumbling", 0, 100, tmp_path / f"pub{k}.log")
            for k in range(publishers)]
    try:
        wait_publishers(pubs, 120)
        finish(tmp_path, broker, hub, ref)
    finally:
        hub.close()
        for p in pubs:
            p.kill()
    assert "data loss" not in hub.log.read_text()
