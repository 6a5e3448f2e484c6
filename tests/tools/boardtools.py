"""Helpers for the board tool tests: virtual boards, their console, the edgestream command."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path


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


def edgestream(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run the ``edgestream`` command (as a user does); output as text."""
    return subprocess.run([sys.executable, "-m", "edgestream_tools.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


class Follower:
    """A command that keeps running (``agent logs``): its stdout lines as they come, then stopped."""

    def __init__(self, *args: str) -> None:
        import threading

        self.proc = subprocess.Popen([sys.executable, "-m", "edgestream_tools.cli", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.err = ""
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 30) -> int:
        """Index of the first line (from the start) that contains text; AssertionError after timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, line in enumerate(list(self.lines)):
                if text in line:
                    return i
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not seen within {timeout} s: {self.lines}")

    def stop(self, timeout: float = 10) -> int:
        """SIGINT (Ctrl-C) if it still runs; its exit status once it ended (its stderr in ``err``)."""
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._t.join(5)
        if self.proc.stderr is not None and not self.proc.stderr.closed:
            self.err = self.proc.stderr.read()
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()
        return self.proc.returncode

    @property
    def out(self) -> str:
        return "\n".join(self.lines)
