"""The agent link under the real MicroPython against a real mosquitto on loopback.

Prints:
- heap with MQTT connected, on the esp32 heap (100 KB): the whole agent (one
  sim sensor, 100 ms windows, MQTT QoS 1) from its compiled (-O3) .mpy
  bundle, after gc.collect(), as its health messages report it: after start
  and the lowest free heap during the run; on the unix port this includes
  the module code, which a board's frozen firmware keeps in flash, so the
  import cost of the modules an MQTT agent keeps loaded is printed apart;
- the outage figures: results produced, delivered (unique seqs at a paho
  subscriber), dropped (agent counter and seqs missing at the hub), resent
  duplicates, and the scheduler's worst loop lag during the run.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "agent")]

from linktools import Subscriber, finish, start_micropython, wait_until  # noqa: E402
from mosquitto import Mosquitto  # noqa: E402

from edgestream_shared.decoder import decode  # noqa: E402
from edgestream_tools import bundle  # noqa: E402
from edgestream_tools import micropython as mp  # noqa: E402
from edgestream_tools.hubcheck import SeqCheck  # noqa: E402

RUN = "import sys\nfrom edgestream_agent.main import _cli\n_cli()\n"
IMPORTS = r"""
import gc
gc.collect()
a = gc.mem_alloc()
# what an MQTT agent with one sim sensor and a tumbling window keeps loaded
import edgestream_agent.main, edgestream_agent.agent, edgestream_agent.pipeline
import edgestream_agent.tumbling_window, edgestream_agent.scheduler, edgestream_agent.sources.sim
import edgestream_agent.link, edgestream_agent.mqtt_transport, edgestream_agent.mqtt
gc.collect()
b = gc.mem_alloc()
# what a config message from the hub loads on top, for a moment
import edgestream_shared.decoder, edgestream_agent.remote_config, edgestream_agent.config
import edgestream_agent.reconfig
gc.collect()
print(b - a, gc.mem_alloc() - b)
"""


def config(port: int, buffer_bytes: int) -> dict:
    return {"device": "bench1", "version": 1,
            "sensors": [{"name": "temp", "period_ms": 10, "source": {"type": "sim"},
                         "windows": [{"name": "w", "size_ms": 100, "aggregates": ["count", "avg", "max"]}]}],
            "transport": {"type": "mqtt", "health_ms": 1000, "poll_ms": 5, "buffer_bytes": buffer_bytes,
                          "max_message": 256,
                          "mqtt": {"host": "127.0.0.1", "port": port, "backoff_min_ms": 100,
                                   "backoff_max_ms": 400, "rx_bytes": 2048, "tx_bytes": 2048}}}


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="edgestream-bench-link-"))
    lib = work / "mpy"
    bundle.build(lib, None, 3)
    code = mp.run(["-c", IMPORTS], board="rp2040", extra_paths=[str(lib)]).stdout.decode().split()
    print(f"import cost of the modules an MQTT agent keeps loaded (.mpy -O3, unix port heap): "
          f"{int(code[0]) // 1024} KB; a config message loads {int(code[1]) // 1024} KB more for a moment")

    broker = Mosquitto(work).start()
    sub = Subscriber(broker, ["edgestream/bench1/#"], client_id="bench-hub", clean=False)
    try:
        (work / "agent.json").write_text(json.dumps(config(broker.port, 3000)))
        (work / "run.py").write_text(RUN)
        outage_s = 2.0
        agent = start_micropython(work / "run.py", work / "agent.json", 7000, board="esp32", lib=lib)
        wait_until(lambda: len(sub.on("edgestream/bench1/results")) >= 10, 20)
        metrics = [decode(m)["metrics"] for m in sub.on("edgestream/bench1/metrics")]
        connected = metrics[0] if metrics else {}
        broker.stop()
        time.sleep(outage_s)
        broker.start()
        s = json.loads(finish(agent, 60).strip().splitlines()[-1])
        wait_until(lambda: len({decode(m)["items"][0]["seq"] for m in sub.on("edgestream/bench1/results")})
                   + s["results_dropped"] >= s["results"], 15)
        check = SeqCheck()
        for m in sub.on("edgestream/bench1/results"):
            check.feed(decode(m))
        rep = check.report("bench1", check.boots["bench1"][0])
        health = [decode(m)["metrics"] for m in sub.on("edgestream/bench1/metrics")]
    finally:
        sub.close()
        broker.stop()
    low = min(health, key=lambda m: m["heap_free"]) if health else {}
    print(f"heap with MQTT connected (esp32 profile, 100 KB), first health message: "
          f"used {connected.get('heap_used', -1):,} B, free {connected.get('heap_free', -1):,} B; "
          f"lowest free during the run (outage included): {low.get('heap_free', -1):,} B "
          f"({len(health)} health messages)")
    print(f"outage {outage_s:.1f} s of a 7 s run, 10 results/s, buffer 3000 bytes:")
    print(f"  results produced {s['results']}, delivered {rep.unique}, dropped {s['results_dropped']} "
          f"(missing at the hub {len(rep.missing)}), duplicates {len(rep.duplicates)}, "
          f"resent {s['results_resent']}, reconnects {s['reconnects']}")
    print(f"  loop lag max {s['lag_max_ms']} ms, mean {s['lag_mean_ms']} ms; samples {s['samples']}")


if __name__ == "__main__":
    main()
