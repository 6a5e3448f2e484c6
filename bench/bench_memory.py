"""Hub memory with a fleet: 1,000 devices, 10 pipelines (target: under 50 MB RSS).

The hub runs in a child process (``HubService`` on a config file, as ``edgestream hub run`` runs it,
checkpoints on at their default interval, a ``devices`` section tracking every device) against a real
mosquitto: one MQTT source, ten pipelines of the usual kinds (SQL tumbling, hopping, session and
count windows per device, a projection, a filter, a passthrough), each to its own JSON-lines file.
1,000 devices each send one ``data`` message of 10 readings (1 s of their time; the queries allow 1 s
of lateness) a round, ``ROUNDS`` rounds one second apart, QoS 1: every window kind opens, fills and
closes, and each of the 1,000 keys holds state in every windowed pipeline. The child reports its VmRSS
once started, its peak (VmHWM) over the run and its VmRSS at the end; ``RUNS`` runs, median and spread of each.

``python -m bench.bench_memory`` prints everything; ``--child ...`` is the hub side.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_hub import _mem_kb, _say
from bench.report import figure, note

SECTION = "Hub memory: 1,000 devices, 10 pipelines"
ROOT = Path(__file__).resolve().parent.parent
DEVICES, PIPELINES, ROUNDS, PER, RUNS = 1000, 10, 10, 10, 3
MB = 1024 / 1e6  # VmRSS is in KiB; figures are in MB (10^6 bytes), as the target
BY = "GROUP BY device, sensor"
QUERIES = [
    f"SELECT device, count(*) AS n, avg(value) AS mean, min(value) AS lo, max(value) AS hi FROM devices {BY}, "
    "TUMBLINGWINDOW(ss, 10)",
    f"SELECT device, avg(value) AS mean FROM devices {BY}, TUMBLINGWINDOW(ss, 60)",
    f"SELECT device, max(value) AS hi FROM devices {BY}, HOPPINGWINDOW(ss, 10, 2)",
    f"SELECT device, count(*) AS n, avg(value) AS mean FROM devices {BY}, SESSIONWINDOW(ss, 5, 2)",
    f"SELECT device, count(*) AS n FROM devices {BY}, TUMBLINGWINDOW(ss, 1)",
    f"SELECT device, count(*) AS n, sum(value) AS total FROM devices {BY}, COUNTWINDOW(20)",
    "SELECT device, sensor, ts, value * 1.8 + 32 AS f FROM devices WHERE value > 21",
]
# every device's message spans 1 s of its time and devices arrive one after another: a lateness of 1 s
PROCESSORS = [f'[sql: {{query: "{q}", lateness: 1s}}]' for q in QUERIES] + [
    "[{filter: {field: value, gt: 22}}]", "[passthrough: {}]", "[{filter: {field: value, lt: 21}}]"]
assert len(PROCESSORS) == PIPELINES


def hub_yaml(port: int, d: Path) -> str:
    sinks = "".join(f"  out{i}: {{file: {{path: {d / f'out{i}.jsonl'}}}}}\n" for i in range(PIPELINES))
    pipes = "".join(f"  p{i}: {{from: devices, processors: {PROCESSORS[i]}, to: out{i}}}\n" for i in range(PIPELINES))
    return (f"broker: {{host: 127.0.0.1, port: {port}}}\n"
            f"state: {{dir: {d / 'state'}}}\n"
            f"devices: {{connection: default, max_devices: {DEVICES}, time: false}}\n"
            "sources:\n  devices: {mqtt: {topics: \"edgestream/+/data\", qos: 1, client_id: bench-memory}}\n"
            f"sinks:\n{sinks}pipelines:\n{pipes}")


def child_main(cfg_path: str, total: int) -> None:
    from edgestream_hub.service import HubService

    svc = HubService(cfg_path).start()
    eng = svc.engine
    assert eng is not None
    eng.sources["devices"].source.subscribed.wait(20)  # type: ignore[attr-defined]
    _say(ready=time.monotonic(), mem=_mem_kb())
    deadline = time.monotonic() + 120
    got = 0.0
    while time.monotonic() < deadline:
        got = sum(eng.metrics.value("edgestream_pipeline_records_in_total", component=f"p{i}")
                  for i in range(PIPELINES))
        if got >= total * PIPELINES:
            break
        time.sleep(0.05)
    time.sleep(1.5)  # a checkpoint after the last records, and the sinks' last writes
    devices = len(eng.device_service.registry.devices) if eng.device_service else 0
    _say(done=time.monotonic(), count=got, mem=_mem_kb(), devices=devices)
    svc.stop()


def payloads(rnd: int) -> list[tuple[str, bytes]]:
    """Round ``rnd``: one message of PER readings from every device, over one second of device time."""
    from edgestream_shared.encoder import Encoder

    out = []
    for k in range(DEVICES):
        dev = f"dev-{k}"
        e = Encoder(dev, 1, 4096)
        e.begin(b"readings")
        for i in range(PER):
            seq = rnd * PER + i
            e.add_reading(seq, b"temp", 1_000_000 + rnd * 1000 + i * (1000 // PER), 20.0 + (seq * 7 + k) % 40 / 10)
        out.append((f"edgestream/{dev}/data", bytes(e.finish())))
    return out


def run_once(port: int, d: Path, rounds: list[list[tuple[str, bytes]]]) -> dict:
    import paho.mqtt.client as mqtt

    run = Path(tempfile.mkdtemp(dir=d))
    cfg = run / "hub.yaml"
    cfg.write_text(hub_yaml(port, run))
    total = DEVICES * PER * len(rounds)
    proc = subprocess.Popen([sys.executable, "-m", "bench.bench_memory", "--child", str(cfg), str(total)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        ready = json.loads(proc.stdout.readline())
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        pub.max_inflight_messages_set(1000)
        pub.max_queued_messages_set(0)
        pub.connect("127.0.0.1", port)
        pub.loop_start()
        t0 = time.monotonic()
        infos = []
        for i, msgs in enumerate(rounds):
            wait = t0 + i - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            infos += [pub.publish(topic, p, qos=1) for topic, p in msgs]
        done = json.loads(proc.stdout.readline())
        for info in infos:
            info.wait_for_publish(30)
        pub.disconnect()
        pub.loop_stop()
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    if done["count"] < total * PIPELINES:
        raise RuntimeError(f"the pipelines took {done['count']:.0f} of {total * PIPELINES} records")
    return {"ready": ready["mem"]["VmRSS"] * MB, "peak": done["mem"]["VmHWM"] * MB, "end": done["mem"]["VmRSS"] * MB,
            "devices": done["devices"]}


def main() -> None:
    from edgestream_tools.broker import Mosquitto

    rounds = [payloads(r) for r in range(ROUNDS)]
    runs = []
    with tempfile.TemporaryDirectory() as d:
        broker = Mosquitto(Path(d)).start()
        try:
            for _ in range(RUNS):
                runs.append(run_once(broker.port, Path(d), rounds))
        finally:
            broker.stop()
    figure(SECTION, "hub RSS once started", [r["ready"] for r in runs], "MB")
    figure(SECTION, "hub peak RSS (VmHWM) over the run", [r["peak"] for r in runs], "MB", target="< 50")
    figure(SECTION, "hub RSS at the end, every window open for 1,000 devices", [r["end"] for r in runs], "MB")
    note(SECTION, f"{DEVICES:,} devices x {ROUNDS} rounds of one {PER}-reading message each (QoS 1), one round a "
         f"second; {PIPELINES} pipelines (SQL tumbling 1 s, 10 s and 60 s, hopping 10 s every 2 s, session and count "
         "windows per device, a projection, two filters, a passthrough) to 10 files; checkpoints on (1 s); the "
         f"device registry tracked {min(r['devices'] for r in runs):,} devices. MB = 10^6 bytes.")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main(sys.argv[2], int(sys.argv[3]))
    else:
        main()
