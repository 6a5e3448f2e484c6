"""Children that die with the process that started them, however it dies (Linux).

A SIGKILL (``kill -9``, the OOM killer) gives a parent no chance to stop its children: a broker would keep its
port and folder, a board its pty. ``PR_SET_PDEATHSIG`` makes the kernel send the child a signal when its parent
dies; elsewhere the returned function does nothing.
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Callable

_PR_SET_PDEATHSIG = 1
_libc: ctypes.CDLL | None = None


def die_with_parent(sig: int) -> Callable[[], None]:
    """A ``preexec_fn`` for ``subprocess.Popen``: the child gets ``sig`` when this process dies. Call it in the
    parent (libc is loaded here: loading it in the forked child is not safe)."""
    global _libc
    if _libc is None and sys.platform.startswith("linux"):
        try:
            _libc = ctypes.CDLL(None, use_errno=True)
        except OSError:
            pass
    libc, parent = _libc, os.getpid()

    def preexec() -> None:
        if libc is not None:
            libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
            if os.getppid() != parent:  # the parent died before that took effect
                os._exit(1)

    return preexec
