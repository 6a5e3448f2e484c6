"""Source and sink contracts, and the context the engine hands every component.

Processors follow ``edgestream_hub.api.Processor``. Sources and sinks:

- ``Source``: ``open()`` takes what it needs to work (binds a port, opens a
  file) and raises ``StartError`` if it cannot, before anything is consumed;
  ``start(emit)`` begins producing on the source's own threads (``emit``
  blocks while the pipelines are full: that is the backpressure, and returns
  the unit's *ticket*, its number in the order of what the source emitted);
  ``stop()`` returns only when ``emit`` will not be called again.
  ``PollingSource`` turns a non-blocking ``poll()`` into that contract.
  Durability hooks (all optional): a source decodes and emits each unit of
  input under ``ctx.intake.lock`` (``Ingest.feed`` does), so a checkpoint
  cut falls between two units; ``positions()`` returns its sequence positions
  (JSON-able) at the cut and ``restore_positions(positions)`` continues from them; a
  source that ``acknowledges`` (MQTT QoS 1) holds each unit unacknowledged
  until ``acknowledge(ticket)`` says every unit up to that ticket is in a
  checkpoint, reports ``unacked()`` and asks for a checkpoint early with
  ``wants_checkpoint()``.
- ``Sink``: ``open()`` fails fast; ``write(records)`` writes a batch and
  returns the records it rejects as ``(record, reason)`` (they go to the
  dead-letter sink), or raises to have the whole batch retried with backoff;
  ``flush()`` and ``close()`` at stop.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from edgestream_hub.api import Record

Emit = Callable[[list[Record]], Any]


class Intake:
    """The gate between a source and the engine: ``lock`` is held while the source decodes and emits one unit
    of input (so a checkpoint, which takes it, sees whole units only); ``closed`` (set under the lock, at a
    stop) tells a source that acknowledges to take nothing more: what it has not acknowledged comes again."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.closed = False


class ComponentContext:
    """What a factory gets: the component's name, label, config folder, state folder, connections,
    registry, metrics and where its rejected and late records go.

    ``dead_letter_target`` is True for a sink that receives dead letters (the file sink then
    bounds itself by default). ``devices`` is the engine's ``DeviceFeed`` (the device registry's
    way in: ``Ingest`` reports every wire message to it; a serial source attaches its port so
    the hub can write to it), or None. ``intake`` is a source's ``Intake``; ``durable`` is True when the hub
    checkpoints (a source may then hold acknowledgements until ``acknowledge``)."""

    def __init__(self, kind: str, name: str, label: str, *, pipeline: str | None = None, base_dir: str = ".",
                 connections: dict[str, dict[str, Any]] | None = None, registry: Any = None,
                 metrics: Any = None, resume_state: Any = None,
                 dead_letter: Callable[[str, str | None, Any, str], None] | None = None,
                 late: Callable[[str, str | None, Record], None] | None = None, state_dir: str | None = None,
                 dead_letter_target: bool = False, devices: Any = None, intake: Intake | None = None,
                 durable: bool = False, share: Any = None) -> None:
        self.kind = kind
        self.name = name
        self.label = label
        self.pipeline = pipeline
        self.base_dir = base_dir
        self.connections = connections or {}
        self.registry = registry
        self.metrics = metrics
        self.resume_state = resume_state
        self._dead_letter = dead_letter
        self._late = late
        self.state_dir = state_dir
        self.dead_letter_target = dead_letter_target
        self.devices = devices
        self.intake = intake if intake is not None else Intake()
        self.durable = durable
        self.share = share  # a ``workers.Share``: the devices this hub process takes (None: all)
        import logging  # here: `hub check` imports no logging

        self.log = logging.getLogger(f"edgestream.hub.{kind}.{label}")

    def dead_letter(self, record: Any, reason: str) -> None:
        """Send a rejected record (or raw payload) with the reason to the dead-letter destination."""
        if self._dead_letter is not None:
            self._dead_letter(self.label, self.pipeline, record, reason)
        else:
            from edgestream_hub.deadletter import clip

            self.log.warning("rejected: %s", clip(reason))

    def late(self, record: Record) -> None:
        if self._late is not None:
            self._late(self.label, self.pipeline, record)

    def count(self, metric: str, n: float = 1) -> None:
        """Increment one of the engine's metrics for this component (no-op without metrics)."""
        if self.metrics is not None and n:
            self.metrics.inc(metric, self.label, n)

    def counter(self, metric: str, *labels: str) -> Any:
        """The child of a metric labelled by this component and ``labels`` (its other label values),
        created now, so it reads 0 until counted; a no-op counter without metrics."""
        if self.metrics is None:
            return _NO_COUNTER
        return self.metrics.labelled(metric, self.label, *labels)

    def resolve(self, path: str) -> str:
        """A file name from the config, relative to the config file's folder."""
        from pathlib import Path

        p = Path(path).expanduser()
        return str(p if p.is_absolute() else Path(self.base_dir) / p)

    def state_path(self, name: str) -> str:
        """Where this component keeps a small file of its own state: in ``state.dir`` if the config
        sets one, else in ``.edgestream/`` in the config file's folder."""
        from pathlib import Path

        return str(Path(self.state_dir) / name if self.state_dir else Path(self.resolve(".edgestream")) / name)


