"""The C heap of a long-running hub: fewer malloc arenas and a fixed mmap threshold (glibc only).

Every pipeline, sink and source has its own thread, and glibc gives threads their own malloc arenas
(up to 8 per core), each keeping the memory it freed; its mmap threshold also rises after the first
large block is freed, after which checkpoint texts and buffers of a few hundred KiB come from the
arenas too and leave holes when freed. With a fleet of devices and checkpoints on, both cost ~10-15 MB
of resident memory and no speed: the threads run Python, one at a time under the GIL, so they hardly
ever contend for an arena. ``tune()`` applies both at start, before the threads; a setting the user
chose through glibc's own variables (``MALLOC_ARENA_MAX``, ``MALLOC_MMAP_THRESHOLD_``) is left alone.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Mapping

log = logging.getLogger(__name__)

#: mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
#: two arenas: the GIL serialises nearly every allocation; the second serves C threads (paho's socket calls)
ARENA_MAX = 2
#: glibc's initial threshold, kept fixed instead of rising to up to 32 MiB
MMAP_THRESHOLD = 128 * 1024
#: parameter -> (glibc's environment variable for it, value)
SETTINGS = {M_ARENA_MAX: ("MALLOC_ARENA_MAX", ARENA_MAX), M_MMAP_THRESHOLD: ("MALLOC_MMAP_THRESHOLD_", MMAP_THRESHOLD)}

_done: dict[str, int] | None = None


def tune(env: Mapping[str, str] | None = None) -> dict[str, int]:
    """Apply the settings once per process (later calls return the first answer): the glibc variables set,
    by name; empty on another C library or platform, where nothing changes."""
    global _done
    if _done is None:
        _done = _apply(os.environ if env is None else env)
        if _done:
            log.debug("malloc tuned: %s", _done)
    return dict(_done)


def _apply(env: Mapping[str, str]) -> dict[str, int]:
    if not sys.platform.startswith("linux"):
        return {}
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - present in glibc only (musl has mallopt as a no-op)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return {}
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    done: dict[str, int] = {}
    for param, (name, value) in SETTINGS.items():
        if name not in env and mallopt(param, value) == 1:  # mallopt returns 1 on success
            done[name] = value
    return done
