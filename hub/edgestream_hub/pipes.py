"""What to do when the reader of our stdout or stderr goes away (``... | head -1``).

Python ignores SIGPIPE, so a write to a pipe whose reader has closed it
raises ``BrokenPipeError``, and so does every later flush, including the one
at exit (``Exception ignored ... BrokenPipeError``). The recipe of the Python
docs' note on SIGPIPE: point the stream's file descriptor at /dev/null, so
nothing left in its buffer can fail again.
"""

from __future__ import annotations

import os
from typing import Any


def to_devnull(stream: Any) -> None:
    """Point ``stream``'s file descriptor at /dev/null (nothing to do for a stream without one, as under a
    test's capture)."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)
