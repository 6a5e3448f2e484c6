"""A private mosquitto broker on a free loopback port.

The demo, the benchmarks and the tests' ``mosquitto`` fixture each start
their own; ``stop()``/``start()`` simulate an outage on the same port.
Nothing depends on a system service.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path


def find_mosquitto() -> str:
    exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if not exe:
        raise RuntimeError("mosquitto is not installed: run `sudo apt-get install -y mosquitto` (make does it as root)")
    return exe


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mosquitto:
    host = "127.0.0.1"

    def __init__(self, workdir: Path, port: int | None = None, extra_conf: str = ""):
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.conf = self.workdir / "mosquitto.conf"
        self.log = self.workdir / "mosquitto.log"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            # the default of 1000 silently drops messages for a lagging subscriber
            "max_queued_messages 100000\n"
            "max_inflight_messages 100\n"
            f"persistence true\npersistence_location {self.workdir}/\n"
            # started as root, mosquitto switches to the `mosquitto` user, which cannot write a private
            # work folder: it then saves no sessions on stop and a restart forgets persistent subscribers
            # and what was queued for them. It keeps the user who starts it (ignored when not root).
            f"user {pwd.getpwuid(os.geteuid()).pw_name}\n"
            f"{extra_conf}"
        )
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> "Mosquitto":
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([find_mosquitto(), "-c", str(self.conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout}s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()
