"""Fixtures for the laptop-to-board tools: virtual boards on ptys, driven by the real mpremote."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest


class VBoard:
    """An ``edgestream vboard`` process (the CLI, as a user starts it) and its pty."""

    def __init__(self, board: str, folder: Path, *extra: str) -> None:
        self.board = board
        self.folder = folder
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgestream_tools.cli", "vboard", "--board", board, "--dir", str(folder), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.port = self._announced(20)

    def _announced(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        line = b""
        deadline = time.monotonic() + timeout
        while not line.endswith(b"\n") and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.1)[0]:
                chunk = os.read(fd, 1)
                if not chunk:
                    break
                line += chunk
        if not line.startswith(f"vboard: {self.board} on /dev/pts/".encode()):
            self.stop()
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
            raise AssertionError(f"vboard did not announce itself: {line!r}\n{err}")
        return line.decode().strip().rsplit(" ", 1)[1]

    def mpremote(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        """Run the real mpremote against this board."""
        p = subprocess.run([sys.executable, "-m", "mpremote", "connect", self.port, *args],
                           capture_output=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"mpremote {' '.join(args)} exited {p.returncode}:\n"
                                 f"{p.stdout.decode(errors='replace')}{p.stderr.decode(errors='replace')}")
        return p

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()
        return self.proc.returncode


@pytest.fixture
def vboard(tmp_path):
    """Start virtual boards: ``vboard(board="esp32", *options)``; each is stopped at the end."""
    started: list[VBoard] = []

    def start(board: str = "esp32", *extra: str, folder: Path | None = None) -> VBoard:
        d = folder or tmp_path / f"board{len(started)}"
        vb = VBoard(board, d, *extra)
        started.append(vb)
        return vb

    try:
        yield start
    finally:
        for vb in started:
            vb.stop()


class Console:
    """The board's console through pyserial, with reads bounded in time."""

    def __init__(self, port: str) -> None:
        import serial

        self.s = serial.Serial(port, timeout=0.05)
        self.seen = b""

    def write(self, data: bytes) -> None:
        self.s.write(data)

    def until(self, pattern: bytes, timeout: float = 10) -> bytes:
        """Read until ``pattern`` appears (after what was read before); returns everything read."""
        deadline = time.monotonic() + timeout
        start = len(self.seen)
        while pattern not in self.seen[start:] and time.monotonic() < deadline:
            self.seen += self.s.read(4096)
        got = self.seen[start:]
        assert pattern in got, f"{pattern!r} not seen within {timeout} s; got {got!r}"
        return got

    def close(self) -> None:
        self.s.close()


@pytest.fixture
def console():
    opened: list[Console] = []

    def open_(port: str) -> Console:
        c = Console(port)
        opened.append(c)
        return c

    try:
        yield open_
    finally:
        for c in opened:
            c.close()
