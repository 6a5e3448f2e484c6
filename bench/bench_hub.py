"""Hub engine: throughput, latency, memory, cold start and plugin overhead.

Every MQTT measurement runs the receiving side in a child process (so neither
the publisher nor this harness shares its GIL or inflates its RSS) against a
real mosquitto on a free loopback port, with agents' batched ``results``
messages (100 items each, the payloads the shared ``Encoder`` writes):

1. Intake, records/s, as ratios measured side by side in one run: the hub
   (``HubService`` on a config file, as ``edgestream hub run`` runs it: MQTT
   source -> passthrough -> file sink) against bare paho subscribers on the
   same broker and payloads, in interleaved rounds (median of each), with
   four publisher processes sending a burst (each device's messages from one
   publisher, in order): 300K records in 100-item messages against a
   subscriber that ``json.loads`` each payload, and 1-item messages (what
   agents send today) against one that only counts them. Timed from the
   publishers' start until the child has every record (the hub: in the file).
   Beside it, each side's CPU per record (its process, all threads, over the
   run): on a machine whose cores the publishers and the broker share, this
   ratio moves less with the load than the wall-clock one.
2. Latency, publish -> record written by the file sink (``write`` returned),
   at a low message rate so queues are empty: p50/p99 per message (the time
   its last record was written), for 100-record and 1-record messages; the
   bare subscriber's publish -> ``on_message`` is the floor. The first
   ``WARMUP_MESSAGES`` of each run are left out (connection warm-up).
3. Memory: the hub child's VmRSS once started and its peak (VmHWM) over the
   throughput run, read from ``/proc/self/status`` in the child.
4. Cold start: ``edgestream hub check`` on a config with SQL against
   ``python -c pass``, interleaved, the ratio of each pair (median of 11): with
   the query's verdict remembered and with it compiled; and process start ->
   subscribed at the broker for the hub child.
5. Plugin processor overhead: the example plugin's ``threshold`` processor
   loaded from its entry point, against the same class registered as a
   built-in, and against the built-in ``filter`` (gt), each driven through the
   engine (in-memory source -> processor -> null sink); medians of
   interleaved runs.

``python -m bench.bench_hub`` prints everything (``... intake cold`` only those
parts: intake, latency, stages, cold, plugin); ``--child ...`` is a receiving
side or a publisher (internal).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.report import figure

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_DIR = str(ROOT / "tests" / "hub" / "plugin_example")
CHILD_DEADLINE_S = 90.0  # a child gives up (and reports what it got) after this long
# Latency runs leave out their first messages: on a fresh connection the first ~6 take 5-40 ms
# whatever the receiver is (a bare paho subscriber too): TCP/broker warm-up, not the hub.
WARMUP_MESSAGES = 10
LATENCY_ROUNDS = 3
SECTION = "Hub end to end (MQTT, real mosquitto)"

# The hub config every MQTT measurement runs: default queues (10000 records) and batch sizes
# (500), batches handed on as soon as they are taken (linger 0: under load batches fill by
# themselves, see docs/hub.md).
HUB_YAML = """
broker: {{host: 127.0.0.1, port: {port}}}
sources:
  devices: {{mqtt: {{topics: "edgestream/+/results", qos: 0, client_id: bench-hub}}}}
sinks:
  out: {{file: {{path: {out}}}, batch: {{linger: {linger}}}}}
pipelines:
  p: {{from: devices, processors: [passthrough: {{}}], to: out, batch: {{linger: {linger}}}}}
