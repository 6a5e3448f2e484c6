"""A hub on several worker processes (``hub.workers``): each device's records reach one worker, so per-device
windows are exact through kills of a worker and of the whole hub; metrics, the device registry and the state
commands see one hub; a config that cannot be split is refused by name, or (``auto``) runs in one process."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from crashkit import EDGESTREAM, TIMINGS, HubProcess, device_names, publish_one, records, start_publisher
from hubtest import wait_for

from edgestream_hub.config import load_config
from edgestream_hub.errors import ConfigError
from edgestream_hub.workers import Share, merge, partition_of

TUMBLING = ("SELECT device, window_start() AS ws, count(*) AS n, sum(value) AS total FROM readings "
            "GROUP BY device, TUMBLINGWINDOW(ss, 1)")


# -- partitions --
def test_a_device_belongs_to_one_partition_everywhere():
    # crc32: the same on every machine, Python version and process (not hash(), which is salted)
    assert [partition_of(f"dev{k:02d}", 4) for k in range(6)] == [0, 2, 0, 2, 1, 3]
    assert partition_of("press-1", 4) == 0 and partition_of("press-1", 1) == 0
    shares = [Share(4, None, i, 2) for i in range(2)]
    assert [sorted(s.mine) for s in shares] == [[0, 2], [1, 3]]
    for k in range(200):
        dev = f"d{k}"
        assert sum(s.owns(dev) for s in shares) == 1
        assert sum(s.owns_topic(f"edgestream/{dev}/data", "edgestream") for s in shares) == 1
        assert shares[0].owns_topic(f"edgestream/{dev}/data", "edgestream") == shares[0].owns(dev)


def test_a_topic_outside_the_wire_layout_is_split_by_the_whole_topic():
    s = Share(2, None, 0, 2)
    assert s.owns_topic("plant/line-7/t", None) == s.owns("plant/line-7/t")
    assert s.owns_topic("other/d1/data", "edgestream") == s.owns("other/d1/data")


def test_client_ids_name_the_share_so_workers_and_gateways_never_share_a_session():
    assert Share().client_id("edgestream-hub-devs") == "edgestream-hub-devs"
    assert Share(4, [2, 3], 0, 1).client_id("hub") == "hub-p2.3"
    assert {Share(4, None, i, 2).client_id("hub") for i in range(2)} == {"hub-p0.2", "hub-p1.3"}


# -- config --
BASE = """
broker: {host: 127.0.0.1, port: 1883}
sources:
  devs: {mqtt: {topics: ["edgestream/+/data"]}}
pipelines:
  p: {from: devs, processors: [{sql: "QUERY"}], to: [db]}
sinks:
  db: {sqlite: {path: out.db, table: t}}
