"""The agent link under the real MicroPython against a real mosquitto on loopback.

Prints, on the esp32 heap (100 KB) of the board build (32-bit, as ESP32 and
RP2040: ``edgestream_tools.boardbuild``), per profile: ``frozen`` (the agent
frozen into the firmware: code and interned names in flash) and ``mpy`` (its
``.mpy -O3`` files on a stock firmware: code and names on the heap too):
- the import cost of the modules an MQTT agent keeps loaded, and of what a
  config message loads on top for a moment;
- heap after start and the lowest free heap during a run (``heap_free`` of
  the health messages, after gc.collect()), for the link tests' config (one
  sim sensor, 100 ms windows, MQTT QoS 1) with an outage of the broker, and
  for the demo's config (``edgestream demo``: two sensors, four filters);
- the transient cost of a remote config: the free heap a valid config
  message needs, found by holding a ballast block of growing size right
  after start (the message is applied, acked, while it still fits), and the
  heap free again after it;
- the outage figures: results produced, delivered (unique seqs at a paho
  subscriber), dropped (agent counter and seqs missing at the hub), resent
  duplicates, and the scheduler's worst loop lag during the run;
- reconnect: with the default backoff (250 ms doubling to a 3 s cap, each
  wait a random b/2..b), the time from the broker listening again after an
  8 s outage to the first new result at a subscriber, over a few outages;
- results per message for the demo's two sensors (windows that close
  together share one message).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "agent")]  # the imports below need it (E402)

from linktools import Subscriber, finish, start_micropython, wait_until  # noqa: E402
from mosquitto import Mosquitto  # noqa: E402
from seqcheck import SeqCheck  # noqa: E402

from bench.report import figure  # noqa: E402
from edgestream_shared.decoder import decode  # noqa: E402
from edgestream_shared.encoder import encode_config  # noqa: E402
from edgestream_tools import micropython as mp  # noqa: E402
from edgestream_tools.demo import AGENT as DEMO  # noqa: E402

RUN = "import sys\nfrom edgestream_agent.main import _cli\n_cli()\n"
# micropython.qstr_info() prints the interned names on the heap:
# "qstr pool: n_pool=.., n_qstr=.., n_str_data_bytes=.., n_total_bytes=.."
IMPORTS = r"""
import gc, micropython
gc.collect()
a = gc.mem_alloc()
# what an MQTT agent with one sim sensor and a tumbling window keeps loaded
import edgestream_agent.main, edgestream_agent.agent, edgestream_agent.pipeline
import edgestream_agent.tumbling_window, edgestream_agent.scheduler, edgestream_agent.sources.sim
import edgestream_agent.link, edgestream_agent.mqtt_transport, edgestream_agent.mqtt
gc.collect()
b = gc.mem_alloc()
micropython.qstr_info()
# what a config message from the hub loads on top, for a moment
import edgestream_agent.wire_in, edgestream_agent.remote_config, edgestream_agent.config
import edgestream_agent.reconfig
gc.collect()
micropython.qstr_info()
print(b - a, gc.mem_alloc() - b)
"""
# Starts the agent (main.main) and, at its first scheduler step, holds a
# ballast of argv[3] bytes and hands the config message in argv[2] to the
# link as a transport does (Link.inbox), for the link's own task
# (Link.poll); the probe plays the network (the transport is up, the ack
# is taken as sent). Prints the free heap before, whether it was applied,
# and the free heap once the message is done.
RC_PROBE = r"""
import gc, sys
import edgestream_agent.main
from edgestream_agent.scheduler import Scheduler
from edgestream_agent.link import Link
links = []
_init = Link.__init__
def init(self, *a, **k):
    links.append(self)
    _init(self, *a, **k)
Link.__init__ = init
_step = Scheduler.step
done = []
def step(self):
    if not done:
        done.append(1)
        lk = links[0]
        lk.tx.up = lambda: True
        lk.tx.control = lambda kind, payload: True
        lk.tx.send = lambda payload, dup=False: None
        with open(sys.argv[2], "rb") as f:
            msg = f.read()
        gc.collect()
        free = gc.mem_free()
        ballast = bytearray(int(sys.argv[3])) if int(sys.argv[3]) else None
        lk.inbox(msg, "config")
        msg = None
        lk.poll()
        ballast = None
        gc.collect()
        print("RC", free, gc.mem_free(), lk.cfg_applied)
    return _step(self)
