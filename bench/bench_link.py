"""The agent link under the real MicroPython against a real mosquitto on loopback.

Prints:
- heap with MQTT connected: the whole agent (one sim sensor, 100 ms windows,
  MQTT QoS 1) from its compiled .mpy bundle, after gc.collect(); on the unix
  port this includes the module code, which a board's frozen firmware keeps
  in flash, so the import cost is printed apart;
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
import edgestream_agent.main, edgestream_agent.agent, edgestream_agent.link, edgestream_agent.mqtt
import edgestream_agent.offline_buffer, edgestream_agent.health, edgestream_agent.remote_config
import edgestream_agent.scheduler, edgestream_shared.decoder
gc.collect()
print(gc.mem_alloc() - a)
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
    bundle.build(lib, None)
    code = mp.run(["-c", IMPORTS], board="rp2040", extra_paths=[str(lib)]).stdout.decode().split()
    print(f"import cost of agent + link modules (.mpy, unix port heap): {int(code[-1]) // 1024} KB")

    broker = Mosquitto(work).start()
    sub = Subscriber(broker, ["edgestream/bench1/#"], client_id="bench-hub", clean=False)
    try:
        (work / "agent.json").write_text(json.dumps(config(broker.port, 3000)))
        (work / "run.py").write_text(RUN)
        outage_s = 2.0
        agent = start_micropython(work / "run.py", work / "agent.json", 7000, board="rp2040", lib=lib)
        wait_until(lambda: len(sub.on("edgestream/bench1/results")) >= 10, 20)
        metrics = [decode(m)["metrics"] for m in sub.on("edgestream/bench1/metrics")]
        connected = metrics[-1] if metrics else {}
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
    finally:
        sub.close()
        broker.stop()
    print(f"heap with MQTT connected (rp2040 profile, 180 KB): used {connected.get('heap_used', -1) // 1024} KB, "
          f"free {connected.get('heap_free', -1) // 1024} KB")
    print(f"outage {outage_s:.1f} s of a 7 s run, 10 results/s, buffer 3000 bytes:")
    print(f"  results produced {s['results']}, delivered {rep.unique}, dropped {s['results_dropped']} "
          f"(missing at the hub {len(rep.missing)}), duplicates {len(rep.duplicates)}, "
          f"resent {s['results_resent']}, reconnects {s['reconnects']}")
    print(f"  loop lag max {s['lag_max_ms']} ms, mean {s['lag_mean_ms']} ms; samples {s['samples']}")


if __name__ == "__main__":
    main()
