"""Durability: what checkpoints cost and how long a restart takes.

1. Throughput with checkpoints on (``state.interval`` 10 s, and the default 1 s) against off
   (``state.enabled: false``): the hub (``HubService`` in a child process, as ``edgestream hub
   run`` runs it) takes QoS 1 ``data`` messages of 100 readings from a real mosquitto on the
   recommended config (``edgestream broker``: ``max_inflight_messages 1000``), runs a SQL tumbling window over
   1000 devices and writes the results to a JSON-lines file. Timed from the first publish until
   the pipeline took every record; rounds interleaved, medians reported. With checkpoints on,
   every message is acknowledged only after a checkpoint holds it.
2. A checkpoint of 10,000 open windows (one per device, tumbling; and 10,000 open sessions): a
   whole round through the engine (cut, barrier, snapshot on the pipeline's thread, write with
   fsync and rename), the file's size, and each part measured alone; then a delta round after
   records for 1% of the devices (a delta holds only the entries that changed).
3. Restore: reading and verifying the checkpoint, and building the processor from it.

``python -m bench.bench_durable`` prints everything (``--windows``: only parts 2 and 3); ``--child ...`` is the
receiving side.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.bench_hub import _say
from bench.report import figure

SECTION = "Costs: checkpoints on vs off"

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = 3
MESSAGES, PER, DEVICES = 30_000, 100, 1000  # 3,000,000 readings per run: longer than a 10 s interval
QUERY = ("SELECT device, count(*) AS n, avg(value) AS mean FROM readings GROUP BY device, "
         "TUMBLINGWINDOW(ss, 10)")
HUB_YAML = """
broker: {{host: 127.0.0.1, port: {port}}}
state: {state}
sources:
  devices: {{mqtt: {{topics: "edgestream/+/data", qos: 1, client_id: bench-durable}}}}
sinks:
  out: {{file: {{path: {out}}}}}
pipelines:
  p: {{from: devices, processors: [sql: "{query}"], to: out}}
