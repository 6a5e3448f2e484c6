"""The hub on several cores: ``edgestream hub run`` with ``hub.workers`` 1 and 2 against a bare paho subscriber.

The same burst as ``bench_hub``'s intake (300K records in 100-item ``results`` messages from four publisher
processes, on a real mosquitto on loopback), received by: a bare paho subscriber that ``json.loads`` each
payload (one process), and ``edgestream hub run`` as a user runs it (a child process: the supervisor and
its workers) on MQTT -> passthrough -> a file sink with a file per worker (``out-{worker}.jsonl``), with
``workers: 1`` and ``workers: 2``, in interleaved rounds. Timed from the publishers' start until the last
record is in the files (the newest file's modification time, once the merged
``edgestream_sink_records_total`` has them all); CPU is every process of the side (the hub: the
supervisor and the workers). On this 2-core machine the broker and the publishers run on the same cores
as the hub, so two workers cannot double the rate; the CPU per record says what each worker costs.

``python -m bench.bench_workers`` prints the figures.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.bench_hub import CHILD_DEADLINE_S, ROOT, _publishers, _reap, payloads, run_child
from bench.report import figure, note

SECTION = "Hub on several cores (hub.workers)"
MESSAGES, PER, DEVICES, PUBLISHERS = 3000, 100, 16, 4
ROUNDS = 3

HUB_YAML = """
hub: {{workers: {workers}}}
broker: {{host: 127.0.0.1, port: {port}}}
sources:
  devices: {{mqtt: {{topics: "edgestream/+/results", qos: 0, client_id: bench-hub}}}}
sinks:
  out: {{file: {{path: "out-{{worker}}.jsonl"}}}}
pipelines:
  p: {{from: devices, processors: [passthrough: {{}}], to: out}}
metrics: {{listen: "127.0.0.1:{metrics}"}}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _metric(port: int, name: str) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return None
    total = None
    for line in text.splitlines():
        if line.startswith(name):
            total = (total or 0.0) + float(line.rsplit(" ", 1)[1])
    return total


def _pids(d: Path, hub: subprocess.Popen[bytes]) -> list[int]:
    out = [hub.pid]
    for f in sorted((d / ".edgestream").glob("worker-*/worker.json")):
        try:
            out.append(int(json.loads(f.read_text())["pid"]))
        except (OSError, ValueError, KeyError):
            pass
    return out


