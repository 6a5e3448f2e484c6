"""MQTT intake for a hub of N worker processes: which way of splitting the messages costs least.

Three designs, each against a real mosquitto on a free loopback port, with N = 1 and N = 2
receiving processes (``multiprocessing``, spawned), each of which ``json.loads`` every payload it
keeps and counts its records:

(a) ``shared``: N paho clients in one MQTT 5 shared subscription, ``$share/g/<filter>`` (QoS 1).
    The broker hands each message to one member: no device affinity.
(b) ``hash``: every client subscribes to the whole filter and keeps the messages whose device (the
    topic level ``edgestream/<device>/results``) has ``zlib.crc32(device) % N`` equal to its index,
    dropping the rest before decoding: device affinity, but each message crosses the socket (and is
    sent by the broker) N times.
(c) ``dispatch``: one client subscribes and forwards raw payloads by the same device hash to N
    decoding processes over pipes (``multiprocessing`` connections: length-prefixed bytes): device
    affinity, one receiving process.

The yardstick is ``bare``: one plain subscriber on the filter (MQTT 5 like the others, so the
ratios compare designs, not protocol versions) that decodes everything, run in the same round.

Each run publishes a burst from four publisher processes (``bench_hub``'s publishers: each
device's messages from one of them, in order, QoS 0, so delivery is QoS 0 whatever the
subscription asks): ~300K records in 100-item messages, and 1-item messages. Timed from the
publishers' start until the last record reached a decoding process. Reported per design and N:
records/s, the ratio to ``bare`` in the same round, CPU per record summed over every receiving
process (all threads), the broker's CPU per record, the busiest decoding process's share of the
records, the ceiling (records of the burst / CPU seconds of the busiest process: the rate the
design could reach with a free core per process), and whether device affinity held: in (b) and
(c) every device's messages reached exactly one process, in order of ``seq``; in (a) how many
devices more than one process saw.

The broker, the publishers and the receiving processes share this machine's cores, so the
records/s of N = 2 is not what two free cores would give: CPU per record and the ceiling are the
figures that carry over to a gateway.

``python -m bench.bench_intake`` prints the table; ``--rounds R`` and ``--scale F`` (a fraction of
the message counts) make it shorter.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
import zlib
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench.bench_hub import _publishers, _reap, payloads
from bench.report import figure, note

SECTION = "Hub multi-process intake (MQTT, real mosquitto)"
FILTER = "edgestream/+/results"
SHARED = f"$share/g/{FILTER}"
PUBLISHERS = 4
DEVICES = 64  # enough that a hash over 2 processes splits the records near evenly
#: name -> (messages, items per message)
WORKLOADS = {"100-item messages": (3000, 100), "1-item messages": (30_000, 1)}
#: (design, processes) in the order each round runs them
DESIGNS = [("bare", 1), ("shared", 1), ("shared", 2), ("hash", 1), ("hash", 2), ("dispatch", 1), ("dispatch", 2)]
ROUNDS = 3
RUN_DEADLINE_S = 60.0  # a run ends after this long whatever arrived
STALL_S = 5.0  # ... or when no record arrived for this long
READY_S = 30.0  # a receiving process must be subscribed (or waiting on its pipe) within this


def worker_of(device: bytes, n: int) -> int:
    """The process that owns ``device`` among ``n``: stable across processes and restarts (not ``hash()``)."""
    return zlib.crc32(device) % n


class Tally:
    """What one decoding process kept: records, and per device its messages and whether their seqs rose."""

    def __init__(self) -> None:
        self.records = 0
        self.devices: dict[str, list[Any]] = {}  # device -> [messages, last seq, in order]

    def add(self, payload: bytes) -> None:
        m = json.loads(payload)
        items = m["items"]
        seq = items[0]["seq"]
        d = self.devices.get(m["dev"])
        if d is None:
            d = self.devices[m["dev"]] = [0, -1, True]
        if seq <= d[1]:
            d[2] = False
        d[0] += 1
        d[1] = seq
        self.records += len(items)

    def report(self, role: str, cpu: float) -> dict[str, Any]:
        return {"role": role, "records": self.records, "cpu": cpu,
                "devices": {k: (v[0], v[2]) for k, v in self.devices.items()}}


def _client(port: int, name: str, topic: str, on_message: Any, results: Any) -> Any:
    """A connected MQTT 5 paho client subscribed to ``topic`` (QoS 1); says ``ready`` on ``results``."""
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)

    def on_subscribe(cl: Any, userdata: Any, mid: int, codes: list[Any], props: Any) -> None:
        bad = [str(rc) for rc in codes if rc.is_failure]
        results.put({"ready": name, "error": f"{topic}: {', '.join(bad)}" if bad else None})

    c.on_connect = lambda cl, u, f, rc, p=None: cl.subscribe(topic, 1)
    c.on_subscribe = on_subscribe
    c.on_message = on_message
    c.connect("127.0.0.1", port, clean_start=True)
    c.loop_start()
    return c


def _finish(c: Any, stop: Any) -> None:
    stop.wait(RUN_DEADLINE_S + STALL_S + READY_S)
    c.disconnect()
    c.loop_stop()


def _subscriber(design: str, index: int, n: int, port: int, counts: Any, last: Any, stop: Any,
                results: Any) -> None:
    """Process of (a) ``shared``, (b) ``hash`` or ``bare``: decodes what it keeps, counts in ``counts[index]``."""
    tally = Tally()
    keep: dict[str, bool] = {}  # topic -> ours (b): the hash once per topic, not per message

    def on_message(cl: Any, userdata: Any, msg: Any) -> None:
        if design == "hash":
            ours = keep.get(msg.topic)
            if ours is None:
                ours = keep[msg.topic] = worker_of(msg.topic.split("/", 2)[1].encode(), n) == index
            if not ours:
                return
        tally.add(msg.payload)
        counts[index] = tally.records
        last[index] = time.monotonic()

    topic = SHARED if design == "shared" else FILTER
    c = _client(port, f"intake-{design}-{n}-{index}-{os.getpid()}", topic, on_message, results)
    cpu0 = time.process_time()
    _finish(c, stop)
    results.put(tally.report(f"{design} {index}", time.process_time() - cpu0))


def _dispatcher(n: int, port: int, pipes: list[Connection], stop: Any, results: Any) -> None:
    """The receiving process of (c): forwards each raw payload to the decoder its device hashes to."""
    route: dict[str, Connection] = {}

    def on_message(cl: Any, userdata: Any, msg: Any) -> None:
        conn = route.get(msg.topic)
        if conn is None:
            conn = route[msg.topic] = pipes[worker_of(msg.topic.split("/", 2)[1].encode(), n)]
        conn.send_bytes(msg.payload)

    c = _client(port, f"intake-dispatch-{n}-{os.getpid()}", FILTER, on_message, results)
    cpu0 = time.process_time()
    _finish(c, stop)
    for p in pipes:
        p.close()
    results.put({"role": "dispatcher", "records": 0, "cpu": time.process_time() - cpu0, "devices": {}})


def _decoder(index: int, conn: Connection, counts: Any, last: Any, stop: Any, results: Any) -> None:
    """A decoding process of (c): reads length-prefixed payloads from its pipe until told to stop and drained."""
    tally = Tally()
    results.put({"ready": f"decoder {index}", "error": None})
    cpu0 = time.process_time()
    deadline = time.monotonic() + RUN_DEADLINE_S + STALL_S + READY_S
    while time.monotonic() < deadline:
        if not conn.poll(0.05):
            if stop.is_set():
                break
            continue
        try:
            payload = conn.recv_bytes()
        except EOFError:
            break
        tally.add(payload)
        counts[index] = tally.records
        last[index] = time.monotonic()
    results.put(tally.report(f"decoder {index}", time.process_time() - cpu0))


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``; 0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(design: str, n: int, broker: Any, d: str, data: list[tuple[str, bytes]], per: int) -> dict[str, Any]:
    """One burst of ``data`` through ``design`` with ``n`` processes: rate, CPU, shares and affinity."""
    ctx = mp.get_context("spawn")  # fresh interpreters, as a hub's workers would be
    counts = ctx.Array("q", n, lock=False)
    last = ctx.Array("d", n, lock=False)
    stop = ctx.Event()
    results = ctx.Queue()
    procs = []
    ends: list[Connection] = []
    if design == "dispatch":
        pipes = [ctx.Pipe(duplex=False) for _ in range(n)]
        procs += [ctx.Process(target=_decoder, args=(i, r, counts, last, stop, results)) for i, (r, _) in
                  enumerate(pipes)]
        procs.append(ctx.Process(target=_dispatcher, args=(n, broker.port, [w for _, w in pipes], stop, results)))
        ends = [e for pair in pipes for e in pair]
    else:
        procs += [ctx.Process(target=_subscriber, args=(design, i, n, broker.port, counts, last, stop, results))
                  for i in range(n)]
    total = len(data) * per
    pubs = []
    reports: list[dict[str, Any]] = []
    try:
        for p in procs:
            p.start()
        for e in ends:  # the children hold their own copies now
            e.close()
        for _ in procs:
            ready = results.get(timeout=READY_S)
            if ready["error"]:
                raise RuntimeError(f"{design} N={n}: subscribing was refused: {ready['error']}")
        pubs = _publishers(broker.port, d, data, PUBLISHERS)
        cpu_broker = _cpu_s(broker.proc.pid)
        t0 = time.monotonic()
        for pr in pubs:
            assert pr.stdin is not None
            pr.stdin.write("go\n")
            pr.stdin.flush()
        seen, moved = 0, t0
        while time.monotonic() - t0 < RUN_DEADLINE_S and time.monotonic() - moved < STALL_S:
            now = sum(counts)
            if now >= total:
                break
            if now > seen:
                seen, moved = now, time.monotonic()
            time.sleep(0.01)
        cpu_broker = _cpu_s(broker.proc.pid) - cpu_broker
        stop.set()
        reports = [results.get(timeout=30) for _ in procs]
        for pr in pubs:
            pr.wait(30)
    finally:
        stop.set()
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join(10)
        _reap(pubs)
    got = sum(r["records"] for r in reports)
    if got < total:
        print(f"  {design} N={n}: only {got:,} of {total:,} records arrived", flush=True)
    decoders = [r for r in reports if r["role"] != "dispatcher"]
    return {"rate": got / (max(last) - t0) if got else 0.0, "records": got,
            "cpu_us": sum(r["cpu"] for r in reports) / max(got, 1) * 1e6,
            # the busiest process's CPU per record of the whole burst: 1 / it bounds records/s on free cores
            "ceiling": max(got, 1) / max(max(r["cpu"] for r in reports), 1e-9),
            "broker_us": cpu_broker / max(got, 1) * 1e6,
            "busiest": max(r["records"] for r in decoders) / max(got, 1),
            "affinity": affinity(decoders, expected_messages(data))}


def expected_messages(data: list[tuple[str, bytes]]) -> dict[str, int]:
    """Messages published per device."""
    out: dict[str, int] = {}
    for topic, _ in data:
        dev = topic.split("/", 2)[1]
        out[dev] = out.get(dev, 0) + 1
    return out


def affinity(reports: list[dict[str, Any]], expected: dict[str, int]) -> dict[str, int]:
    """Of the devices: how many more than one process saw, how many reached one process out of order, and
    how many lost messages (the counts are per message, across all processes)."""
    seen: dict[str, list[tuple[int, bool]]] = {}
    for r in reports:
        for dev, (msgs, in_order) in r["devices"].items():
            seen.setdefault(dev, []).append((msgs, in_order))
    return {"split": sum(1 for v in seen.values() if len(v) > 1),
            "out of order": sum(1 for v in seen.values() if not all(o for _, o in v)),
            "short": sum(1 for dev, n in expected.items() if sum(m for m, _ in seen.get(dev, [])) < n)}


def verdict(design: str, n: int, a: dict[str, int], devices: int) -> str:
    """The affinity column: held / broken (and how), or the split count of a design that does not keep it."""
    if design in ("hash", "dispatch") or n == 1:
        bad = [f"{v} {k}" for k, v in a.items() if v and k != "short"]
        return "held" if not bad else "BROKEN: " + ", ".join(bad) + f" of {devices}"
    return f"none: {a['split']} of {devices} devices split"


def bench(rounds: int = ROUNDS, scale: float = 1.0) -> dict[str, dict[tuple[str, int], list[dict[str, Any]]]]:
    """Every design on every workload, ``rounds`` interleaved rounds; per run its figures and its ratio to
    ``bare`` of the same round."""
    from edgestream_tools.broker import Mosquitto

    res: dict[str, dict[tuple[str, int], list[dict[str, Any]]]] = {}
    with tempfile.TemporaryDirectory() as d:
        broker = Mosquitto(Path(d)).start()
        try:
            for name, (messages, per) in WORKLOADS.items():
                data = payloads(max(DEVICES, int(messages * scale)), per, DEVICES)
                runs = res[name] = {k: [] for k in DESIGNS}
                for _ in range(rounds):
                    base = None
                    for design, n in DESIGNS:
                        r = run(design, n, broker, d, data, per)
                        if design == "bare":
                            base = r
                        r["ratio"] = r["rate"] / base["rate"] if base and base["rate"] else float("nan")
                        r["cpu_ratio"] = r["cpu_us"] / base["cpu_us"] if base and base["cpu_us"] else float("nan")
                        runs[(design, n)].append(r)
        finally:
            broker.stop()
    return res


def main(rounds: int = ROUNDS, scale: float = 1.0) -> None:
    cores = os.cpu_count()
    where = (f"mosquitto, {PUBLISHERS} publisher processes and the receiving processes all run on this machine's "
             f"{cores} cores")
    print(f"MQTT intake by design, {DEVICES} devices, {rounds} interleaved rounds; {where}")
    res = bench(rounds, scale)
    med = statistics.median
    for name, runs in res.items():
        messages, per = WORKLOADS[name]
        records = max(DEVICES, int(messages * scale)) * per
        print(f"\n{name}, {records:,} records:")
        print(f"  {'design':<10} {'N':>2} {'records/s':>10} {'/ bare':>7} {'CPU us/rec':>10} {'/ bare':>7} "
              f"{'broker us':>9} {'busiest':>7} {'ceiling/s':>10}  device affinity")
        for (design, n), rs in runs.items():
            a = {k: max(r["affinity"][k] for r in rs) for k in rs[0]["affinity"]}
            row = (f"  {design:<10} {n:>2} {med(r['rate'] for r in rs):>10,.0f} {med(r['ratio'] for r in rs):>7.2f} "
                   f"{med(r['cpu_us'] for r in rs):>10.2f} {med(r['cpu_ratio'] for r in rs):>7.2f} "
                   f"{med(r['broker_us'] for r in rs):>9.2f} {med(r['busiest'] for r in rs):>7.0%} "
                   f"{med(r['ceiling'] for r in rs):>10,.0f}  "
                   f"{verdict(design, n, a, DEVICES)}")
            print(row + (f" ({a['short']} devices short of messages)" if a["short"] else ""), flush=True)
            label = f"{design} N={n}, {name}"
            figure(SECTION, f"{label}: records/s / bare N=1 (same round)", [r["ratio"] for r in rs], "ratio",
                   echo=False)
            figure(SECTION, f"{label}: CPU per record, all receiving processes", [r["cpu_us"] for r in rs], "us",
                   echo=False)
            figure(SECTION, f"{label}: records/s ceiling, 1 / busiest process's CPU per record",
                   [r["ceiling"] for r in rs], "records/s", echo=False)
            if design != "bare":
                note(SECTION, f"{label}: device affinity {verdict(design, n, a, DEVICES)}", echo=False)
    note(SECTION, f"{where}: records/s of N=2 is bounded by the shared cores; CPU per record (receiving processes, "
         "all threads; the broker apart) is what carries over. Publishers send QoS 0, so delivery is QoS 0 "
         "though every subscription asks QoS 1.", echo=False)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(prog="python -m bench.bench_intake", description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=ROUNDS, help=f"interleaved rounds (default {ROUNDS})")
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the message counts (default 1)")
    args = ap.parse_args()
    main(args.rounds, args.scale)
    sys.exit(0)