"""
VARIANTS = {"off": "{enabled: false}", "on, interval 10s": "{interval: 10s}", "on, interval 1s (default)": "{}"}


def child_main(cfg_path: str, total: int) -> None:
    from edgestream_hub.service import HubService

    svc = HubService(cfg_path).start()
    eng = svc.engine
    assert eng is not None
    eng.sources["devices"].source.subscribed.wait(20)  # type: ignore[attr-defined]
    cpu0 = time.process_time()
    _say(ready=time.monotonic())
    deadline = time.monotonic() + 300
    got = 0.0
    while time.monotonic() < deadline:
        got = eng.metrics.value("edgestream_pipeline_records_in_total", component="p")
        if got >= total:
            break
        time.sleep(0.002)
    done = time.monotonic()
    cp = eng.checkpointer
    _say(done=done, count=got, checkpoints=cp.checkpoints if cp else 0, cpu=time.process_time() - cpu0)
    svc.stop()


def payloads() -> list[tuple[str, bytes]]:
    from edgestream_shared.encoder import Encoder

    out = []
    for m in range(MESSAGES):
        dev = f"dev-{m % DEVICES}"
        e = Encoder(dev, 1, 16384)
        e.begin(b"readings")
        base = (m // DEVICES) * PER
        for i in range(PER):
            e.add_reading(base + i, b"temp", 1_000_000 + (base + i) * 10, 20.0 + i % 5)
        out.append((f"edgestream/{dev}/data", bytes(e.finish())))
    return out


def run_hub(port: int, d: Path, state: str, data: list[tuple[str, bytes]]) -> tuple[float, float, int]:
    """One run: (records/s, records per CPU second of the hub process, checkpoints taken)."""
    import paho.mqtt.client as mqtt

    run = Path(tempfile.mkdtemp(dir=d))
    cfg = run / "hub.yaml"
    cfg.write_text(HUB_YAML.format(port=port, state=state, out=run / "out.jsonl", query=QUERY))
    total = len(data) * PER
    proc = subprocess.Popen([sys.executable, "-m", "bench.bench_durable", "--child", str(cfg), str(total)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        json.loads(proc.stdout.readline())
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        pub.max_inflight_messages_set(1000)
        pub.max_queued_messages_set(0)
        pub.connect("127.0.0.1", port)
        pub.loop_start()
        t0 = time.monotonic()
        infos = [pub.publish(topic, payload, qos=1) for topic, payload in data]
        report = json.loads(proc.stdout.readline())
        for i in infos:
            i.wait_for_publish(60)
        pub.disconnect()
        pub.loop_stop()
        proc.wait(120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert report["count"] >= total, f"the hub took {report['count']} of {total} records"
    return total / (report["done"] - t0), total / report["cpu"], report["checkpoints"]


def throughput() -> None:
    from edgestream_tools.broker import Mosquitto

    data = payloads()
    with tempfile.TemporaryDirectory() as d:
        broker = Mosquitto(Path(d)).start()  # on the recommended config (`edgestream broker`)
        try:
            rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
            cpu: dict[str, list[float]] = {v: [] for v in VARIANTS}
            checkpoints: dict[str, list[int]] = {v: [] for v in VARIANTS}
            run_hub(broker.port, Path(d), VARIANTS["off"], data[:300])  # warm up the broker and the page cache
            for _ in range(ROUNDS):
                for name, state in VARIANTS.items():
                    r, c, n = run_hub(broker.port, Path(d), state, data)
                    rates[name].append(r)
                    cpu[name].append(c)
                    checkpoints[name].append(n)
        finally:
            broker.stop()
    off, off_cpu = statistics.median(rates["off"]), statistics.median(cpu["off"])
    print(f"throughput, MQTT QoS 1 ({MESSAGES} messages of {PER} readings, {DEVICES} devices) -> SQL tumbling "
          f"window -> file, median of {ROUNDS} (wall clock; and per CPU second of the hub, which other load on "
          "the machine disturbs less):")
    for name in VARIANTS:
        figure(SECTION, f"MQTT QoS 1 -> SQL -> file, checkpoints {name}", rates[name], "records/s", echo=False)
        if name != "off":
            figure(SECTION, f"cost of checkpoints {name} (1 - on/off, per round)",
                   [100 * (1 - on / off) for on, off in zip(rates[name], rates["off"])], "% of throughput",
                   echo=False)
            figure(SECTION, f"CPU cost of checkpoints {name} (1 - on/off records per CPU second, per round)",
                   [100 * (1 - on / off) for on, off in zip(cpu[name], cpu["off"])], "% of CPU", echo=False)
    for name in VARIANTS:
        med, med_cpu = statistics.median(rates[name]), statistics.median(cpu[name])
        cost = "" if name == "off" else (f", cost {100 * (1 - med / off):+.1f}% wall, "
                                         f"{100 * (1 - med_cpu / off_cpu):+.1f}% CPU")
        print(f"  checkpoints {name:<26} {med:>9,.0f} records/s, {med_cpu:>9,.0f} per CPU s (wall runs: "
              f"{', '.join(f'{x:,.0f}' for x in rates[name])}; checkpoints per run: "
              f"{statistics.median(checkpoints[name]):.0f}){cost}")


def open_windows(d: Path, mode: str, n: int = 10_000) -> None:
    """A hub holding ``n`` open windows: a round through the engine, then each part alone, then restore."""
    from edgestream_hub.api import SimpleContext
    from edgestream_hub.checkpoint import CheckpointStore
    from edgestream_hub.config import load_config
    from edgestream_hub.engine import Engine
    from edgestream_hub.sql.processor import SqlProcessor

    window = "TUMBLINGWINDOW(ss, 60)" if mode == "tumbling" else "SESSIONWINDOW(ss, 600, 60)"
    query = f"SELECT device, count(*) AS n, avg(value) AS mean, max(value) AS top FROM s GROUP BY device, {window}"
    (d / "in.jsonl").write_text("".join(json.dumps({"device": f"dev-{k}", "ts": 1000 + k, "value": k * 0.5})
                                        + "\n" for k in range(n)))
    (d / "hub.yaml").write_text(f"""