"""


def config(tmp_path: Path, hub: str = "", query: str = TUMBLING, extra: str = "") -> Path:
    p = tmp_path / "hub.yaml"
    p.write_text((f"hub: {hub}\n" if hub else "") + BASE.replace("QUERY", query) + extra)
    return p


@pytest.mark.parametrize("hub, says", [
    ("{workers: 0}", "expected auto or a number of processes from 1 to 64"),
    ("{workers: many}", "expected auto or a number"),
    ("{workers: 65}", "from 1 to 64"),
    ("{take: [0]}", "take needs hub.partitions"),
    ("{partitions: 4, take: [4]}", "partition 4 does not exist: partitions are 0 to 3"),
    ("{partitions: 4, take: [1, 1]}", "names a partition twice"),
    ("{partitions: 4, take: []}", "takes no devices"),
    ("{workers: 3, partitions: 2}", "3 workers for 2 partitions"),
])
def test_bad_worker_settings_are_refused_where_they_are(tmp_path, hub, says):
    with pytest.raises(ConfigError) as e:
        load_config(config(tmp_path, hub))
    assert "hub." in str(e.value) and says in str(e.value)


@pytest.mark.parametrize("query, extra, says", [
    ("SELECT count(*) AS n FROM readings GROUP BY TUMBLINGWINDOW(ss, 1)", "",
     "its groups span devices: add `device` to GROUP BY"),
    ("SELECT device, value FROM readings", "  f: {file: {path: out.jsonl}}\n", "sinks.f.file: a file sink"),
    (TUMBLING, "api: {}\n", "api: the REST API"),
])
def test_an_explicit_worker_count_names_what_cannot_be_split(tmp_path, query, extra, says):
    with pytest.raises(ConfigError) as e:
        load_config(config(tmp_path, "{workers: 2}", query, extra))
    assert "2 workers cannot run this config" in str(e.value) and says in str(e.value)


def test_stateless_and_per_device_queries_split(tmp_path):
    for q in (TUMBLING, "SELECT device, value * 2 AS v FROM readings WHERE value > 1"):
        assert load_config(config(tmp_path, "{workers: 2}", q)).hub["workers"] == 2


def test_merged_metrics_sum_counters_and_merge_gauges_by_their_meaning():
    a = ("# TYPE edgestream_sink_records_total counter\nedgestream_sink_records_total{component=\"db\"} 3.0\n"
         "# TYPE edgestream_sink_records_created gauge\nedgestream_sink_records_created{component=\"db\"} 100.0\n"
         "# TYPE edgestream_pipeline_queue_records gauge\nedgestream_pipeline_queue_records{component=\"p\"} 2.0\n"
         "# TYPE edgestream_state_checkpoint_age_seconds gauge\nedgestream_state_checkpoint_age_seconds 0.5\n")
    b = a.replace(" 3.0", " 4.0").replace(" 100.0", " 90.0").replace(" 2.0", " 5.0").replace(" 0.5", " 1.5")
    got = {(s.name, tuple(s.labels.items())): s.value for fam in merge([parse(a), parse(b)]) for s in fam.samples}
    assert got[("edgestream_sink_records_total", (("component", "db"),))] == 7.0
    assert got[("edgestream_sink_records_created", (("component", "db"),))] == 90.0
    assert got[("edgestream_pipeline_queue_records", (("component", "p"),))] == 7.0
    assert got[("edgestream_state_checkpoint_age_seconds", ())] == 1.5  # the oldest worker's
    fds = "# TYPE process_max_fds gauge\nprocess_max_fds 1024.0\n"
    limits = {s.name: s.value for fam in merge([parse(fds), parse(fds)]) for s in fam.samples}
    assert limits["process_max_fds"] == 1024.0  # a limit of each process, not a total
    # a worker that did not answer (or is gone) adds its last counts, not its gauges
    got = {(s.name, tuple(s.labels.items())): s.value for fam in merge([parse(a)], [parse(b)]) for s in fam.samples}
    assert got[("edgestream_sink_records_total", (("component", "db"),))] == 7.0
    assert got[("edgestream_sink_records_created", (("component", "db"),))] == 100.0
    assert got[("edgestream_pipeline_queue_records", (("component", "p"),))] == 2.0


def parse(text: str) -> list[Any]:
    from prometheus_client.parser import text_string_to_metric_families

    return list(text_string_to_metric_families(text))


# -- real processes --
def hub_yaml(tmp_path: Path, port: int, metrics_port: int | None = None, workers: Any = 2,
             devices: bool = False) -> Path:
    cfg = tmp_path / "hub.yaml"
    cfg.write_text(f"""
hub: {{workers: {workers}}}
broker: {{host: 127.0.0.1, port: {port}}}
sources:
  devs: {{mqtt: {{topics: ["edgestream/+/data"], client_id: wk-hub}}}}
pipelines:
  agg:
    from: devs
    processors:
      - sql: {{query: "{TUMBLING}", lateness: 2s}}
    to: [db]
sinks:
  db: {{sqlite: {{path: out.db, table: results, key: [_id]}}}}
""" + (f"metrics: {{listen: '127.0.0.1:{metrics_port}'}}\n" if metrics_port else "")
        + ("devices: {connection: default}\n" if devices else ""))
    return cfg


def rows(tmp_path: Path) -> dict[str, dict[str, Any]]:
    db = tmp_path / "out.db"
    if not db.exists():
        return {}
    con = sqlite3.connect(db, timeout=10)
    try:
        con.row_factory = sqlite3.Row
        return {r["_id"]: dict(r) for r in con.execute("SELECT * FROM results")}
    except sqlite3.OperationalError:
        return {}
    finally:
        con.close()


def closers(partitions: int) -> list[str]:
    """One device name per partition: a far-future reading of each moves every worker's event-time clock."""
    out: dict[int, str] = {}
    for k in range(1000):
        out.setdefault(partition_of(f"zz{k}", partitions), f"zz{k}")
        if len(out) == partitions:
            break
    return [out[p] for p in range(partitions)]


def closer_message(dev: str) -> bytes:
    from crashkit import message

    return message(dev, 0, 1, lambda i: 40_000_000_000)


def reference(recs: list[dict[str, Any]], closing: list[str]) -> dict[str, dict[str, Any]]:
    """The results of the query over every record in one process, then the closing readings."""
    from edgestream_hub.api import SimpleContext
    from edgestream_hub.sql.processor import SqlProcessor

    p = SqlProcessor(TUMBLING, SimpleContext(), lateness_ms=2000, id_field="_id", id_scope="agg/agg.sql")
    t = 40_000_000_000
    out = p.process(recs, 0) + p.process([{"device": d, "boot": 1, "seq": 0, "sensor": "temp", "t": t, "value": 0.0,
                                           "ts": t} for d in closing], 0)
    return {r["_id"]: r for r in out}


