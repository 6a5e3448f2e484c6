"""``edgestream demo``: the whole path that exists, end to end, on an embedded default.

A device script runs under the real MicroPython unix port with an ESP32-sized
heap, writes window results as serial frames; the host side reads the byte
stream with the shared FrameReader, decodes each message and prints one JSON
line per window result, counting the bad frames it skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgestream_shared.decoder import decode
from edgestream_shared.errors import WireError
from edgestream_shared.frame import FrameReader
from edgestream_tools import micropython as mp


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--board", default="esp32", choices=sorted(mp.BOARDS), help="heap profile for the device")


def run(args: argparse.Namespace) -> int:
    script = Path(__file__).with_name("demo_device.py")
    proc = mp.run([str(script)], board=args.board)
    reader = FrameReader()
    reader.feed(proc.stdout)
    bad = 0
    for _ in range(100_000):
        try:
            payload = reader.next()
        except WireError as e:
            bad += 1
            print(f"skipped a bad frame: {e}", file=sys.stderr)
            continue
        if payload is None:
            break
        msg = decode(payload)
        for item in msg["items"]:
            row = {"device": msg["dev"], "seq": item["seq"], "sensor": item["sensor"],
                   "window": item["window"], "start": item["start"], "end": item["end"], **item["aggs"]}
            print(json.dumps(row))
    print(f"demo: device on MicroPython ({args.board}) -> serial frames -> hub decoder; {bad} bad frame(s) skipped",
          file=sys.stderr)
    return 0