sources: {{f: {{file: {{path: in.jsonl, mode: follow}}}}}}
sinks: {{out: {{file: {{path: out.jsonl}}}}}}
pipelines: {{p: {{from: f, processors: [sql: "{query}"], to: out}}}}
state: {{interval: 1h}}
""")
    e = Engine(load_config(d / "hub.yaml")).start()
    try:
        deadline = time.monotonic() + 60
        while e.metrics.value("edgestream_pipeline_records_in_total", component="p") < n:
            assert time.monotonic() < deadline, "the hub did not take the records"
            time.sleep(0.01)
        cp = e.checkpointer
        assert cp is not None and e.store is not None
        cp.stop()
        rounds, sizes = [], []
        for _ in range(5):
            e.store._hashes = None  # each round writes a full checkpoint (an unchanged one writes nothing)
            t = time.perf_counter()
            assert cp.round(deadline=time.monotonic() + 30, abort=threading.Event())
            rounds.append(time.perf_counter() - t)
            sizes.append(cp.last_size or 0)
        proc = e.pipelines["p"].procs[0][1]
        assert proc.state_summary()["held" if mode == "sessions" else "keys"] == n
        deltas, delta_sizes = [], []
        taken = n
        for r in range(5):  # 1% of the devices have a record each time, all in their open window
            changed = range(r, n, 100)
            with open(d / "in.jsonl", "a") as f:
                f.write("".join(json.dumps({"device": f"dev-{k}", "ts": 2000 + k, "value": 1.0}) + "\n"
                                for k in changed))
            taken += len(changed)
            while e.metrics.value("edgestream_pipeline_records_in_total", component="p") < taken:
                assert time.monotonic() < deadline + 60, "the hub did not take the records"
                time.sleep(0.01)
            t = time.perf_counter()
            assert cp.round(deadline=time.monotonic() + 30, abort=threading.Event())
            deltas.append(time.perf_counter() - t)
            assert e.store.header(cp.last_n or 0).kind == "delta"
            delta_sizes.append(cp.last_size or 0)
    finally:
        e.stop()
    t = time.perf_counter()
    snap = proc.snapshot()
    t_snap = time.perf_counter() - t
    t = time.perf_counter()
    text = json.dumps({"processors": {"p.sql": snap}}, separators=(",", ":"))
    t_json = time.perf_counter() - t
    store = CheckpointStore(d / "alone")
    t = time.perf_counter()
    store.write({"pipeline/p": text})
    t_write = time.perf_counter() - t
    t = time.perf_counter()
    restored = CheckpointStore(d / ".edgestream" / "state").restore()  # the last full one and its deltas
    t_read = time.perf_counter() - t
    t = time.perf_counter()
    again = SqlProcessor(query, SimpleContext(), resume_state=restored.sections["pipeline/p"]["processors"]["p.sql"],
                         id_field="_id", id_scope="p/p.sql")
    t_build = time.perf_counter() - t
    assert again.state_summary()["held" if mode == "sessions" else "keys"] == n
    assert again.snapshot() == json.loads(json.dumps(proc.snapshot()))
    ms = 1000
    unit = "window" if mode == "tumbling" else "session"
    figure(SECTION, f"a checkpoint round through the engine, {n:,} open {mode} states", [x * ms for x in rounds], "ms",
           echo=False)
    figure(SECTION, f"checkpoint file, {n:,} open {mode} states", [x / 1024 for x in sizes], "KiB", echo=False)
    figure(SECTION, f"restore (read, verify, rebuild), {n:,} open {mode} states", (t_read + t_build) * ms, "ms",
           echo=False)
    print(f"checkpoint of {n:,} open {'windows (tumbling, one per device)' if mode == 'tumbling' else 'sessions'}:")
    print(f"  a round through the engine: {statistics.median(rounds) * ms:.0f} ms (median of 5; file "
          f"{statistics.median(sizes) / 1024:.0f} KiB, {statistics.median(sizes) / n:.0f} B per {unit})")
    print(f"  a delta round after 1% of the {unit}s changed: {statistics.median(deltas) * ms:.0f} ms (median of 5; "
          f"file {statistics.median(delta_sizes) / 1024:.1f} KiB, "
          f"{statistics.median(delta_sizes) / statistics.median(sizes) * 100:.1f}% of the full one)")
    print(f"  parts: snapshot {t_snap * ms:.0f} ms, JSON {t_json * ms:.0f} ms, write+fsync+rename "
          f"{t_write * ms:.0f} ms")
    print(f"  restore (the full one and {len(restored.chain) - 1} deltas): read and verify {t_read * ms:.0f} ms, "
          f"rebuild the processor {t_build * ms:.0f} ms "
          f"(total {(t_read + t_build) * ms:.0f} ms)")


def main() -> None:
    if "--windows" not in sys.argv:
        throughput()
    for mode in ("tumbling", "sessions"):
        with tempfile.TemporaryDirectory() as d:
            open_windows(Path(d), mode)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main(sys.argv[2], int(sys.argv[3]))
    else:
        main()