class _NoCounter:
    def inc(self, n: float = 1) -> None:
        pass


_NO_COUNTER = _NoCounter()


class Source:
    """Base class of sources; see the module doc for the contract."""

    finite = False  # True when the source ends by itself (a file read once)
    acknowledges = False  # True when it holds units unacknowledged until acknowledge() (MQTT QoS 1, durable)

    def open(self) -> None:
        pass

    def start(self, emit: Emit) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        pass

    def done(self) -> bool:
        """A finite source that has emitted everything."""
        return False

    def positions(self) -> Any:
        """Its sequence positions now (JSON-able, taken under ``ctx.intake.lock``), or None if it has none."""
        return None

    def restore_positions(self, positions: Any) -> None:
        """Continue from ``positions()`` taken earlier (a checkpoint's). Raises ValueError if they are not
        positions this source understands."""

    def acknowledge(self, ticket: int) -> None:
        """Every unit up to ``ticket`` is in a checkpoint: acknowledge them (in order)."""

    def unacked(self) -> int:
        """Units received and not acknowledged yet."""
        return 0

    def wants_checkpoint(self) -> bool:
        """True when it needs a checkpoint before it can take more (its window of unacknowledged units is
        half full, or the sender stopped sending while units wait)."""
        return False


class PollingSource(Source):
    """A source built from a non-blocking ``poll() -> (records, wait_s)``.

    ``poll`` returns what is ready now and how long to wait before the next
    call (``None``: the source is exhausted). The wait happens on this
    source's own thread, never the engine's. An exception from ``poll`` is
    logged, counted and retried with backoff (``recover()`` is called first).
    """

    def __init__(self, ctx: ComponentContext) -> None:
        self.ctx = ctx
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self.backoff_min_s = 0.1
        self.backoff_max_s = 5.0

    def poll(self) -> tuple[list[Record], float | None]:
        raise NotImplementedError

    def recover(self) -> None:
        """Called after poll() raised, before the next poll (reopen a port, a file)."""

    def close(self) -> None:
        pass

    def start(self, emit: Emit) -> None:
        self._thread = threading.Thread(target=self._run, args=(emit,), name=f"source-{self.ctx.label}",
                                        daemon=True)
        self._thread.start()

    def _run(self, emit: Emit) -> None:
        backoff = self.backoff_min_s
        intake = self.ctx.intake
        while not self._stop.is_set():
            try:
                with intake.lock:  # one poll and its emit are one unit for a checkpoint
                    records, wait = self.poll()
                    if records:
                        emit(records)
            except Exception as e:  # isolate: one source's failure never stops the hub
                self.ctx.log.error("source failed: %s: %s (retrying in %.1fs)", type(e).__name__, e, backoff)
                self.ctx.count("edgestream_source_reconnects_total")
                if self._stop.wait(backoff):
                    break
                backoff = min(backoff * 2, self.backoff_max_s)
                try:
                    self.recover()
                except Exception as e2:
                    self.ctx.log.error("recovery failed: %s: %s", type(e2).__name__, e2)
                continue
            backoff = self.backoff_min_s
            if wait is None:
                self._done.set()
                break
            if wait > 0:
                self._stop.wait(wait)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.close()

    def done(self) -> bool:
        return self._done.is_set()


class Sink:
    """Base class of sinks; see the module doc for the contract."""

    def open(self) -> None:
        pass

    def write(self, records: list[Record]) -> list[tuple[Any, str]] | None:
        raise NotImplementedError

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def now_ms() -> int:
    return int(time.time() * 1000)