"""


# -- the receiving side (child process) --

def _mem_kb() -> dict[str, int]:
    """VmRSS and VmHWM (peak) of this process in KiB."""
    out: dict[str, int] = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line[:5]] = int(line.split()[1])
    except OSError:  # not Linux: ru_maxrss is the peak in KiB there too (bytes on macOS)
        import resource

        out["VmHWM"] = out["VmRSS"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return out


def _say(**kw: Any) -> None:
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()


def _child_hub(cfg_path: str, total: int, per: int, track: bool) -> None:
    from edgestream_hub.connectors.mqtt import MqttSource
    from edgestream_hub.service import HubService

    svc = HubService(cfg_path).start()
    eng = svc.engine
    assert eng is not None
    src = eng.sources["devices"].source
    assert isinstance(src, MqttSource)
    written: dict[int, float] = {}  # message index -> when its last record was written (track)
    got = [0]
    finished = threading.Event()
    sink = eng.sinks["out"].sink
    orig = sink.write

    # the run ends when the sink's write returns the last record, found as the bare subscriber finds its
    # last message (an event, not polling the metrics: a scrape would take the hub's CPU)
    def write(records: list[dict[str, Any]]) -> Any:
        rejected = orig(records)
        if track:
            t = time.monotonic()
            for r in records:
                written[r["seq"] // per] = t
        got[0] += len(records) - len(rejected or ())
        if got[0] >= total:
            finished.set()
        return rejected

    sink.write = write  # type: ignore[method-assign]  # counts (and times) each write
    src.subscribed.wait(20)
    _say(ready=time.monotonic(), mem=_mem_kb(), cpu=time.process_time())
    finished.wait(CHILD_DEADLINE_S)
    done, cpu = time.monotonic(), time.process_time()
    count = eng.metrics.value("edgestream_sink_records_total", component="out")
    _say(done=done, count=count, mem=_mem_kb(), written=written, cpu=cpu)
    svc.stop()


def _child_paho(port: int, total: int, per: int, parse: bool) -> None:
    import paho.mqtt.client as mqtt

    got = [0]
    arrived: dict[int, float] = {}
    finished = threading.Event()
    subscribed = threading.Event()

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        n = len(json.loads(msg.payload)["items"]) if parse else per
        arrived[got[0] // per] = time.monotonic()
        got[0] += n
        if got[0] >= total:
            finished.set()

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-paho")
    c.on_message = on_message
    c.on_connect = lambda cl, u, f, rc, p=None: cl.subscribe("edgestream/+/results", 0)
    c.on_subscribe = lambda *a: subscribed.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    subscribed.wait(20)
    _say(ready=time.monotonic(), mem=_mem_kb(), cpu=time.process_time())
    finished.wait(CHILD_DEADLINE_S)
    _say(done=time.monotonic(), count=got[0], mem=_mem_kb(), written=arrived, cpu=time.process_time())
    c.disconnect()
    c.loop_stop()


def _child_publisher(port: int, path: str) -> None:
    """Publish the messages pickled at ``path`` (QoS 0) when stdin says go; report when all are sent."""
    import pickle

    import paho.mqtt.client as mqtt

    with open(path, "rb") as f:
        data: list[tuple[str, bytes]] = pickle.load(f)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.connect("127.0.0.1", port)
    c.loop_start()
    for _ in range(2000):  # publishing before the CONNACK would queue (and delay) the first messages
        if c.is_connected():
            break
        time.sleep(0.005)
    _say(ready=time.monotonic())
    sys.stdin.readline()
    info = None
    for topic, p in data:
        info = c.publish(topic, p, qos=0)
    if info is not None:
        info.wait_for_publish(CHILD_DEADLINE_S)
    _say(sent=time.monotonic())
    c.disconnect()
    c.loop_stop()


def child_main(argv: list[str]) -> None:
    kind = argv[0]
    if kind == "publisher":
        _child_publisher(int(argv[1]), argv[2])
    elif kind == "hub":
        _child_hub(argv[1], int(argv[2]), int(argv[3]), argv[4] == "1")
    else:
        _child_paho(int(argv[1]), int(argv[2]), int(argv[3]), kind == "paho-json")


# -- the harness --

def payloads(messages: int, per: int, devices: int) -> list[tuple[str, bytes]]:
    """``messages`` results messages of ``per`` items, round robin over ``devices``; item seqs
    run on per device, so seq // per is the message index when ``devices`` is 1."""
    from edgestream_shared.encoder import Encoder

    out = []
    for m in range(messages):
        dev = m % devices
        e = Encoder(f"dev-{dev}", 1, 16384)
        e.begin(b"results")
        base = (m // devices) * per
        for i in range(per):
            e.add_result(base + i, b"temp", b"w10s", 0, 10_000, (b"count", b"avg", b"min", b"max"),
                         (10, 21.5, 20.0, 23.0))
        out.append((f"edgestream/dev-{dev}/results", bytes(e.finish())))
    return out


def _publishers(port: int, d: str, data: list[tuple[str, bytes]], n: int) -> list[subprocess.Popen[str]]:
    """``n`` publisher processes, connected and waiting for a line on stdin; each device's messages go to one
    of them (in order), so sequence numbers arrive in order per device."""
    import pickle

    shares: list[list[tuple[str, bytes]]] = [[] for _ in range(n)]
    for topic, p in data:
        shares[int(topic.split("/")[1].rsplit("-", 1)[1]) % n].append((topic, p))
    procs = []
    for i, share in enumerate(shares):
        path = Path(d) / f"pub{i}.pickle"
        with open(path, "wb") as f:
            pickle.dump(share, f)
        procs.append(subprocess.Popen([sys.executable, "-m", "bench.bench_hub", "--child", "publisher", str(port),
                                       str(path)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      text=True))
    for pr in procs:
        assert pr.stdout is not None
        json.loads(pr.stdout.readline())
    return procs


def _reap(procs: list[subprocess.Popen[str]]) -> None:
    """Kill whichever of ``procs`` still runs (a run that failed half-way), and wait for it."""
    for pr in procs:
        if pr.poll() is None:
            pr.kill()
            pr.wait(10)


def run_child(kind: str, port: int, d: str, data: list[tuple[str, bytes]], per: int, rate: float | None = None,
              linger: str = "0ms", track: bool = False, publishers: int = 0) -> dict[str, Any]:
    """Start a receiving child, publish ``data`` (all at once, or ``rate`` messages/s; from ``publishers``
    processes at once when given), collect its report."""
    import paho.mqtt.client as mqtt

    total = len(data) * per
    if kind == "hub":
        out = Path(d) / "out.jsonl"
        out.unlink(missing_ok=True)
        # each run starts afresh: the last run's checkpoint (state, on by default) holds the sequence
        # positions of these same payloads, so a resumed hub would drop them all as duplicates
        shutil.rmtree(Path(d) / ".edgestream", ignore_errors=True)
        cfg = Path(d) / "hub.yaml"
        cfg.write_text(HUB_YAML.format(port=port, out=out, linger=linger))
        args = ["hub", str(cfg), str(total), str(per), "1" if track else "0"]
    else:
        args = [kind, str(port), str(total), str(per)]
    t_spawn = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "bench.bench_hub", "--child", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    pubs: list[subprocess.Popen[str]] = []
    try:
        ready = json.loads(proc.stdout.readline())
        sent: list[float] = []
        if publishers:
            pubs = _publishers(port, d, data, publishers)
            t0 = time.monotonic()
            for pr in pubs:
                assert pr.stdin is not None
                pr.stdin.write("go\n")
                pr.stdin.flush()
            rep = json.loads(proc.stdout.readline())
            for pr in pubs:
                pr.wait(30)
        else:
            pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
            pub.connect("127.0.0.1", port)
            pub.loop_start()
            for _ in range(2000):  # publishing before the CONNACK would queue (and delay) the first messages
                if pub.is_connected():
                    break
                time.sleep(0.005)
            t0 = time.monotonic()
            for i, (topic, p) in enumerate(data):
                if rate:
                    wait = t0 + i / rate - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                sent.append(time.monotonic())
                pub.publish(topic, p, qos=0)
            rep = json.loads(proc.stdout.readline())
            pub.loop_stop()
            pub.disconnect()
        proc.wait(30)
    finally:
        _reap([proc, *pubs])
    rep["start_s"] = ready["ready"] - t_spawn
    rep["mem_ready"] = ready["mem"]
    rep["rate"] = rep["count"] / (rep["done"] - t0)
    rep["cpu_s"] = rep["cpu"] - ready["cpu"]  # the receiving process's CPU (all threads) over the run
    written = rep.pop("written")
    if sent:
        rep["by_message"] = {int(i): (t - sent[int(i)]) * 1000 for i, t in written.items()}
        rep["latency_ms"] = sorted(v for i, v in rep["by_message"].items() if i >= WARMUP_MESSAGES)
    if rep["count"] < total:
        print(f"  {kind}: only {rep['count']:.0f} of {total} records arrived")
    return rep


def pct(xs: list[float], p: float) -> float:
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


#: the intake runs: name -> (messages, items per message, the bare subscriber the hub is compared with)
INTAKE = {"100-item messages": (3000, 100, "paho-json"), "1-item messages": (30_000, 1, "paho-count")}
PUBLISHERS = 4
DEVICES = 8


def bench_intake(rounds: int = 3) -> dict[str, dict[str, Any]]:
    """Hub and bare subscriber records/s on the same bursts, in interleaved rounds: per run of ``INTAKE``,
    the median rate of each and the ratio of every round (hub / bare, same round)."""
    from edgestream_tools.broker import Mosquitto

    res: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as d:
        broker = Mosquitto(Path(d)).start()
        try:
            for name, (messages, per, bare) in INTAKE.items():
                data = payloads(messages, per, DEVICES)
                rates: dict[str, list[float]] = {"hub": [], bare: []}
                cpu: dict[str, list[float]] = {"hub": [], bare: []}
                hub_runs = []
                for _ in range(rounds):
                    for kind in rates:
                        r = run_child(kind, broker.port, d, data, per, publishers=PUBLISHERS)
                        rates[kind].append(r["rate"])
                        cpu[kind].append(r["cpu_s"] / r["count"] * 1e6)
                        if kind == "hub":
                            hub_runs.append(r)
                res[name] = {"bare": bare, "records": messages * per, "hub_runs": hub_runs, "rate runs": rates,
                             "rates": {k: statistics.median(v) for k, v in rates.items()},
                             "ratios": sorted(h / b for h, b in zip(rates["hub"], rates[bare])),
                             "cpu_us": {k: statistics.median(v) for k, v in cpu.items()},
                             "cpu ratios": sorted(b / h for h, b in zip(cpu["hub"], cpu[bare]))}
        finally:
            broker.stop()
    return res


def bench_latency() -> dict[str, Any]:
    """Publish -> written latency at low rates (one publisher in this process), and linger 50ms's rate."""
    from edgestream_tools.broker import Mosquitto

    res: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        broker = Mosquitto(Path(d)).start()
        try:
            res["linger50"] = run_child("hub", broker.port, d, payloads(2000, 100, 10), 100, linger="50ms")["rate"]
            one = payloads(400, 1, 1)
            hundred = payloads(300, 100, 1)
            res["lat"] = {}  # name -> one sorted list of latencies per round
            for _ in range(LATENCY_ROUNDS):
                for name, (kind, msgs, per, linger) in {
                    "hub, 100-record messages at 100 msg/s": ("hub", hundred, 100, "0ms"),
                    "hub, 1-record messages at 200 msg/s": ("hub", one, 1, "0ms"),
                    "hub, 100-record messages, linger 50ms": ("hub", hundred[:100], 100, "50ms"),
                    "bare paho + json.loads, 100-record messages": ("paho-json", hundred, 100, "0ms"),
                }.items():
                    rate = 200 if per == 1 else 100
                    res["lat"].setdefault(name, []).append(run_child(kind, broker.port, d, msgs, per, rate=rate,
                                                                     linger=linger, track=True)["latency_ms"])
        finally:
            broker.stop()
    return res


def bench_stages(messages: int = 500, per: int = 100, runs: int = 5) -> dict[str, float]:
    """CPU time per record of each stage of the MQTT -> file path, one thread, best of ``runs``."""
    from edgestream_hub.components import ComponentContext
    from edgestream_hub.connectors.files import FileSink
    from edgestream_hub.wire import SeqTracker, WireDecoder
    from edgestream_shared.decoder import decode

    data = payloads(messages, per, 10)
    n = messages * per

    def best(fn: Any) -> float:
        ts = []
        for _ in range(runs):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return min(ts) / n * 1e6

    def loads_all() -> None:
        for _, p in data:
            json.loads(p)

    def decode_all() -> None:
        for _, p in data:
            decode(p)

    wd = WireDecoder()
    records: list[dict[str, Any]] = []

    def flatten_all() -> None:
        wd.tracker = SeqTracker()  # a fresh tracker: every run sees the same in-order stream
        records.clear()
        for topic, p in data:
            records.extend(wd.decode(p, topic))

    loads = best(loads_all)
    checked = best(decode_all)
    flat = best(flatten_all)
    with tempfile.TemporaryDirectory() as d:
        sink = FileSink({"path": f"{d}/out.jsonl", "format": "auto", "columns": None, "rotate_size": None,
                         "rotate_interval": None, "keep": 0, "fsync": False},
                        ComponentContext("sink", "out", "out", base_dir=d))
        sink.open()
        write = best(lambda: [sink.write(records[i:i + 500]) for i in range(0, n, 500)])
        sink.close()
    return {"json.loads": loads, "wire checks (shared decoder)": checked - loads,
            "flatten + sequence tracking (hub)": flat - checked, "file sink: JSON encode + write": write}


def bench_device_feed(messages: int = 2000, runs: int = 9) -> dict[int, float]:
    """What feeding the device registry adds to the ingest path: CPU us per message, by records per message
    (``Ingest.payload`` with a ``devices`` section's feed minus without, one thread, best of ``runs``)."""
    from edgestream_hub.components import ComponentContext
    from edgestream_hub.devices import DeviceFeed, DeviceRegistry
    from edgestream_hub.ingest import Ingest

    class _Service:
        def __init__(self) -> None:
            self.registry = DeviceRegistry(1000, {"src": "mqtt"})

    out = {}
    for per in (1, 100):
        data = payloads(messages, per, 10)

        def once(feed: Any, data: list[tuple[str, bytes]] = data) -> float:
            ing = Ingest(ComponentContext("source", "src", "src", devices=feed), "wire")
            t0 = time.perf_counter()
            for topic, p in data:
                ing.payload(p, "bench", topic)
            return time.perf_counter() - t0

        feed = DeviceFeed()
        feed.service = _Service()
        with_feed, without = [], []
        for _ in range(runs):  # interleaved, so a slow spell of the machine hits both
            with_feed.append(once(feed))
            without.append(once(None))
        out[per] = (min(with_feed) - min(without)) / messages * 1e6
    return out


def bench_plugin(n: int = 500_000, runs: int = 7) -> dict[str, list[float]]:
    """Records/s of each processor, one value per interleaved round."""
    from edgestream_hub.components import PollingSource, Sink
    from edgestream_hub.config import load_config
    from edgestream_hub.engine import Engine
    from edgestream_hub.registry import Registry, component
    from edgestream_hub.spec import Spec

    sys.path.insert(0, PLUGIN_DIR)
    reg = Registry.default(paths=[PLUGIN_DIR])  # threshold comes from its entry point
    import edgestream_plugin_example as ex

    reg.register("processor", "threshold_builtin", ex.threshold, spec=Spec("threshold_builtin", "same code",
                                                                           ex.threshold.spec.fields))
    records: list[dict[str, Any]] = [{"device": "d", "t": float(i % 40), "seq": i} for i in range(n)]
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
    state_dir = tempfile.mkdtemp(prefix="bench-plugin-")  # the engines' checkpoints, not the working folder's
    for _ in range(runs):
        for name, proc in procs.items():
            cfg = load_config(base_dir=state_dir, text=f"""
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
    shutil.rmtree(state_dir, ignore_errors=True)
    return {k: [n / t for t in v] for k, v in times.items()}


CHECK_YAML = """
broker: {host: 127.0.0.1, port: 1883}
sources: {devices: {mqtt: {topics: "edgestream/+/results"}}}
sinks: {out: {file: {path: out.jsonl}}}
pipelines:
  p:
    from: devices
    processors:
      - filter: {field: avg, gt: 3}
      - sql: {query: "SELECT device, sensor, count(*) AS n, avg(avg) AS avg FROM devices
                      GROUP BY device, sensor, TUMBLINGWINDOW(ss, 10)"}
    to: out
"""


def _run_timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one child process."""
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{argv} failed")
    return wall, usage.ru_utime + usage.ru_stime


def bench_cold_start(runs: int = 11) -> dict[str, Any]:
    """``edgestream hub check`` on a config with SQL against ``python -c pass``, interleaved: with the query's
    verdict remembered (``edgestream_hub.checkcache``; a first run wrote it) and without (compiled: sqlglot
    imported). Medians of wall time and CPU time, and the ratio of each pair of runs (the same moment of a
    noisy machine). Bytecode is written and read as an installed hub's is (PYTHONDONTWRITEBYTECODE unset)."""
    import shutil

    exe = shutil.which("edgestream", path=str(Path(sys.executable).parent)) or "edgestream"
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "hub.yaml").write_text(CHECK_YAML)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["EDGESTREAM_CACHE_DIR"] = str(Path(d) / "cache")
        check = [exe, "hub", "check", "-c", f"{d}/hub.yaml"]
        _run_timed(check, env)  # writes the verdict (and any stale bytecode)
        envs = {"check": env, "check, compiled": {**env, "EDGESTREAM_CACHE_DIR": "off"}, "pass": env}
        cmds = {"check": check, "check, compiled": check, "pass": [sys.executable, "-c", "pass"]}
        wall: dict[str, list[float]] = {k: [] for k in cmds}
        cpu: dict[str, list[float]] = {k: [] for k in cmds}
        for _ in range(runs):
            for k, argv in cmds.items():
                w, c = _run_timed(argv, envs[k])
                wall[k].append(w)
                cpu[k].append(c)
    out: dict[str, Any] = {}
    for k in ("check", "check, compiled"):
        out[k] = {"wall": statistics.median(wall[k]), "cpu": statistics.median(cpu[k]), "walls": wall[k],
                  "ratios": sorted(c / p for c, p in zip(wall[k], wall["pass"])),
                  "cpu ratios": sorted(c / p for c, p in zip(cpu[k], cpu["pass"]))}
    out["pass"] = {"wall": statistics.median(wall["pass"]), "cpu": statistics.median(cpu["pass"]),
                   "walls": wall["pass"]}
    return out


def _spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):.2f} (spread {min(xs):.2f}-{max(xs):.2f}, n={len(xs)})"


def main_intake() -> None:
    res = bench_intake()
    print(f"MQTT intake, hub / bare paho subscriber, {PUBLISHERS} publisher processes, {DEVICES} devices, "
          "interleaved rounds (hub: MQTT -> passthrough -> file sink):")
    for name, r in res.items():
        rates = r["rates"]
        what = "+ json.loads each payload" if r["bare"] == "paho-json" else "counting messages"
        print(f"  {name}, {r['records']:,} records: hub {rates['hub']:,.0f} records/s, bare subscriber ({what}) "
              f"{rates[r['bare']]:,.0f} records/s: ratio {_spread(r['ratios'])}")
        runs = r["rate runs"]
        target = ">= 100000" if name.startswith("100") else None
        figure(SECTION, f"hub records/s, {name} (MQTT -> passthrough -> file)", runs["hub"], "records/s",
               target=target, echo=False)
        figure(SECTION, f"bare subscriber records/s, {name} ({what})", runs[r["bare"]], "records/s", echo=False)
        figure(SECTION, f"hub intake, {name} burst / bare paho subscriber {what} (same round)", r["ratios"], "ratio",
               echo=False)
        figure(SECTION, f"hub intake, {name}: records per CPU second, hub / bare (same round)", r["cpu ratios"],
               "ratio", echo=False)
        us = r["cpu_us"]
        print(f"    CPU per record (the receiving process, all threads): hub {us['hub']:.2f} us, bare "
              f"{us[r['bare']]:.2f} us: records per CPU second, hub / bare {_spread(r['cpu ratios'])}")
    runs = [x for r in res.values() for x in r["hub_runs"]]
    print(f"hub process memory: {statistics.median(x['mem_ready']['VmRSS'] for x in runs) / 1024:.1f} MiB RSS "
          f"started, peak {max(x['mem']['VmHWM'] for x in runs) / 1024:.1f} MiB (VmHWM) over the intake runs")
    print(f"hub run start -> subscribed at the broker: {statistics.median(x['start_s'] for x in runs) * 1000:.0f} ms "
          f"(median of {len(runs)})")


def main_latency() -> None:
    m = bench_latency()
    print(f"hub with linger 50ms, 100-record messages from one publisher: {m['linger50']:,.0f} records/s (one run)")
    print("latency, publish -> last record of the message written (ms):")
    for name, rounds in m["lat"].items():
        xs = sorted(x for r in rounds for x in r)
        print(f"  {name:<47}: p50 {pct(xs, 50):6.2f}  p99 {pct(xs, 99):6.2f}  max {max(xs):6.2f}  (n={len(xs)})")
        under = "< 1" if name.startswith("hub") and "linger" not in name else None
        for p in (50, 99):
            figure(SECTION, f"latency p{p}, {name}", [pct(r, p) for r in rounds], "ms", target=under, echo=False)


def main_stages() -> None:
    st = bench_stages()
    print("CPU per record by stage (one thread, no MQTT, best of 5):")
    for name, us in st.items():
        print(f"  {name:<34}: {us:5.2f} us")
    feed = bench_device_feed()
    print("the device registry's feed (a devices section), added to the ingest path: "
          + ", ".join(f"{us:.1f} us per {per}-record message" for per, us in feed.items()))


def main_cold() -> None:
    c = bench_cold_start()
    p = c["pass"]
    figure(SECTION, "cold start, python -c pass", [x * 1000 for x in p["walls"]], "ms", echo=False)
    for k in ("check", "check, compiled"):
        figure(SECTION, f"cold start, edgestream hub {k} (config with SQL)", [x * 1000 for x in c[k]["walls"]], "ms",
               echo=False)
        figure(SECTION, f"cold start, edgestream hub {k} / python -c pass (same round)", c[k]["ratios"], "ratio",
               echo=False)
    print(f"cold start, python -c pass: {p['wall'] * 1000:.0f} ms wall, {p['cpu'] * 1000:.0f} ms CPU (medians)")
    for k in ("check", "check, compiled"):
        r = c[k]
        what = "the query's verdict remembered" if k == "check" else "the query compiled (no cache: sqlglot)"
        print(f"  edgestream hub check, config with SQL, {what}: {r['wall'] * 1000:.0f} ms wall, "
              f"{r['cpu'] * 1000:.0f} ms CPU: / python -c pass {_spread(r['ratios'])} wall, "
              f"{_spread(r['cpu ratios'])} CPU")


def main_plugin() -> None:
    runs = bench_plugin()
    figure("Costs: plugins on vs off", "plugin processor (entry point) vs the same class built in (same round)",
           [100 * (b / p - 1) for b, p in zip(runs["same class built in"], runs["plugin threshold"])], "% of time",
           target="< 5", echo=False)
    rates = {k: statistics.median(v) for k, v in runs.items()}
    base = rates["same class built in"]
    for name, rt in rates.items():
        print(f"pipeline with {name:<20}: {rt:,.0f} records/s "
              f"({(base / rt - 1) * 100:+.1f}% time vs same class built in)")
    overhead = rates["built-in filter"] / rates["plugin threshold"] - 1
    print(f"plugin overhead vs built-in filter: {overhead * 100:+.1f}%")


PARTS = {"intake": main_intake, "latency": main_latency, "stages": main_stages, "cold": main_cold,
         "plugin": main_plugin}


def main(parts: list[str] | None = None) -> None:
    """Every part, or the ones named (``python -m bench.bench_hub intake cold``)."""
    for name in parts or list(PARTS):
        PARTS[name]()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main(sys.argv[2:])
    else:
        main(sys.argv[1:])
