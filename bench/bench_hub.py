"""Hub engine throughput and plugin overhead.

1. records/s through MQTT source -> passthrough -> file sink, with agents'
   batched result messages (100 items each) published to a real mosquitto
   started on a free loopback port; timed from the first publish until the
   file sink has written every record.
2. Plugin processor overhead: the example plugin's ``threshold`` processor
   loaded from its entry point, against the same class registered as a
   built-in, and against the built-in ``filter`` (gt), each driven through the
   engine (in-memory source -> processor -> null sink); medians of
   interleaved runs.
3. Cold start of ``edgestream hub check``.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_DIR = str(ROOT / "tests" / "hub" / "plugin_example")


def bench_mqtt(messages: int = 2000, per_message: int = 100) -> float:
    import paho.mqtt.client as mqtt

    from edgestream_hub.config import load_config
    from edgestream_hub.engine import Engine
    from edgestream_tools.broker import Mosquitto
    from edgestream_shared.encoder import Encoder

    with tempfile.TemporaryDirectory() as d:
        broker = Mosquitto(Path(d)).start()
        try:
            cfg = load_config(text=f"""
broker: {{host: 127.0.0.1, port: {broker.port}}}
sources:
  devices: {{mqtt: {{topics: "edgestream/+/results", qos: 0, client_id: bench-hub}}}}
sinks:
  out: {{file: {{path: {d}/out.jsonl}}, batch: {{size: 2000, linger: 20ms}}, queue: 50000}}
pipelines:
  p: {{from: devices, processors: [passthrough: {{}}], to: out, batch: {{size: 2000, linger: 5ms}}, queue: 50000}}
""", env={})
            engine = Engine(cfg).start()
            src = engine.sources["devices"].source
            src.subscribed.wait(10)
            payloads = []
            for m in range(messages):
                e = Encoder("dev-%d" % (m % 10), 1, 16384)
                e.begin(b"results")
                base = (m // 10) * per_message
                for i in range(per_message):
                    e.add_result(base + i, b"temp", b"w10s", 0, 10_000, (b"count", b"avg", b"min", b"max"),
                                 (10, 21.5, 20.0, 23.0))
                payloads.append(("edgestream/dev-%d/results" % (m % 10), bytes(e.finish())))
            pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
            pub.connect("127.0.0.1", broker.port)
            pub.loop_start()
            total = messages * per_message
            t0 = time.perf_counter()
            for topic, p in payloads:
                pub.publish(topic, p, qos=0)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if engine.metrics.value("edgestream_sink_records_total", component="out") >= total:
                    break
                time.sleep(0.005)
            dt = time.perf_counter() - t0
            got = engine.metrics.value("edgestream_sink_records_total", component="out")
            pub.loop_stop()
            pub.disconnect()
            engine.stop()
        finally:
            broker.stop()
    if got < total:
        print(f"  mqtt: only {got:.0f} of {total} records arrived")
    return got / dt


def bench_plugin(n: int = 500_000, runs: int = 7) -> dict[str, float]:
    from edgestream_hub.components import PollingSource, Sink
    from edgestream_hub.config import load_config
    from edgestream_hub.engine import Engine
    from edgestream_hub.registry import Registry, component
    from edgestream_hub.spec import Field, Spec

    sys.path.insert(0, PLUGIN_DIR)
    reg = Registry.default(paths=[PLUGIN_DIR])  # threshold comes from its entry point
    import edgestream_plugin_example as ex

    reg.register("processor", "threshold_builtin", ex.threshold, spec=Spec("threshold_builtin", "same code",
                                                                           ex.threshold.spec.fields))
    records = [{"device": "d", "t": float(i % 40), "seq": i} for i in range(n)]
    go = threading.Event()
    kept = sum(1 for r in records if r["t"] > 20)

    class Mem(PollingSource):
        finite = True

        def __init__(self, ctx):
            super().__init__(ctx)
            self.i = 0

        def poll(self):
            if not go.is_set():
                return [], 0.001
            if self.i >= n:
                return [], None
            out = records[self.i:self.i + 1000]
            self.i += 1000
            return out, 0

    class Null(Sink):
        def __init__(self):
            self.n = 0

        def write(self, recs):
            self.n += len(recs)

    sink_box: list[Null] = []

    @component(Spec("mem", "bench source", []))
    def mem(cfg, ctx):
        return Mem(ctx)

    @component(Spec("discard", "bench sink", []))
    def null(cfg, ctx):
        s = Null()
        sink_box.append(s)
        return s

    reg.register("source", "mem", mem)
    reg.register("sink", "discard", null)
    procs = {"plugin threshold": "{threshold: {field: t, above: 20}}",
             "same class built in": "{threshold_builtin: {field: t, above: 20}}",
             "built-in filter": "{filter: {field: t, gt: 20}}"}
    times: dict[str, list[float]] = {k: [] for k in procs}
    for _ in range(runs):
        for name, proc in procs.items():
            cfg = load_config(text=f"""
sources: {{s: {{mem: {{}}}}}}
sinks: {{out: {{discard: {{}}, batch: {{size: 1000, linger: 0ms}}}}}}
pipelines: {{p: {{from: s, processors: [{proc}], to: out, batch: {{size: 1000, linger: 0ms}}}}}}
""", env={}, registry=reg)
            e = Engine(cfg, registry=reg)
            sink_box.clear()
            go.clear()
            e.start()
            t0 = time.perf_counter()
            go.set()  # timed: from the first poll until the sink has every kept record
            deadline = time.monotonic() + 60
            while sink_box[0].n < kept and time.monotonic() < deadline:
                time.sleep(0.0005)
            times[name].append(time.perf_counter() - t0)
            e.stop()
    return {k: n / statistics.median(v) for k, v in times.items()}


def bench_cold_start() -> float:
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "hub.yaml").write_text("""
broker: {host: 127.0.0.1, port: 1883}
sources: {devices: {mqtt: {topics: "edgestream/+/results"}}}
sinks: {out: {file: {path: out.jsonl}}}
pipelines: {p: {from: devices, processors: [{filter: {field: avg, gt: 3}}], to: out}}
""")
        ts = []
        for _ in range(5):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "edgestream_tools.cli", "hub", "check", "-c", f"{d}/hub.yaml"],
                           check=True, capture_output=True, timeout=60)
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts)


def main() -> None:
    rate = bench_mqtt()
    print(f"mqtt source -> passthrough -> file sink, 100 records/message: {rate:,.0f} records/s")
    rates = bench_plugin()
    base = rates["same class built in"]
    for name, r in rates.items():
        print(f"pipeline with {name:<20}: {r:,.0f} records/s ({(base / r - 1) * 100:+.1f}% time vs same class built in)")
    print(f"plugin overhead vs built-in filter: {(rates['built-in filter'] / rates['plugin threshold'] - 1) * 100:+.1f}%")
    print(f"edgestream hub check cold start: {bench_cold_start() * 1000:.0f} ms (median of 5)")


if __name__ == "__main__":
    main()
