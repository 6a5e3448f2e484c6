"""``edgestream demo``: the whole system, end to end, on an embedded default.

1. a private mosquitto on a free loopback port;
2. the hub (``edgestream hub run``) with a streaming SQL pipeline: per device
   and sensor, a 5 s tumbling roll-up of the agent's 1 s window results,
   printed as JSON lines, and every raw window result archived to a file;
3. an agent under the real MicroPython unix port with an ESP32-sized heap,
   running from a compiled ``.mpy`` bundle as on a board: two simulated
   sensors, filters, 1 s tumbling windows, results over MQTT (QoS 1);
4. the agent stops after ``--seconds``; the hub drains, closes the open
   windows and stops. Everything it started is stopped again, also when the
   reader of stdout goes away early (``edgestream demo | head -1``: exit 141).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO, TextIO

from edgestream_tools import bundle, micropython as mp
from edgestream_tools.broker import Mosquitto

AGENT = {
    "device": "demo-1",
    "sensors": [
        {"name": "temp", "period_ms": 100,
         "source": {"type": "sim", "wave": "sine", "offset": 21, "amplitude": 4, "wave_ms": 20000,
                    "noise": 0.2, "seed": 7},
         "filters": [{"range": {"min": -40, "max": 85}}, {"median": 3}],
         "windows": [{"name": "w1s", "size_ms": 1000, "aggregates": ["count", "avg", "min", "max"]}]},
        {"name": "humidity", "period_ms": 250,
         "source": {"type": "sim", "wave": "sine", "offset": 55, "amplitude": 6, "wave_ms": 9000,
                    "noise": 1.5, "seed": 3},
         "filters": [{"calibrate": {"slope": 1.0, "offset": -1.5}}, {"ema": {"alpha": 0.5}}],
         "windows": [{"name": "w1s", "size_ms": 1000, "aggregates": ["count", "avg", "min", "max"]}]},
    ],
}

DEMO_BOARDS = ("esp32", "rp2040")

HUB = """\
broker: {{host: 127.0.0.1, port: {port}}}
hub: {{watch: false, shutdown_timeout: 10s}}
sources:
  devices: {{mqtt: {{topics: ["edgestream/+/results"], qos: 1, client_id: demo-hub}}}}
sinks:
  console: {{stdout: {{}}}}
  archive: {{file: {{path: {work}/results.jsonl}}}}
pipelines:
  rollup:
    from: devices
    processors:
      - sql: >-
          SELECT device, sensor, window_start() AS start, window_end() AS end,
                 count(*) AS windows, sum(count) AS samples,
                 round(avg(avg), 3) AS avg, min(min) AS min, max(max) AS max
          FROM devices
          GROUP BY device, sensor, TUMBLINGWINDOW(ss, 5)
    to: console
  archive:
    from: devices
    to: archive
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=float, default=12.0, help="how long the agent samples (default 12)")
    # not tiny: the demo's MQTT agent starts in 64 KB from .mpy files but has no heap left for its
    # health messages or a remote config (`edgestream agent check` says so); tiny runs serial agents
    p.add_argument("--board", default="esp32", choices=DEMO_BOARDS, help="heap profile of the agent (default esp32)")


def _pump(stream: IO[bytes], out: TextIO, lines: list[str], gone: threading.Event) -> None:
    """Copy a child's lines to ``out``; once ``out``'s reader has gone (``demo | head -1``), set ``gone``
    and keep draining, so the child never blocks on a full pipe."""
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace").rstrip("\n")
        lines.append(line)
        if not gone.is_set():
            try:
                print(line, file=out, flush=True)
            except BrokenPipeError:
                gone.set()


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="edgestream-demo-") as tmp:
        work = Path(tmp)
        broker = Mosquitto(work).start()
        hub = None
        try:
            (work / "hub.yaml").write_text(HUB.format(port=broker.port, work=work))
            agent_cfg = dict(AGENT, transport={"type": "mqtt", "health_ms": 2000,
                                               "mqtt": {"host": broker.host, "port": broker.port}})
            (work / "agent.json").write_text(json.dumps(agent_cfg))
            bundle.build(work / "lib", opt=3)

            print(f"demo: mosquitto on {broker.host}:{broker.port}; starting the hub", file=sys.stderr, flush=True)
            hub = subprocess.Popen([sys.executable, "-m", "edgestream_tools.cli", "hub", "run", "-c",
                                    str(work / "hub.yaml")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   env=dict(os.environ, PYTHONUNBUFFERED="1"))
            rows: list[str] = []
            logs: list[str] = []
            gone = threading.Event()  # our stdout's reader went away: stop everything, exit 141
            pumps = [threading.Thread(target=_pump, args=(hub.stdout, sys.stdout, rows, gone), daemon=True),
                     threading.Thread(target=_pump, args=(hub.stderr, sys.stderr, logs, threading.Event()),
                                      daemon=True)]
            for t in pumps:
                t.start()
            for _ in range(100):  # wait until the hub says it runs (bounded: 10 s)
                if hub.poll() is not None or any("running" in line for line in logs):
                    break
                threading.Event().wait(0.1)
            if hub.poll() is not None:
                print("demo: the hub did not start", file=sys.stderr)
                return 1

            print(f"demo: agent demo-1 on MicroPython ({args.board} heap, .mpy bundle on the 32-bit stock build) "
                  f"for {args.seconds:g} s",
                  file=sys.stderr, flush=True)
            agent = subprocess.Popen(mp.command(args.board, "mpy") + ["-m", "edgestream_agent.main",
                                     str(work / "agent.json"), str(int(args.seconds * 1000))],
                                     env=mp.environment([str(work / "lib")], "mpy"),
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            out = b""
            for _ in range(int(args.seconds * 5) + 300):  # bounded: the agent's run + 60 s
                try:
                    out += agent.communicate(timeout=0.2)[0]
                    break
                except subprocess.TimeoutExpired:
                    if gone.is_set():
                        break
            if agent.poll() is None:  # stopped early (stdout closed) or overdue
                agent.kill()
                out += agent.communicate()[0]
            elif agent.returncode != 0:
                raise mp.MicroPythonError(f"the agent exited {agent.returncode}:\n{out.decode(errors='replace')}")
            for line in out.decode(errors="replace").strip().splitlines()[-3:]:
                print(f"agent: {line}", file=sys.stderr)

            hub.send_signal(signal.SIGTERM)
            code = hub.wait(30)
            for t in pumps:
                t.join(5)
            if gone.is_set():  # after the cleanup below: `edgestream` exits 141, quietly
                raise BrokenPipeError
            print(f"demo: hub stopped (exit {code}); {len(rows)} roll-up rows printed; "
                  f"{_count(work / 'results.jsonl')} agent window results archived", file=sys.stderr)
            return 0 if code == 0 and rows else 1
        finally:
            if hub is not None and hub.poll() is None:
                hub.kill()
                hub.wait(10)
            broker.stop()


def _count(path: Path) -> int:
    return sum(1 for _ in path.open()) if path.exists() else 0