Scheduler.step = step
sys.modules["edgestream_agent.main"].main(sys.argv[1], 300)
"""


def config(port: int, buffer_bytes: int) -> dict:
    return {"device": "bench1", "version": 1,
            "sensors": [{"name": "temp", "period_ms": 10, "source": {"type": "sim"},
                         "windows": [{"name": "w", "size_ms": 100, "aggregates": ["count", "avg", "max"]}]}],
            "transport": {"type": "mqtt", "health_ms": 500, "poll_ms": 5, "buffer_bytes": buffer_bytes,
                          "max_message": 256,
                          "mqtt": {"host": "127.0.0.1", "port": port, "backoff_min_ms": 100,
                                   "backoff_max_ms": 400, "rx_bytes": 2048, "tx_bytes": 2048}}}


def demo_config(port: int) -> dict:
    return dict(DEMO, transport={"type": "mqtt", "health_ms": 500, "mqtt": {"host": "127.0.0.1", "port": port}})


PROFILES = ("frozen", "mpy")
SECTION = "Agent link (MicroPython, real mosquitto)"


def rc_need(work: Path, cfg: dict, profile: str) -> tuple[int, int, int] | None:
    """(free heap after start, free heap a valid config message needs, free after it), esp32 heap."""
    (work / "rc.json").write_text(json.dumps(cfg))
    new = json.loads(json.dumps(cfg))
    new["sensors"][0]["windows"][0]["size_ms"] = 300
    new["version"] = cfg.get("version", 0) + 1
    (work / "rc.msg").write_bytes(encode_config(cfg["device"], new["version"], new))
    (work / "rc.py").write_text(RC_PROBE)

    def probe(ballast: int) -> tuple[int, int, bool] | None:
        (work / "rc.json").write_text(json.dumps(cfg))  # (an applied config is saved over it)
        p = mp.run([str(work / "rc.py"), str(work / "rc.json"), str(work / "rc.msg"), str(ballast)],
                   board="esp32", check=False, profile=profile)
        for line in p.stdout.decode().splitlines():
            if line.startswith("RC "):
                _, free, after, applied = line.split()
                return int(free), int(after), applied == "1"
        return None

    first = probe(0)
    if first is None or not first[2]:
        return None
    lo, hi = 0, first[0]
    for _ in range(12):  # bounded: ~12 runs of ~0.5 s
        if hi - lo <= 256:
            break
        mid = (lo + hi) // 2
        r = probe(mid)
        if r is not None and r[2]:
            lo = mid
        else:
            hi = mid
    return first[0], first[0] - lo, first[1]


def run_agent(work: Path, broker, cfg: dict, dev: str, seconds: float, profile: str, outage_s: float = 0.0):
    sub = Subscriber(broker, [f"edgestream/{dev}/#"], client_id=f"bench-{dev}", clean=False)
    try:
        (work / f"{dev}.json").write_text(json.dumps(cfg))
        (work / "run.py").write_text(RUN)
        agent = start_micropython(work / "run.py", work / f"{dev}.json", int(seconds * 1000), board="esp32",
                                  profile=profile)
        wait_until(lambda: len(sub.on(f"edgestream/{dev}/metrics")) >= 1, 20)
        if outage_s:
            wait_until(lambda: len(sub.on(f"edgestream/{dev}/results")) >= 10, 20)
            broker.stop()
            time.sleep(outage_s)
            broker.start()
        s = json.loads(finish(agent, 60).strip().splitlines()[-1])
        wait_until(lambda: len({it["seq"] for m in sub.on(f"edgestream/{dev}/results") for it in decode(m)["items"]})
                   + s["results_dropped"] >= s["results"], 15)
        check = SeqCheck()
        for m in sub.on(f"edgestream/{dev}/results"):
            check.feed(decode(m))
        rep = check.report(dev, check.boots[dev][0]) if dev in check.boots else None
        health = [decode(m)["metrics"] for m in sub.on(f"edgestream/{dev}/metrics")]
        s["messages"] = len(sub.on(f"edgestream/{dev}/results"))
    finally:
        sub.close()
    return s, rep, health


def reconnect_times(work: Path, profile: str, outages: int = 3, down_s: float = 8.0) -> list[float]:
    """Seconds from the broker listening again to the first new result at a fresh subscriber."""
    broker = Mosquitto(work).start()
    cfg = config(broker.port, 3000)
    for k in ("backoff_min_ms", "backoff_max_ms"):
        del cfg["transport"]["mqtt"][k]
    cfg["transport"]["health_ms"] = 0
    (work / "rc-agent.json").write_text(json.dumps(cfg))
    (work / "run.py").write_text(RUN)
    agent = start_micropython(work / "run.py", work / "rc-agent.json", int((outages * (down_s + 4) + 4) * 1000),
                              board="esp32", profile=profile)
    times = []
    try:
        for i in range(outages):
            probe = Subscriber(broker, ["edgestream/bench1/results"], client_id=f"probe{i}")
            wait_until(lambda p=probe: len(p.on("edgestream/bench1/results")) >= 1, 15)
            probe.close()
            broker.stop()
            time.sleep(down_s)
            broker.start()
            back = time.monotonic()
            sub = Subscriber(broker, ["edgestream/bench1/results"], client_id=f"back{i}")
            if wait_until(lambda s=sub: len(s.on("edgestream/bench1/results")) >= 1, 15, 0.005):
                times.append(time.monotonic() - back)
            sub.close()
    finally:
        agent.kill()
        agent.communicate(timeout=10)
        broker.stop()
    return times


def _heap(health: list[dict]) -> str:
    if not health:
        return "no health messages"
    low = min(m["heap_free"] for m in health)
    return (f"free after start {health[0]['heap_free']:,} B (used {health[0]['heap_used']:,}), "
            f"lowest free during the run {low:,} B ({len(health)} health messages)")


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="edgestream-bench-link-"))
    for profile in PROFILES:
        lines = mp.run(["-c", IMPORTS], board="rp2040", profile=profile).stdout.decode().splitlines()
        code = lines[-1].split()
        pools = [dict(kv.split("=") for kv in ln.split(": ", 1)[1].split(", "))
                 for ln in lines if ln.startswith("qstr")]
        print(f"[{profile}] heap cost of the modules an MQTT agent keeps loaded: {int(code[0]) / 1024:.1f} KB "
              f"({pools[0]['n_qstr']} interned names on the heap, {int(pools[0]['n_total_bytes']) / 1024:.1f} KB "
              f"in {pools[0]['n_pool']} pools); a config message loads {int(code[1]) / 1024:.1f} KB more for a "
              f"moment ({pools[1]['n_qstr']} names)")
    outage_s = 2.0
    for profile in PROFILES:
        pwork = work / profile
        pwork.mkdir()
        broker = Mosquitto(pwork).start()
        try:
            s, rep, health = run_agent(pwork, broker, config(broker.port, 3000), "bench1", 7.0, profile, outage_s)
            demo = demo_config(broker.port)
            demo_s, _, demo_health = run_agent(pwork, broker, demo, demo["device"], 5.0, profile)
        finally:
            broker.stop()
        print(f"[{profile}] link tests' config on the esp32 heap (100 KB): {_heap(health)}, broker outage included")
        if health:
            figure(SECTION, f"{profile}: heap used after start, MQTT agent (esp32 board)",
                   health[0]["heap_used"] / 1024, "KB")
            figure(SECTION, f"{profile}: lowest free heap over a run with a broker outage (esp32 board)",
                   min(m["heap_free"] for m in health) / 1024, "KB", target="> 0")
        print(f"[{profile}] demo config (2 sensors, 4 filters) on the esp32 heap: {_heap(demo_health)}")
        print(f"[{profile}] demo config: {demo_s['results']} results in {demo_s['messages']} messages "
              f"({demo_s['results'] / max(1, demo_s['messages']):.2f} per message)")
        for name, cfg in (("link tests' config", config(1, 3000)), ("demo config", demo_config(1))):
            r = rc_need(work, cfg, profile)
            if r is None:
                print(f"[{profile}] remote config, {name}: refused on the esp32 heap (memory: nack); the agent runs on")
            else:
                free, need, after = r
                print(f"[{profile}] remote config, {name}: applied on the esp32 heap; needs {need:,} B free for a "
                      f"moment (free after start {free:,} B, free again after it {after:,} B)")
        print(f"[{profile}] outage {outage_s:.1f} s of a 7 s run, 10 results/s, buffer 3000 bytes:")
        print(f"  results produced {s['results']}, confirmed by the broker {s['results_sent']}, delivered "
              f"{rep.unique if rep else 0}, dropped {s['results_dropped']} (+ {s['results_dropped_unacked']} evicted "
              f"unconfirmed; missing at the hub {len(rep.missing) if rep else -1}), duplicates "
              f"{len(rep.duplicates) if rep else -1}, resent {s['results_resent']}, reconnects {s['reconnects']}")
        print(f"  loop lag max {s['lag_max_ms']} ms, mean {s['lag_mean_ms']} ms; samples {s['samples']}")
        if rep:
            figure(SECTION, f"{profile}: results delivered through a {outage_s:g} s outage (unique at the hub / "
                   "produced)", 100 * rep.unique / max(1, s["results"]), "%")
        t = reconnect_times(pwork, profile)
        if t:
            figure(SECTION, f"{profile}: broker back -> first new result (default backoff, cap 3 s)", t, "s")
        print(f"[{profile}] reconnect, default backoff (cap 3 s), broker down 8 s: first result "
              + ", ".join(f"{x:.2f}" for x in t) + " s after the broker listened again")


if __name__ == "__main__":
    main()
