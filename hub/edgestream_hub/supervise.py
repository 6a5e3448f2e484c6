"""Threads that do not die quietly: a loop that raises is logged with its traceback and started again.

A daemon thread whose target raises ends with a traceback on stderr and nothing
else: the config watcher stopped reloading, a sink stopped writing, and the hub
went on as if nothing happened. ``supervise`` runs the loop again after a
backoff (0.1 s, doubling up to ``backoff_max_s``, never below 0.1 s), logging each crash at ERROR,
until the loop returns or ``wait`` says to stop.
"""

from __future__ import annotations

import logging
from typing import Callable

_MAX_RESTARTS = 1_000_000  # bounded, like every loop here; far more than a hub lives through


def supervise(what: str, body: Callable[[], None], log: logging.Logger, *, wait: Callable[[float], bool],
              backoff_max_s: float = 30.0, on_crash: Callable[[Exception], None] | None = None) -> None:
    """Run ``body`` until it returns; when it raises, log it (``"<what> crashed, restarting in ..."``), call
    ``on_crash``, wait the backoff with ``wait(seconds)`` and run it again, unless ``wait`` returns True."""
    backoff = 0.1
    for _ in range(_MAX_RESTARTS):
        try:
            body()
            return
        except Exception as e:
            if on_crash is not None:
                on_crash(e)
            log.exception("%s crashed, restarting in %.1fs: %s: %s", what, backoff, type(e).__name__, e)
            if wait(backoff):
                return
            backoff = max(0.1, min(backoff * 2, backoff_max_s))
    log.error("%s crashed %d times: giving up", what, _MAX_RESTARTS)
