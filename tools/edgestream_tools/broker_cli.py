"""``edgestream broker``: the mosquitto configuration EdgeStream recommends, printed or run.

    edgestream broker --print-config [--port N] [--dir D]   # the commented mosquitto.conf, on stdout
    edgestream broker run            [--port N] [--dir D]   # mosquitto on it, in the foreground
    edgestream broker run --embedded [--port N] [--dir D]   # no mosquitto here: amqtt, pure Python

``D`` (default ``.edgestream/broker`` in the current folder) holds the config
and mosquitto's persistence database. ``run`` writes the config into D, starts
mosquitto, relays its log to stderr and prints one line once it listens:
``broker: mosquitto on 127.0.0.1:PORT (config D/mosquitto.conf)``. SIGTERM or
SIGINT stop it cleanly (mosquitto saves its database) and exit 0; when
mosquitto cannot start (the port is in use) the command exits 2 with
mosquitto's message; when mosquitto dies by itself, 1. ``--embedded`` runs
the pure-Python amqtt instead (``edgestream_tools.embedded_broker``: where
mosquitto cannot be installed), with its persistent sessions saved in D.
"""

from __future__ import annotations

import argparse
import collections
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from edgestream_hub.errors import StartError

DEFAULT_DIR = ".edgestream/broker"
#: how long mosquitto may take to say it is running
START_TIMEOUT_S = 10.0
_RUNNING = re.compile(rb"mosquitto version \S+ running")
_STAMP = re.compile(r"^\S+: ")  # the timestamp mosquitto puts before each log line


def _port(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= n <= 65535:
        raise argparse.ArgumentTypeError(f"{n} is not a port number (1-65535)")
    return n


def add_arguments(p: argparse.ArgumentParser) -> None:
    from edgestream_tools.broker import DEFAULT_PORT

    p.add_argument("action", nargs="?", choices=("run",), metavar="run",
                   help="start mosquitto with the recommended config in the foreground")
    p.add_argument("--print-config", action="store_true", help="print the recommended mosquitto.conf and exit")
    p.add_argument("--embedded", action="store_true",
                   help="run: the pure-Python broker (amqtt, pip install 'edgestream[embedded-broker]') instead of "
                        "mosquitto, for a machine without it (sessions kept across restarts in D; ~16x the CPU "
                        "per message)")
    p.add_argument("--port", type=_port, default=DEFAULT_PORT, metavar="N",
                   help=f"loopback port to listen on (default {DEFAULT_PORT})")
    p.add_argument("--dir", default=DEFAULT_DIR, metavar="D",
                   help=f"folder of the config and the persistence database (default {DEFAULT_DIR})")


def run(args: argparse.Namespace) -> int:
    if args.print_config == (args.action == "run"):
        print("edgestream broker: choose one: --print-config or run", file=sys.stderr)
        return 2
    if args.embedded and args.print_config:
        print("edgestream broker: --embedded goes with run (--print-config prints mosquitto's config)", file=sys.stderr)
        return 2
    if args.print_config:
        from edgestream_tools.broker import recommended_config

        sys.stdout.write(recommended_config(args.port, Path(args.dir)))
        return 0
    if args.embedded:
        from edgestream_tools import embedded_broker

        return embedded_broker.serve(args.port, Path(args.dir))
    return serve(args.port, Path(args.dir))


class _Relay(threading.Thread):
    """Copies mosquitto's log to our stderr line by line, notes when it runs, keeps its last lines."""

    def __init__(self, stream: IO[bytes]) -> None:
        super().__init__(name="mosquitto-log", daemon=True)
        self.stream = stream
        self.running = threading.Event()
        self.tail: collections.deque[str] = collections.deque(maxlen=20)
        self._lock = threading.Lock()
        self._out: Any = sys.stderr

    def say(self, line: str) -> None:
        """Write one whole line to stderr, never interleaved with another."""
        with self._lock:
            if self._out is None:
                return
            try:
                self._out.write(line + "\n")
                self._out.flush()
            except (OSError, ValueError):  # our stderr went away: keep draining so mosquitto never blocks
                self._out = None

    def run(self) -> None:
        for raw in iter(self.stream.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            self.tail.append(line)
            self.say(line)
            if _RUNNING.search(raw):
                self.running.set()

    def errors(self) -> str:
        """mosquitto's error lines without their timestamps, or its last line."""
        errs = [_STAMP.sub("", line) for line in self.tail if "Error" in line]
        return "; ".join(errs) or (self.tail[-1] if self.tail else "no output")


def serve(port: int, directory: Path) -> int:
    """Run mosquitto on the recommended config until a signal stops it; the exit code of the command."""
    from edgestream_hub.parent_death import die_with_parent
    from edgestream_tools.broker import Mosquitto, find_mosquitto, write_config

    conf = write_config(directory, port)
    # SIGTERM when this process dies without stopping it (kill -9): it saves its sessions and frees the port
    proc = subprocess.Popen([find_mosquitto(), "-c", str(conf)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            preexec_fn=die_with_parent(signal.SIGTERM))
    assert proc.stdout is not None
    relay = _Relay(proc.stdout)
    relay.start()
    stopping = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stopping.set()
        if proc.poll() is None:
            proc.terminate()  # mosquitto saves its database and exits

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not relay.running.wait(0.05) and proc.poll() is None and time.monotonic() < deadline:
            pass
        if not relay.running.is_set():
            if proc.poll() is None:
                proc.terminate()
            rc = proc.wait()
            relay.join(5)
            if stopping.is_set():
                return 0
            why = relay.errors() if rc else f"no 'running' line within {START_TIMEOUT_S:g} s"
            raise StartError("mosquitto", f"cannot start on {Mosquitto.host}:{port}: {why}")
        relay.say(f"broker: mosquitto on {Mosquitto.host}:{port} (config {conf})")
        rc = proc.wait()
        relay.join(5)
        if stopping.is_set():
            return 0
        print(f"edgestream broker: mosquitto exited {rc}: {relay.errors()}", file=sys.stderr)
        return 1
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