def run_hub(workers: int, port: int, d: Path, data: list[tuple[str, bytes]]) -> dict[str, Any]:
    """One burst into ``edgestream hub run`` with ``workers``: records/s and CPU s per record."""
    total = len(data) * PER
    for f in d.glob("out-*.jsonl"):
        f.unlink()
    shutil.rmtree(d / ".edgestream", ignore_errors=True)
    mport = _free_port()
    cfg = d / "hub.yaml"
    cfg.write_text(HUB_YAML.format(workers=workers, port=port, metrics=mport))
    hub = subprocess.Popen([sys.executable, "-m", "edgestream_tools.cli", "hub", "run", "-c", str(cfg)], cwd=d,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pubs: list[subprocess.Popen[str]] = []
    try:
        deadline = time.monotonic() + 60
        want = "edgestream_hub_workers_scraped" if workers > 1 else "edgestream_sink_records_total"
        while time.monotonic() < deadline:
            v = _metric(mport, want)
            if v is not None and v >= (workers if workers > 1 else 0):
                break
            if hub.poll() is not None:
                raise RuntimeError(f"hub run exited {hub.returncode}")
            time.sleep(0.1)
        time.sleep(1.0)  # the SUBACKs
        pids = _pids(d, hub)
        cpu0 = sum(_cpu_s(p) for p in pids)
        pubs = _publishers(port, str(d), data, PUBLISHERS)
        t0 = time.monotonic()
        for pr in pubs:
            assert pr.stdin is not None
            pr.stdin.write("go\n")
            pr.stdin.flush()
        t0_wall = time.time()
        got = 0.0
        deadline = time.monotonic() + CHILD_DEADLINE_S
        while time.monotonic() < deadline:
            got = _metric(mport, "edgestream_sink_records_total{") or 0.0
            if got >= total:
                break
            time.sleep(0.1)
        cpu = sum(_cpu_s(p) for p in pids) - cpu0
        done_wall = max((f.stat().st_mtime for f in d.glob("out-*.jsonl")), default=time.time())
        elapsed = max(done_wall - t0_wall, 1e-3) if got >= total else time.monotonic() - t0
        for pr in pubs:
            pr.wait(30)
        if got < total:
            print(f"  workers {workers}: only {got:.0f} of {total} records arrived")
        files = sorted(d.glob("out-*.jsonl"))
        return {"rate": got / elapsed, "cpu_us": cpu / max(got, 1) * 1e6, "files": len(files)}
    finally:
        hub.send_signal(signal.SIGTERM)
        try:
            hub.wait(30)
        except subprocess.TimeoutExpired:
            hub.kill()
            hub.wait(10)
        _reap(pubs)


def bench(rounds: int = ROUNDS) -> dict[str, list[float]]:
    from edgestream_hub.workers import partition_of
    from edgestream_tools.broker import Mosquitto

    data = payloads(MESSAGES, PER, DEVICES)
    split = [sum(1 for k in range(DEVICES) if partition_of(f"dev-{k}", 2) == p) for p in range(2)]
    print(f"{MESSAGES * PER:,} records in {MESSAGES:,} messages of {PER} from {DEVICES} devices "
          f"({split[0]} / {split[1]} per worker with 2), {PUBLISHERS} publishers, {rounds} interleaved rounds")
    out: dict[str, list[float]] = {k: [] for k in ("bare", "w1", "w2", "cpu bare", "cpu w1", "cpu w2")}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        broker = Mosquitto(d / "broker").start()
        try:
            for _ in range(rounds):
                r = run_child("paho-json", broker.port, str(d), data, PER, publishers=PUBLISHERS)
                out["bare"].append(r["rate"])
                out["cpu bare"].append(r["cpu_s"] / r["count"] * 1e6)
                for w in (1, 2):
                    h = run_hub(w, broker.port, d, data)
                    out[f"w{w}"].append(h["rate"])
                    out[f"cpu w{w}"].append(h["cpu_us"])
                print(f"  round: bare {out['bare'][-1]:,.0f}, workers 1 {out['w1'][-1]:,.0f}, workers 2 "
                      f"{out['w2'][-1]:,.0f} records/s", flush=True)
        finally:
            broker.stop()
    return out


def main() -> None:
    os.chdir(ROOT)
    r = bench()
    n = len(r["bare"])
    ratio = {w: [r[w][i] / r["bare"][i] for i in range(n)] for w in ("w1", "w2")}
    figure(SECTION, "edgestream hub run, workers 1, 100-item messages (MQTT -> passthrough -> file per worker)",
           r["w1"], "records/s")
    figure(SECTION, "edgestream hub run, workers 2, 100-item messages (MQTT -> passthrough -> file per worker)",
           r["w2"], "records/s", target=">= 100000")
    figure(SECTION, "bare paho subscriber + json.loads each payload, same burst", r["bare"], "records/s")
    figure(SECTION, "hub workers 1 / bare subscriber (same round)", ratio["w1"], "ratio")
    figure(SECTION, "hub workers 2 / bare subscriber (same round)", ratio["w2"], "ratio", target=">= 0.8")
    figure(SECTION, "hub workers 2 / workers 1 (same round)", [r["w2"][i] / r["w1"][i] for i in range(n)], "ratio")
    figure(SECTION, "CPU per record, workers 1 (one process)", r["cpu w1"], "us")
    figure(SECTION, "CPU per record, workers 2 (supervisor + 2 workers)", r["cpu w2"], "us")
    figure(SECTION, "CPU per record, bare subscriber", r["cpu bare"], "us")
    note(SECTION, f"{statistics.median(r['cpu w2']) / statistics.median(r['cpu w1']):.2f}x the CPU per record with "
                  "2 workers: each worker's paho reads every message (it drops the other's before decoding them).")


if __name__ == "__main__":
    main()
