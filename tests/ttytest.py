"""Helpers for command-line tests that need a terminal: a pty as a child's stderr."""

from __future__ import annotations

import os
import select
import subprocess
import time


def run_with_pty_stderr(argv: list[str], timeout: float = 120) -> tuple[int, bytes]:
    """Run argv with stderr on a pseudo-terminal (stdin and stdout on /dev/null).

    Returns the exit code and every byte the terminal received. Bounded: the
    child is killed after ``timeout`` seconds.
    """
    master, slave = os.openpty()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    got = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every writer of the terminal has gone
                    break
                if not chunk:
                    break
                got += chunk
            elif p.poll() is not None:
                break
        return p.wait(timeout=10), got
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)