def worker_pids(tmp_path: Path) -> list[int]:
    out = []
    for f in sorted((tmp_path / ".edgestream").glob("worker-*/worker.json")):
        try:
            out.append(json.loads(f.read_text())["pid"])
        except (OSError, ValueError, KeyError):
            pass
    return out


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def started(hub: HubProcess, workers: int = 2, timeout: float = 30) -> bool:
    mark = f"---- start {hub.starts}\n"
    return wait_for(lambda: f"on {workers} workers" in hub.log.read_text(errors="replace").rsplit(mark, 1)[-1],
                    timeout)


def run_one_process(cfg: Path, log: Path) -> str:
    """Start ``hub run`` on ``cfg``, wait until it subscribed, stop it cleanly; its log."""
    hub = HubProcess(cfg, log).start()
    try:
        assert wait_for(lambda: "subscribing to" in hub.log.read_text(), 30), hub.log.read_text()
        assert hub.stop() == 0
    finally:
        hub.close()
    return hub.log.read_text()


def scrape(port: int) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return {s.name + json.dumps(s.labels, sort_keys=True): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_workers_through_kills_lose_and_double_nothing(tmp_path, mosquitto):
    devices, readings = 12, 3000  # 36,000 records in 3,600 messages
    cfg = hub_yaml(tmp_path, mosquitto.port)
    closing = closers(2)
    ref = reference(records(device_names(0, devices), readings, TIMINGS["tumbling"]), closing)
    hub = HubProcess(cfg, tmp_path / "hub.log").start()
    pub = None
    try:
        assert started(hub), hub.log.read_text()[-3000:]
        time.sleep(0.3)  # the SUBACKs: the broker keeps both workers' messages from now on
        pub = start_publisher(mosquitto.port, 0, devices, readings, 10, "tumbling", 400, 200, tmp_path / "pub.log")
        time.sleep(2.0)
        victim = worker_pids(tmp_path)[1]
        os.kill(victim, signal.SIGKILL)  # one worker: the supervisor starts it again
        assert wait_for(lambda: len(worker_pids(tmp_path)) == 2 and victim not in worker_pids(tmp_path), 30)
        time.sleep(1.5)
        pids = worker_pids(tmp_path)
        hub.kill()  # the whole hub: its workers go down with it
        assert wait_for(lambda: not any(alive(p) for p in pids), 10), "a worker outlived its supervisor"
        hub.start()
        assert started(hub)
        assert pub.wait(120) == 0
        for dev in closing:
            publish_one(mosquitto.port, f"edgestream/{dev}/data", closer_message(dev))
        assert wait_for(lambda: len(rows(tmp_path)) >= len(ref), 90), \
            f"{len(rows(tmp_path))} of {len(ref)} windows\n{hub.log.read_text(errors='replace')[-3000:]}"
        pids = worker_pids(tmp_path)
        assert hub.stop() == 0
        assert not any(alive(p) for p in pids), "a worker outlived a clean stop"
    finally:
        hub.close()
        if pub is not None:
            pub.kill()
    got = rows(tmp_path)
    wrong = [(got.get(i), r) for i, r in ref.items() if got.get(i) != r]
    log = hub.log.read_text(errors="replace")
    assert not wrong and set(got) == set(ref), f"{len(wrong)} windows wrong, first {wrong[:3]}\n{log[-3000:]}"
    assert "worker 1 exited (code -9)" in log and "Traceback" not in log
    verify = subprocess.run([EDGESTREAM, "state", "verify", "-c", str(cfg)], capture_output=True, text=True,
                            timeout=60)
    assert verify.returncode == 0 and "worker 0" in verify.stdout and "worker 1" in verify.stdout, verify


def test_one_hub_seen_from_outside_metrics_reload_devices_and_stop(tmp_path, mosquitto):
    from edgestream_shared.encoder import encode_status

    port = free_port()
    cfg = hub_yaml(tmp_path, mosquitto.port, metrics_port=port, devices=True)
    hub = HubProcess(cfg, tmp_path / "hub.log").start()
    try:
        assert started(hub), hub.log.read_text()[-3000:]
        time.sleep(0.3)
        devs = device_names(0, 8)
        for d in devs:
            publish_one(mosquitto.port, f"edgestream/{d}/status", encode_status(d, 1, "online"))
            from crashkit import message

            publish_one(mosquitto.port, f"edgestream/{d}/data", message(d, 0, 5, TIMINGS["tumbling"]))
        key = 'edgestream_pipeline_records_in_total{"component": "agg"}'
        assert wait_for(lambda: scrape(port).get(key) == 40.0, 20), scrape(port)
        m = scrape(port)
        assert m["edgestream_hub_workers{}"] == 2 and m["edgestream_hub_workers_scraped{}"] == 2
        assert m['edgestream_devices_tracked{}'] == 8  # each worker tracks its own, the sum is the fleet
        hub.signal(signal.SIGHUP)
        reloaded = 'edgestream_hub_config_reloads_total{"result": "ok"}'
        assert wait_for(lambda: scrape(port).get(reloaded) == 2.0, 20), "both workers reloaded"

        def listed() -> set[str]:
            r = subprocess.run([EDGESTREAM, "devices", "list", "--json", "-c", str(cfg)], capture_output=True,
                               text=True, timeout=60)
            return {json.loads(x)["device"] for x in r.stdout.splitlines()}

        assert wait_for(lambda: listed() == set(devs), 20), listed()
        r = subprocess.run([EDGESTREAM, "devices", "list", "-c", str(cfg)], capture_output=True, text=True, timeout=60)
        assert "hub running" in r.stderr and "worker-*" in r.stderr, r.stderr
        # a reload that would make two processes write one file is refused by each worker (hub.watch sees it)
        text = cfg.read_text().replace("to: [db]", "to: [db, lines]")
        cfg.write_text(text.replace("sinks:\n", "sinks:\n  lines: {file: {path: x.jsonl}}\n"))
        refused = 'edgestream_hub_config_reloads_total{"result": "refused"}'
        assert wait_for(lambda: scrape(port).get(refused, 0) >= 2.0, 20), "both workers refused"
        assert not (tmp_path / "x.jsonl").exists()
        pids = worker_pids(tmp_path)
        assert hub.stop() == 0
        assert not any(alive(p) for p in pids)
    finally:
        hub.close()
    log = hub.log.read_text()
    assert "[worker 0]" in log and "[worker 1]" in log and "Traceback" not in log
    assert "sinks.lines.file: a file sink is written by one process (put {worker} in its path" in log
    assert "(stop the hub and start it again to run it in one process)" in log


def test_another_split_of_existing_state_is_refused_until_it_is_reset(tmp_path, mosquitto):
    cfg = hub_yaml(tmp_path, mosquitto.port)
    hub = HubProcess(cfg, tmp_path / "hub.log").start()
    try:
        assert started(hub)
        assert hub.stop() == 0
    finally:
        hub.close()
    cfg.write_text(cfg.read_text().replace("workers: 2", "workers: 1"))
    r = subprocess.run([EDGESTREAM, "hub", "run", "-c", str(cfg)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "written by a hub of 2 worker(s)" in r.stderr and "edgestream state reset --all" in r.stderr
    r = subprocess.run([EDGESTREAM, "state", "reset", "--all", "-c", str(cfg)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "forgot how the state was split" in r.stdout, r
    run_one_process(cfg, tmp_path / "hub2.log")


def test_auto_runs_one_process_and_says_why_when_a_part_cannot_be_split(tmp_path, mosquitto):
    cfg = hub_yaml(tmp_path, mosquitto.port, workers="auto")
    cfg.write_text(cfg.read_text().replace("to: [db]", "to: [db, lines]") + "  lines: {file: {path: out.jsonl}}\n")
    log = run_one_process(cfg, tmp_path / "hub.log")
    if (os.cpu_count() or 1) > 1:
        assert "one process (hub.workers: auto): sinks.lines.file: a file sink is written by one process" in log
    assert "[worker" not in log and not (tmp_path / ".edgestream" / "workers.json").exists()


def test_python_m_edgestream_hub_is_the_worker_entry(tmp_path):
    r = subprocess.run([sys.executable, "-m", "edgestream_hub", "hub", "check", "-c",
                        str(config(tmp_path, "{workers: 2}"))], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "ok (1 sources" in r.stdout, r.stderr


def test_a_file_sink_with_worker_in_its_path_writes_a_file_per_worker(tmp_path, mosquitto):
    from crashkit import message

    cfg = tmp_path / "hub.yaml"
    cfg.write_text(f"""
hub: {{workers: 2}}
broker: {{host: 127.0.0.1, port: {mosquitto.port}}}
sources: {{devs: {{mqtt: {{topics: ["edgestream/+/data"]}}}}}}
pipelines: {{all: {{from: devs, to: lines}}}}
sinks: {{lines: {{file: {{path: "out/r-{{worker}}.jsonl"}}}}}}
""")
    hub = HubProcess(cfg, tmp_path / "hub.log").start()
    devs = device_names(0, 8)
    try:
        assert started(hub), hub.log.read_text()[-3000:]
        time.sleep(0.3)
        for d in devs:
            publish_one(mosquitto.port, f"edgestream/{d}/data", message(d, 0, 5, TIMINGS["tumbling"]))

        def lines() -> dict[str, list[dict[str, Any]]]:
            return {f.name: [json.loads(x) for x in f.read_text().splitlines()]
                    for f in sorted((tmp_path / "out").glob("r-*.jsonl"))}

        assert wait_for(lambda: sum(map(len, lines().values())) == 40, 20), lines()
        assert hub.stop() == 0
    finally:
        hub.close()
    got = lines()
    assert set(got) == {"r-0.jsonl", "r-1.jsonl"}
    owner = {r["device"]: name for name, rs in got.items() for r in rs}
    for name, rs in got.items():
        assert all(owner[r["device"]] == name for r in rs), "a device's records are in one worker's file"
    assert sorted(owner) == devs


def test_a_stateless_json_source_is_split_by_the_broker(tmp_path, mosquitto):
    # one topic: a split by topic would give every message to one worker; a $share group splits them
    cfg = tmp_path / "hub.yaml"
    cfg.write_text(f"""
hub: {{workers: 2}}
connections: {{v5: {{host: 127.0.0.1, port: {mosquitto.port}, protocol: "5"}}}}
sources: {{meters: {{mqtt: {{connection: v5, topics: ["plant/meters"], decode: json}}}}}}
pipelines: {{p: {{from: meters, processors: [{{sql: "SELECT n, v * 2 AS v2 FROM input WHERE v >= 0"}}], to: db}}}}
sinks: {{db: {{sqlite: {{path: out.db, table: t}}}}}}
metrics: {{listen: "127.0.0.1:0"}}
""")
    hub = HubProcess(cfg, tmp_path / "hub.log").start()
    try:
        assert started(hub), hub.log.read_text()[-3000:]
        time.sleep(0.3)
        import paho.mqtt.client as mqtt

        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        c.connect("127.0.0.1", mosquitto.port)
        c.loop_start()
        try:
            for n in range(200):
                payload = json.dumps({"n": n, "v": n, "ts": 1000 + n}).encode()
                c.publish("plant/meters", payload, qos=1).wait_for_publish(10)
        finally:
            c.disconnect()
            c.loop_stop()

        def got() -> list[int]:
            try:
                con = sqlite3.connect(tmp_path / "out.db", timeout=10)
                try:
                    return sorted(r[0] for r in con.execute("SELECT n FROM t"))
                finally:
                    con.close()
            except sqlite3.OperationalError:
                return []

        assert wait_for(lambda: got() == list(range(200)), 20), got()
        per_worker = []
        for f in sorted((tmp_path / ".edgestream").glob("worker-*/worker.json")):
            with urllib.request.urlopen(json.loads(f.read_text())["metrics"], timeout=10) as r:
                text = r.read().decode()
            per_worker.append(sum(float(x.rsplit(" ", 1)[1]) for x in text.splitlines()
                                  if x.startswith("edgestream_pipeline_records_in_total{")))
        assert len(per_worker) == 2 and all(n > 0 for n in per_worker) and sum(per_worker) == 200, per_worker
        assert hub.stop() == 0
    finally:
        hub.close()
    assert hub.log.read_text().count("subscribing to $share/edgestream-meters/plant/meters") == 2


def test_a_split_that_never_checkpointed_can_change_and_a_foreign_layout_file_is_named(tmp_path):
    from edgestream_hub.workers import check_layout

    cfg = load_config(config(tmp_path, "{workers: 2}"))
    assert check_layout(cfg, 2) is None  # written down
    assert json.loads((tmp_path / ".edgestream" / "workers.json").read_text())["workers"] == 2
    assert check_layout(cfg, 3) is None  # no worker wrote a checkpoint: nothing to lose
    (tmp_path / ".edgestream" / "worker-1").mkdir(parents=True)
    (tmp_path / ".edgestream" / "worker-1" / "checkpoint-000000000001.ckpt").write_bytes(b"x")
    assert "written by a hub of 3 worker(s)" in (check_layout(cfg, 2) or "")
    (tmp_path / ".edgestream" / "workers.json").write_text('{"workers": "many"}')
    assert "is not a layout this hub wrote" in (check_layout(cfg, 2) or "")


@pytest.mark.parametrize("query, says", [
    ("SELECT device, avg(value) AS a FROM readings GROUP BY device, TUMBLINGWINDOW(ss, 10) ORDER BY a DESC LIMIT 1",
     "ORDER BY and LIMIT sort and cut a window's rows across devices"),
    ("SELECT device, avg(value) AS a FROM readings GROUP BY device, TUMBLINGWINDOW(ss, 10) ORDER BY a",
     "ORDER BY and LIMIT"),
])
def test_a_query_that_sorts_a_window_across_devices_does_not_split(tmp_path, query, says):
    with pytest.raises(ConfigError) as e:
        load_config(config(tmp_path, "{workers: 2}", query))
    assert says in str(e.value)


@pytest.mark.parametrize("before, says", [
    ("- map: {set: {device: all}}", "a processor before it changes or removes `device`"),
    ("- map: {rename: {sensor: device}}", "changes or removes `device`"),
    ("- map: {keep: [value, ts]}", "changes or removes `device`"),
    ("- sql: \"SELECT sensor AS device, value, ts FROM readings\"", "changes or removes `device`"),
])
def test_group_by_device_is_not_trusted_after_a_step_that_changes_device(tmp_path, before, says):
    p = tmp_path / "hub.yaml"
    p.write_text(f"""
hub: {{workers: 2}}
broker: {{host: 127.0.0.1, port: 1883}}
sources: {{devs: {{mqtt: {{topics: ["edgestream/+/data"]}}}}}}
pipelines:
  p:
    from: devs
    processors:
      {before}
      - sql: "{TUMBLING}"
    to: db
sinks: {{db: {{sqlite: {{path: out.db, table: t}}}}}}
""")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert says in str(e.value)
    kept = p.read_text().replace(before, "- map: {rename: {value: v}}").replace("sum(value)", "sum(v)")
    p.write_text(kept)
    assert load_config(p).hub["workers"] == 2  # a step that leaves device alone


def test_a_query_with_a_plugin_function_is_judged_with_it(tmp_path):
    from edgestream_hub.registry import Registry

    r = Registry.default()
    r.register_function("twice", lambda x: None if x is None else 2 * x)
    q = "SELECT sum(twice(value)) AS n FROM readings GROUP BY TUMBLINGWINDOW(ss, 10)"
    with pytest.raises(ConfigError) as e:
        load_config(config(tmp_path, "{workers: 2}", q), registry=r)
    assert "its groups span devices" in str(e.value)


def test_a_wire_source_in_a_shared_group_does_not_split(tmp_path):
    p = config(tmp_path, "{workers: 2}", "SELECT device, value FROM readings")
    p.write_text(p.read_text().replace('topics: ["edgestream/+/data"]', 'topics: ["edgestream/+/data"], '
                                       'shared_group: g, connection: v5').replace(
        "broker: {host: 127.0.0.1, port: 1883}", "connections: {v5: {host: 127.0.0.1, protocol: '5'}}"))
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert "a shared group splits a device's messages" in str(e.value)


def test_a_gateway_taking_some_partitions_refuses_a_query_over_all_devices(tmp_path):
    q = "SELECT count(*) AS n FROM readings GROUP BY TUMBLINGWINDOW(ss, 1)"
    with pytest.raises(ConfigError) as e:
        load_config(config(tmp_path, "{workers: 1, partitions: 4, take: [0, 1]}", q))
    assert "hub.take" in str(e.value) and "sees only those devices" in str(e.value)
    assert load_config(config(tmp_path, "{workers: 1, partitions: 4, take: [0, 1]}")).hub["take"] == [0, 1]


def test_a_gateway_with_workers_is_not_told_that_one_process_would_run_a_query_over_all_devices(tmp_path):
    # workers: 1 would not help a gateway that sees only its partitions' devices: the error names hub.take
    q = "SELECT count(*) AS n FROM readings GROUP BY TUMBLINGWINDOW(ss, 1)"
    with pytest.raises(ConfigError) as e:
        load_config(config(tmp_path, "{workers: 2, partitions: 4, take: [0, 1]}", q))
    assert len(e.value.issues) == 1 and e.value.issues[0].path == "hub.take", e.value
    assert "workers: 1" not in str(e.value) and "sees only those devices" in str(e.value)


def test_one_share_answers_for_each_rule_a_source_asks_by():
    s = Share(2, None, 0, 2)
    topic = next(f"edgestream/d{k}/results" for k in range(100)
                 if s.owns(f"d{k}") != s.owns(f"edgestream/d{k}/results"))
    by_device, by_topic = s.owns_topic(topic, "edgestream"), s.owns_topic(topic, None)
    assert by_device != by_topic  # cached per rule: a json source's answer is not the wire source's
    assert s.owns_topic(topic, "edgestream") == by_device and s.owns_topic(topic, None) == by_topic


def test_a_worker_keeps_the_split_its_supervisor_gave_it(monkeypatch):
    from edgestream_hub.workers import ENV, share_of, worker_value

    monkeypatch.setenv(ENV, worker_value(1, 2, {"partitions": 4}))
    s = share_of({"workers": 3, "partitions": 6})  # the file changed since: the worker keeps its own
    assert (s.index, s.workers, s.partitions, sorted(s.mine)) == (1, 2, 4, [1, 3])


def test_a_restarted_worker_does_not_start_fresh_again():
    from edgestream_hub.workers import restart_argv

    argv = ["hub", "run", "-c", "h.yaml", "--fresh-state", "p", "--set", "a=b", "--fresh-state", "q"]
    assert restart_argv(argv) == ["hub", "run", "-c", "h.yaml", "--set", "a=b"]


def test_a_stateless_source_feeding_an_upsert_is_not_split_by_the_broker(tmp_path):
    from edgestream_hub.workers import shared_sources

    p = tmp_path / "hub.yaml"
    body = """
connections: {v5: {host: 127.0.0.1, protocol: "5"}}
sources: {m: {mqtt: {connection: v5, topics: ["plant/m"], decode: json}}}
pipelines: {p: {from: m, to: db}}
sinks: {db: {sqlite: {path: out.db, table: t%s}}}
"""
    p.write_text(body % "")
    assert shared_sources(load_config(p)) == {"m"}
    p.write_text(body % ", key: [n]")  # a later record landing first would leave an older value
    assert shared_sources(load_config(p)) == set()


def test_auto_keeps_the_one_process_an_existing_state_was_written_by(tmp_path, mosquitto):
    cfg = hub_yaml(tmp_path, mosquitto.port, workers="auto")
    one = cfg.read_text().replace("to: [db]", "to: [db, lines]") + "  lines: {file: {path: out.jsonl}}\n"
    cfg.write_text(one)
    run_one_process(cfg, tmp_path / "hub.log")
    cfg.write_text(hub_yaml(tmp_path, mosquitto.port, workers="auto").read_text())  # now it could split
    log = run_one_process(cfg, tmp_path / "hub2.log")
    assert "[worker" not in log
    if (os.cpu_count() or 1) > 1:  # one core: auto runs one process anyway, with nothing to keep
        assert "hub.workers: auto keeps the 1 worker process(es) the state in" in log


def test_merged_counters_never_go_back_when_a_worker_dies_or_stalls(tmp_path, mosquitto):
    # Prometheus reads any drop of a counter as a reset to zero: a worker that is down, stalled or started
    # again must not take its counts out of the hub's
    from crashkit import message

    port = free_port()
    cfg = hub_yaml(tmp_path, mosquitto.port, metrics_port=port)
    hub = HubProcess(cfg, tmp_path / "hub.log").start()
    key = 'edgestream_pipeline_records_in_total{"component": "agg"}'
    try:
        assert started(hub), hub.log.read_text()[-3000:]
        time.sleep(0.3)
        for d in device_names(0, 8):
            publish_one(mosquitto.port, f"edgestream/{d}/data", message(d, 0, 5, TIMINGS["tumbling"]))
        assert wait_for(lambda: scrape(port).get(key) == 40.0, 20), scrape(port)
        stalled = worker_pids(tmp_path)[0]
        os.kill(stalled, signal.SIGSTOP)
        try:
            m = scrape(port)
            assert m["edgestream_hub_workers_scraped{}"] == 1 and m[key] == 40.0, m
        finally:
            os.kill(stalled, signal.SIGCONT)
        victim = worker_pids(tmp_path)[1]
        os.kill(victim, signal.SIGKILL)
        assert scrape(port)[key] == 40.0  # down: its counts stay
        assert wait_for(lambda: len(worker_pids(tmp_path)) == 2 and victim not in worker_pids(tmp_path), 30)
        assert wait_for(lambda: scrape(port)["edgestream_hub_workers_scraped{}"] == 2, 20)
        m = scrape(port)
        assert m[key] == 40.0 and m['edgestream_hub_worker_restarts_total{"worker": "1"}'] == 1, m
        for d in device_names(0, 8):  # the restarted worker counts on from there
            publish_one(mosquitto.port, f"edgestream/{d}/data", message(d, 5, 5, TIMINGS["tumbling"]))
        assert wait_for(lambda: scrape(port).get(key) == 80.0, 20), scrape(port)
        assert hub.stop() == 0
    finally:
        hub.close()



def test_a_worker_started_again_after_a_refused_edit_runs_the_config_it_ran(tmp_path, mosquitto):
    # the running workers refuse an edit that cannot be split; one that dies afterwards must not be kept
    # down by it (its devices would go unread until someone fixed the file)
    from crashkit import message

    cfg = hub_yaml(tmp_path, mosquitto.port)
    hub = HubProcess(cfg, tmp_path / "hub.log").start()
    devs = device_names(0, 8)
    try:
        assert started(hub), hub.log.read_text()[-3000:]
        time.sleep(0.3)
        text = cfg.read_text().replace("to: [db]", "to: [db, lines]")
        cfg.write_text(text.replace("sinks:\n", "sinks:\n  lines: {file: {path: x.jsonl}}\n"))
        hub.signal(signal.SIGHUP)
        assert wait_for(lambda: hub.log.read_text().count("config reload refused") >= 2, 20)
        victim = worker_pids(tmp_path)[1]
        os.kill(victim, signal.SIGKILL)
        assert wait_for(lambda: len(worker_pids(tmp_path)) == 2 and victim not in worker_pids(tmp_path), 30), \
            hub.log.read_text()[-3000:]
        time.sleep(0.3)
        for d in devs:
            publish_one(mosquitto.port, f"edgestream/{d}/data", message(d, 0, 5, TIMINGS["tumbling"]))
        closing = closers(2)
        for d in closing:
            publish_one(mosquitto.port, f"edgestream/{d}/data", closer_message(d))
        ref = reference(records(devs, 5, TIMINGS["tumbling"]), closing)
        assert wait_for(lambda: len(rows(tmp_path)) >= len(ref), 30), hub.log.read_text()[-3000:]
        assert hub.stop() == 0
    finally:
        hub.close()
    assert set(rows(tmp_path)) == set(ref)
    log = hub.log.read_text()
    assert "[worker 1] edgestream.hub: config file refused at the start, running the config this worker ran " \
           "before" in log and "sinks.lines.file" in log
    assert not (tmp_path / "x.jsonl").exists()


def test_a_worker_killed_before_its_first_checkpoint_after_fresh_state_does_not_resume_the_old_state(
        tmp_path, mosquitto):
    # --fresh-state is dropped when the supervisor starts a worker again: the fresh start must already be
    # in a checkpoint then, or the worker resumes the state it was told to drop (here: refused for a changed
    # query, so the worker would exit at every restart and its devices go unread)
    from crashkit import message

    cfg = hub_yaml(tmp_path, mosquitto.port)
    cfg.write_text(cfg.read_text() + "state: {interval: 60s}\n")
    hub = HubProcess(cfg, tmp_path / "hub.log").start()
    devs = device_names(0, 8)
    try:
        assert started(hub), hub.log.read_text()[-3000:]
        time.sleep(0.3)
        for d in devs:  # open windows in both workers' checkpoints
            publish_one(mosquitto.port, f"edgestream/{d}/data", message(d, 0, 5, TIMINGS["tumbling"]))
        time.sleep(1.0)
        assert hub.stop() == 0
        cfg.write_text(cfg.read_text().replace("TUMBLINGWINDOW(ss, 1)", "TUMBLINGWINDOW(ss, 2)"))
        hub.start(args=("--fresh-state", "agg"))
        assert started(hub), hub.log.read_text()[-3000:]
        victim = worker_pids(tmp_path)[1]
        os.kill(victim, signal.SIGKILL)
        assert wait_for(lambda: len(worker_pids(tmp_path)) == 2 and victim not in worker_pids(tmp_path), 30), \
            hub.log.read_text()[-3000:]
        time.sleep(2.5)  # past the first restart's backoff: a refused worker would have exited again
        assert hub.stop() == 0
    finally:
        hub.close()
    log = hub.log.read_text().rsplit("---- start 2\n", 1)[1]
    assert log.count("worker 1 exited") == 1 and "cannot resume" not in log, log[-3000:]
    assert log.count("written at the start (--fresh-state agg)") == 2, log[-3000:]


def test_a_session_taken_over_by_another_client_says_which_client_id_and_why(tmp_path, mosquitto):
    # two gateways whose hub.take overlap run workers with one client id: the broker closes each one's session
    # when the other connects, every second; the log must say what is going on, not only "lost the broker"
    import paho.mqtt.client as mqtt

    cfg = hub_yaml(tmp_path, mosquitto.port, workers=1)
    hub = HubProcess(cfg, tmp_path / "hub.log").start()
    other = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="wk-hub", clean_session=False)
    try:
        assert hub.subscribed(), hub.log.read_text()[-3000:]
        other.connect("127.0.0.1", mosquitto.port)
        other.loop_start()
        assert wait_for(lambda: "lost the broker" in hub.log.read_text(), 20), hub.log.read_text()[-3000:]
        other.disconnect()
        other.loop_stop()
        assert hub.stop() == 0
    finally:
        hub.close()
    log = hub.log.read_text()
    assert "connected as wk-hub; reconnecting with backoff; a connection closed this soon may have been taken " \
           "over by another client with this client id" in log and "hub.take overlaps" in log, log[-3000:]


def test_hub_check_refuses_a_split_the_state_folder_was_not_written_with_as_hub_run_does(tmp_path, mosquitto):
    # `hub check` passing must mean `hub run` does not exit 2: a hub that ran in one process left checkpoints
    cfg = hub_yaml(tmp_path, mosquitto.port, workers=1)
    hub = HubProcess(cfg, tmp_path / "hub.log").start()
    try:
        assert hub.subscribed(), hub.log.read_text()[-3000:]
        assert hub.stop() == 0
    finally:
        hub.close()

    def cli(action: str, workers: str) -> subprocess.CompletedProcess:
        return subprocess.run([EDGESTREAM, "hub", action, "-c", str(cfg), "--set", f"hub.workers={workers}"],
                              capture_output=True, text=True, timeout=60)

    says = "hub.workers: the state in {} was written by a hub of 1 worker(s)".format(tmp_path / ".edgestream")
    check, run = cli("check", "2"), cli("run", "2")
    assert check.returncode == run.returncode == 2, (check, run)
    assert says in check.stderr and says in run.stderr and "Traceback" not in check.stderr + run.stderr
    assert not (tmp_path / ".edgestream" / "workers.json").exists()  # check wrote nothing
    for workers in ("1", "auto"):  # auto keeps the one process the state was written by
        assert cli("check", workers).returncode == 0
