"""A lock file that names its holder: one process at a time may use a folder (a hub's state, a demo's run).

``take(path)`` opens ``path``, takes an exclusive ``flock`` without waiting and writes this process's pid
into it; the lock lasts while the returned descriptor is open (the kernel drops it when the process ends,
however it ends). Another process's lock raises ``Held`` with the pid it wrote, for the caller's message.
"""

from __future__ import annotations

import os
from pathlib import Path


class Held(Exception):
    """The lock is held by another process; ``holder`` is the pid it wrote (``?`` when unreadable)."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


def take(path: Path) -> int:
    """The descriptor holding the lock on ``path`` (created if need be). Raises Held, or OSError when the
    file cannot be opened."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
        os.close(fd)
        raise Held(holder) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd
