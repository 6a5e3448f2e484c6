"""Bounded record queues between stages: the engine's backpressure.

A ``BoundedQueue`` holds at most ``capacity`` records. With policy ``block``
a ``put`` waits until there is room (the producer slows to the consumer's
pace); with ``drop_oldest`` it never waits and drops the oldest queued
records instead, counting them in ``dropped``. Nothing is dropped silently.

A ``block`` queue also carries *markers* (a checkpoint's barrier): ``put_marker``
queues one after the records already queued, without waiting for room and
without counting as a record; ``get`` never takes records past a marker, and
``take_marker`` takes the marker once it is at the head. ``total_in`` counts
every record ever queued (a sink is done with what was queued before a point
when it has handled that many).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Callable

Record = dict[str, Any]


class QueueClosed(Exception):
    """put() on a queue whose consumer has gone for good."""


class BoundedQueue:
    """A FIFO of records bounded in records (not in batches). Thread-safe."""

    def __init__(self, capacity: int, policy: str = "block",
                 on_drop: Callable[[int], None] | None = None) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        if policy not in ("block", "drop_oldest"):
            raise ValueError(f"unknown policy {policy!r}")
        self.capacity = capacity
        self.policy = policy
        self.dropped = 0
        self.high_water = 0  # most records ever queued at once
        self.total_in = 0  # records ever queued
        self._chunks: deque[Any] = deque()  # lists of records, and markers
        self._count = 0
        self._markers = 0
        self._cond = threading.Condition()
        self._closed = False
        self._dead = False
        self._on_drop = on_drop

    def __len__(self) -> int:
        return self._count

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, records: list[Record], stop: threading.Event | None = None) -> int:
        """Queue records (in order). Returns how many old records were dropped to make room.

        ``block`` waits for room (checking ``stop`` every 100 ms; a set ``stop``
        makes it queue the rest over capacity rather than lose it).
        Raises QueueClosed if the consumer is gone.
        """
        if not records:
            return 0
        dropped = 0
        with self._cond:
            if self._dead:
                raise QueueClosed()
            if self.policy == "drop_oldest":
                self._append(list(records))
                over = self._count - self.capacity
                while over > 0:
                    head = self._chunks[0]
                    if len(head) <= over:
                        self._chunks.popleft()
                        n = len(head)
                    else:
                        del head[:over]
                        n = over
                    self._count -= n
                    over -= n
                    dropped += n
                self.dropped += dropped
            else:
                i = 0
                while i < len(records):
                    room = self.capacity - self._count
                    if room <= 0:
                        if self._dead:
                            raise QueueClosed()
                        if stop is not None and stop.is_set():
                            room = len(records) - i
                        else:
                            self._cond.wait(0.1)
                            continue
                    chunk = records[i:i + room] if (i or room < len(records)) else records
                    self._append(list(chunk) if chunk is records else chunk)
                    i += len(chunk)
            self._cond.notify_all()
        if dropped and self._on_drop is not None:
            self._on_drop(dropped)
        return dropped

    def put_marker(self, marker: Any) -> None:
        """Queue ``marker`` behind every record queued so far (never waits). Raises QueueClosed if the
        consumer is gone."""
        if self.policy != "block":
            raise ValueError("markers need a queue that never drops (policy block)")
        with self._cond:
            if self._dead:
                raise QueueClosed()
            self._chunks.append(_Marker(marker))
            self._markers += 1
            self._cond.notify_all()

    def take_marker(self) -> Any:
        """The marker at the head of the queue (taken off it), or None if records come first or none waits."""
        with self._cond:
            if self._chunks and self._chunks[0].__class__ is _Marker:
                self._markers -= 1
                self._cond.notify_all()
                return self._chunks.popleft().value
            return None

    @property
    def markers(self) -> int:
        """Markers queued."""
        return self._markers

    def _append(self, chunk: list[Record]) -> None:
        self._chunks.append(chunk)
        self.total_in += len(chunk)
        self._count += len(chunk)
        if self._count > self.high_water:
            self.high_water = self._count

    def get(self, max_n: int, linger_s: float, timeout_s: float | None) -> list[Record]:
        """Up to ``max_n`` records: waits up to ``timeout_s`` for the first, then up to
        ``linger_s`` for the batch to fill. Returns [] on timeout or when closed and empty. Stops at a
        marker (and returns at once, maybe [], when one waits)."""
        with self._cond:
            if not self._count and not self._markers and not self._closed:
                if timeout_s is None:
                    while not self._count and not self._markers and not self._closed:
                        self._cond.wait(1.0)
                else:
                    self._cond.wait_for(lambda: self._count or self._markers or self._closed, timeout_s)
            if not self._count:
                return []
            if self._count < max_n and linger_s > 0 and not self._closed and not self._markers:
                deadline = time.monotonic() + linger_s
                while self._count < max_n and not self._closed and not self._markers:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            out: list[Record] = []
            while self._chunks and len(out) < max_n:
                head = self._chunks[0]
                if head.__class__ is _Marker:
                    break
                need = max_n - len(out)
                if len(head) <= need:
                    self._chunks.popleft()
                    if out:
                        out.extend(head)
                    else:
                        out = head
                else:
                    out.extend(head[:need])
                    del head[:need]
            self._count -= len(out)
            self._cond.notify_all()
            return out

    def close(self) -> None:
        """No more input is coming: get() returns what is left, then []."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def kill(self) -> list[Record]:
        """The consumer is gone: wake blocked producers (they get QueueClosed); return what was queued."""
        with self._cond:
            self._dead = self._closed = True
            left = [r for c in self._chunks if c.__class__ is not _Marker for r in c]
            self._chunks.clear()
            self._count = self._markers = 0
            self._cond.notify_all()
            return left


class _Marker:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value
