"""What the engine lets the REST API and the console see: bounded rings of the latest records.

The engine calls ``Taps`` on its own threads, when a hub.yaml has an ``api``
section (``Engine.taps`` is None otherwise and nothing is kept):

- ``source(name, records)``: what a source emitted (``api.recent_records``
  per source), for SQL test runs on real data and the console's device plots;
- ``emitted(pipeline, records)``: what a pipeline handed to its sinks
  (``api.results`` per pipeline);
- ``dead_letter(entry)``: every rejected record with its reason
  (``api.dead_letters`` in all).

Each call takes a lock and extends a ``deque`` with a bound: memory stays
fixed and the cost per batch is a few hundred nanoseconds (``bench``
measures it). Rings keep references: records are not copied (the engine never
changes a record once emitted; readers copy what they hand on). Each ring
counts what it ever took, so a reader asks for "what came since count N"
and learns how much it missed.

    >>> t = Taps(recent=2, results=0, dead_letters=0)
    >>> t.source("s", [{"v": 1}, {"v": 2}, {"v": 3}])
    >>> t.recent("s", 10), t.since("source", "s", 1)
    ([{'v': 2}, {'v': 3}], ([{'v': 2}, {'v': 3}], 3))
"""

from __future__ import annotations

import threading
from collections import deque
from itertools import islice
from typing import Any

Record = dict[str, Any]


class Ring:
    """The latest ``size`` items and how many were ever added; thread-safe."""

    __slots__ = ("items", "total", "lock")

    def __init__(self, size: int) -> None:
        self.items: deque[Any] = deque(maxlen=size)
        self.total = 0
        self.lock = threading.Lock()

    def extend(self, items: list[Any]) -> None:
        with self.lock:
            self.items.extend(items)
            self.total += len(items)

    def latest(self, n: int) -> list[Any]:
        """The last ``n`` items (oldest first)."""
        with self.lock:
            k = max(0, min(n, len(self.items)))
            return list(islice(self.items, len(self.items) - k, None))

    def since(self, seen: int) -> tuple[list[Any], int]:
        """The items added after the ``seen``-th (those still kept) and the count now."""
        with self.lock:
            k = min(max(0, self.total - seen), len(self.items))
            return list(islice(self.items, len(self.items) - k, None)), self.total


_KINDS = ("source", "emitted", "dead_letter")


class Taps:
    """Rings of the latest records per source and per pipeline output, and of dead letters (see the module
    doc). A size of 0 keeps nothing of that kind."""

    def __init__(self, recent: int, results: int, dead_letters: int) -> None:
        self.sizes = {"source": recent, "emitted": results, "dead_letter": dead_letters}
        self.rings: dict[str, dict[str, Ring]] = {k: {} for k in _KINDS}
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, api: dict[str, Any]) -> "Taps":
        """The taps an ``api`` config section asks for."""
        return cls(api["recent_records"], api["results"], api["dead_letters"])

    def ring(self, kind: str, name: str) -> Ring | None:
        """The ring of ``name`` (created on first use), or None when that kind keeps nothing."""
        rings = self.rings[kind]
        r = rings.get(name)
        if r is None:
            size = self.sizes[kind]
            if not size:
                return None
            with self._lock:
                r = rings.setdefault(name, Ring(size))
        return r

    # -- the engine's side --
    def source(self, name: str, records: list[Record]) -> None:
        r = self.ring("source", name)
        if r is not None:
            r.extend(records)

    def emitted(self, pipeline: str, records: list[Record]) -> None:
        r = self.ring("emitted", pipeline)
        if r is not None:
            r.extend(records)

    def dead_letter(self, entry: dict[str, Any]) -> None:
        r = self.ring("dead_letter", "")
        if r is not None:
            r.extend([entry])

    # -- readers --
    def recent(self, source: str, n: int) -> list[Record]:
        """The last ``n`` records source ``source`` emitted (copies: a reader may change them)."""
        r = self.rings["source"].get(source)
        return [dict(x) for x in r.latest(n)] if r is not None else []

    def results(self, pipeline: str, n: int) -> list[Record]:
        r = self.rings["emitted"].get(pipeline)
        return r.latest(n) if r is not None else []

    def dead_letters(self, n: int) -> list[dict[str, Any]]:
        r = self.rings["dead_letter"].get("")
        return r.latest(n) if r is not None else []

    def since(self, kind: str, name: str, seen: int) -> tuple[list[Any], int]:
        """What ring ``kind``/``name`` took after its ``seen``-th item, and its count now."""
        r = self.rings[kind].get(name)
        return r.since(seen) if r is not None else ([], seen)

    def names(self, kind: str) -> list[str]:
        return list(self.rings[kind])

    def forget(self, kind: str, keep: set[str]) -> None:
        """Drop the rings of names no longer in the config (after a reload)."""
        with self._lock:
            for name in [n for n in self.rings[kind] if n not in keep]:
                del self.rings[kind][name]
