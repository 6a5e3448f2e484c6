"""The engine: sources -> bounded queues -> processors -> bounded queues -> sinks.

Threads, not asyncio (docs/hub.md has the measurements): every source, every
pipeline and every sink runs on its own thread, connected by ``BoundedQueue``s.
A full queue blocks its producer, so a slow sink slows its pipelines'
intake instead of growing memory (or, with ``drop_oldest``, drops and counts).

Guarantees:

- ``start()`` builds and opens every component before any source consumes
  anything; a component that cannot work raises ``StartError`` and whatever
  was opened is closed again.
- ``stop()`` stops the sources, drains every queued record through the
  processors into the sinks, flushes them, and returns True if that finished
  within ``hub.shutdown_timeout``.
- A processor that raises sends its batch to the dead-letter sink with the
  reason and the pipeline goes on (with backoff when it keeps failing); a sink
  that raises is retried with exponential backoff. Other pipelines go on.
- ``reload(config)`` restarts only the components whose config changed; the
  rest keep running with their state, and no queued record is lost.
- With ``state`` enabled (the default) the hub is durable: ``start()``
  resumes from the newest valid checkpoint (``checkpoint``), a
  ``Checkpointer`` thread takes consistent checkpoints every
  ``state.interval`` and a source's messages are acknowledged only once they
  are safe (``checkpointer`` has the rule), and ``stop()`` writes a last one.
  A stop flushes open windows only when every source is finite and done (the
  input ended) or without ``state``; otherwise their state is kept.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from edgestream_hub import deadletter
from edgestream_hub.checkpoint import CheckpointError, CheckpointStore, Restored, Section, section, state_dir
from edgestream_hub.checkpointer import Checkpointer
from edgestream_hub.components import ComponentContext, Intake, Sink, Source, now_ms
from edgestream_hub.config import ComponentConfig, HubConfig, PipelineConfig, wire_sources
from edgestream_hub.devices import DeviceFeed
from edgestream_hub.errors import ConfigError, ConfigIssue, EdgeStreamError, OutputGoneError, StartError
from edgestream_hub.metrics import STATE_GAUGES, HubMetrics
from edgestream_hub.queues import BoundedQueue, QueueClosed
from edgestream_hub.registry import Registry
from edgestream_hub.supervise import supervise
from edgestream_hub.workers import share_of, shared_sources

log = logging.getLogger("edgestream.hub")
Record = dict[str, Any]
_PUT_RETRIES = 1000  # a queue can be swapped during a reload; puts follow the new one
_STATS_EVERY_S = 1.0  # how often processors' state_stats() are exported


class SinkRunner:
    """One sink on its own thread behind a bounded queue, with retry and backoff."""

    def __init__(self, engine: "Engine", cc: ComponentConfig, sink: Sink, ctx: ComponentContext) -> None:
        self.engine, self.cc, self.sink, self.ctx = engine, cc, sink, ctx
        self.label = cc.label
        m = engine.metrics
        com = cc.common
        self.queue = BoundedQueue(com["queue"], com["policy"], on_drop=self._dropped)
        self._drops = (0, -1e9)  # records dropped and not logged yet, when the last line was logged
        self.batch_size = com["batch"]["size"]
        self.linger_s = com["batch"]["linger"] / 1000
        self.retry = com["retry"]
        self._written = m.child("edgestream_sink_records_total", self.label)
        self._depth = m.child("edgestream_sink_queue_records", self.label)
        self._abort = threading.Event()
        self._thread: threading.Thread | None = None
        self.opened = False
        self.failing = False
        self.gone = False  # the destination went away for good (OutputGoneError)
        self.abandoned = 0  # records of a failing write given up when a stop ran out of time
        self._done = 0  # records this thread finished with: written, dead-lettered, given up

    def _dropped(self, n: int, final: bool = False) -> None:
        """``drop_oldest`` lost ``n`` records: counted, and logged (at once, then at most every 10 s)."""
        self.engine.metrics.inc("edgestream_sink_dropped_records_total", self.label, n)
        pending, at = self._drops
        pending += n
        now = time.monotonic()
        if pending and (final or now - at >= 10):
            self.ctx.log.warning("data loss: queue full (policy drop_oldest): dropped the oldest %d records%s",
                                 pending, "" if at < 0 else " since the last such line")
            pending, at = 0, now
        self._drops = (pending, at)

    @property
    def handled(self) -> int:
        """Records handled since this runner started (written, sent to the dead-letter sink, dropped): when
        it reaches a ``queue.total_in`` read earlier, everything queued before that read is handled."""
        return self._done + self.queue.dropped

    def open(self) -> None:
        try:
            self.sink.open()
        except EdgeStreamError:
            raise
        except Exception as e:
            raise StartError(self.label, f"cannot open sink: {type(e).__name__}: {e}") from e
        self.opened = True

    def start(self) -> None:
        self._thread = threading.Thread(
            target=supervise, args=(f"sink {self.label}", self._run, self.ctx.log),
            kwargs={"wait": self._abort.wait, "backoff_max_s": self.retry["max"] / 1000}, name=f"sink-{self.label}",
            daemon=True)
        self._thread.start()

    def put(self, records: list[Record]) -> None:
        self.queue.put(records, self.engine.abort)
        self._depth.set(len(self.queue))

    def _run(self) -> None:
        backoff = self.retry["initial"] / 1000
        while not self.opened and not self._abort.is_set():
            try:
                self.open()
            except EdgeStreamError as e:
                self.ctx.log.error("%s (retrying in %.1fs)", e, backoff)
                if self._abort.wait(backoff):
                    return
                backoff = min(backoff * 2, self.retry["max"] / 1000)
        while True:
            batch = self.queue.get(self.batch_size, self.linger_s, 0.5)
            self._depth.set(len(self.queue))
            if batch:
                self._write(batch)
                self._done += len(batch)
            elif self.queue.closed and not len(self.queue):
                break
        for what, fn in (("flush", self.sink.flush), ("close", self.sink.close)):
            try:
                fn()
            except Exception as e:
                self.ctx.log.error("%s failed: %s: %s", what, type(e).__name__, e)

    def _write(self, batch: list[Record]) -> None:
        attempt = 0
        wait = self.retry["initial"] / 1000
        while True:
            try:
                rejected = self.sink.write(batch)
            except OutputGoneError as e:
                self._gone(e, len(batch))
                return
            except Exception as e:
                attempt += 1
                self.engine.metrics.inc("edgestream_sink_errors_total", self.label)
                limit = self.retry["attempts"]
                if limit and attempt >= limit:
                    self.ctx.log.error("write failed %d times, sending %d records to the dead-letter sink: %s: %s",
                                       attempt, len(batch), type(e).__name__, e)
                    for r in batch:
                        self.ctx.dead_letter(r, f"sink {self.label} failed {attempt} times: {type(e).__name__}: {e}")
                    return
                if self._abort.is_set():
                    self.abandoned += len(batch)
                    self.engine.metrics.inc("edgestream_sink_dropped_records_total", self.label, len(batch))
                    self.ctx.log.error("stop timed out: abandoned %d records after: %s", len(batch), e)
                    return
                if not self.failing or attempt in (1, 10, 100) or attempt % 1000 == 0:
                    self.ctx.log.error("write failed (attempt %d, retrying in %.2fs): %s: %s",
                                       attempt, wait, type(e).__name__, e)
                self.failing = True
                self._abort.wait(wait)
                wait = min(wait * 2, self.retry["max"] / 1000)
                continue
            if self.failing:
                self.ctx.log.warning("write recovered after %d failed attempts", attempt)
                self.failing = False
            n_bad = 0
            for r, reason in rejected or ():
                n_bad += 1
                self.ctx.dead_letter(r, reason)
            self._written.inc(len(batch) - n_bad)
            return

    def _gone(self, e: OutputGoneError, n: int) -> None:
        """The destination went away for good: the records are dropped, not retried; said once."""
        self.engine.metrics.inc("edgestream_sink_dropped_records_total", self.label, n)
        if not self.gone:
            self.gone = True
            self.ctx.log.error("sink %s: %s; its records are dropped from now on (counted in "
                               "edgestream_sink_dropped_records_total), the rest of the hub goes on",
                               self.label, e.args[0].split(": ", 1)[-1])

    def stop(self, deadline: float) -> list[Record]:
        """Drain and close; returns records still queued if it had to give up (or after a swap)."""
        self._dropped(0, final=True)
        self.queue.close()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
            if self._thread.is_alive():
                self._abort.set()
                self._thread.join(2.0)
        else:
            self._abort.set()
            if self.opened:
                try:
                    self.sink.close()
                except Exception:
                    pass
        return self.queue.kill()


class PipelineRunner:
    """One pipeline's processors on their own thread, fed by a bounded input queue."""

    def __init__(self, engine: "Engine", pc: PipelineConfig,
                 procs: list[tuple[ComponentConfig, Any, ComponentContext]]) -> None:
        self.engine, self.pc, self.procs = engine, pc, procs
        self.name = pc.name
        m = engine.metrics
        self.input = BoundedQueue(pc.queue, "block")
        self._in = m.child("edgestream_pipeline_records_in_total", pc.name)
        self._out = m.child("edgestream_pipeline_records_out_total", pc.name)
        self._depth = m.child("edgestream_pipeline_queue_records", pc.name)
        self._thread: threading.Thread | None = None
        self._failures = 0
        self._stopping = threading.Event()
        self.in_flight = 0  # records taken from the input and not yet handed to the sinks
        self.flush_at_end: bool | None = None  # True: flush when it ends (a reload replaces it); None: engine says
        self.final: Section | None = None  # its checkpoint section once it ended (None if the snapshot failed)
        # processors that report their state size, with their gauges, refreshed on this thread
        self._stateful = [(cc.label, p, [(key, m.child(name, cc.label)) for key, name in STATE_GAUGES.items()])
                          for cc, p, _ in procs if callable(getattr(p, "state_stats", None))]
        self._stats_failed: set[str] = set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._supervise, name=f"pipeline-{self.name}", daemon=True)
        self._thread.start()

    def put(self, records: list[Record]) -> None:
        self.input.put(records, self.engine.abort)

    def _supervise(self) -> None:
        """Run the loop; a bug outside the processors restarts it (at once when stopping: it must drain)."""
        supervise(f"pipeline {self.name}", self._run, log, wait=self._restart_wait,
                  backoff_max_s=self.engine.backoff_max_s,
                  on_crash=lambda e: self.engine.metrics.inc("edgestream_pipeline_errors_total", self.name))

    def _restart_wait(self, s: float) -> bool:
        self._stopping.wait(s)
        return False

    def _run(self) -> None:
        tick_s = self.pc.tick_ms / 1000
        size = self.pc.batch.get("size", 500)
        linger_s = self.pc.batch.get("linger", 0) / 1000
        next_tick = time.monotonic() + tick_s
        next_stats = time.monotonic() if self._stateful else float("inf")
        self.in_flight = 0
        inq = self.input
        while True:
            batch = inq.get(size, linger_s, max(0.0, min(next_tick, next_stats) - time.monotonic()))
            self._depth.set(len(inq))
            if batch:
                self._in.inc(len(batch))
                self.in_flight = len(batch)
                self._guarded(batch, functools.partial(self._chain, 0, batch))
                self.in_flight = 0
            marker = inq.take_marker() if inq.markers else None
            if marker is not None:
                marker.reached(self)  # a checkpoint's barrier: everything queued before it was processed
            elif not batch and inq.closed and not len(inq) and not inq.markers:
                break
            t = time.monotonic()
            if t >= next_tick:
                self._guarded(None, self._tick)
                next_tick = t + tick_s
            if t >= next_stats:
                self._refresh_state_stats()
                next_stats = t + _STATS_EVERY_S
        flush = self.flush_at_end
        if flush if flush is not None else (not self.engine.durable or self.engine.finished.is_set()):
            self._guarded(None, self._flush)
        try:
            self.final = section({"processors": self.snapshot()})
        except Exception as e:
            log.error("pipeline %s: cannot snapshot its processors at the end: %s: %s", self.name,
                      type(e).__name__, e)
        self._refresh_state_stats()

    def _refresh_state_stats(self) -> None:
        """Copy each stateful processor's ``state_stats()`` into its gauges (on the pipeline's own
        thread, so the processor is never read while it runs)."""
        for label, p, gauges in self._stateful:
            try:
                stats = p.state_stats()
                for key, gauge in gauges:
                    gauge.set(stats.get(key, 0))
            except Exception as e:
                if label not in self._stats_failed:  # once per processor: a broken method, not an event
                    self._stats_failed.add(label)
                    log.error("processor %s: state_stats() failed: %s: %s", label, type(e).__name__, e)

    def _guarded(self, batch: list[Record] | None, fn: Callable[[], list[Record]]) -> None:
        try:
            out = fn()
        except Exception as e:
            self._failures += 1
            self.engine.metrics.inc("edgestream_pipeline_errors_total", self.name)
            reason = f"pipeline {self.name}: {type(e).__name__}: {e}"
            log.error("%s (%d in a row)", reason, self._failures)
            for r in batch or ():
                self.engine.dead_letter(self.name, self.name, r, reason, self.pc.dead_letter)
            if self._failures > 1:  # keeps failing: back off, but never past a stop
                wait = min(0.05 * 2 ** min(self._failures, 20), self.engine.backoff_max_s)
                self._stopping.wait(wait)
            return
        self._failures = 0
        if out:
            self._emit(out)

    def _chain(self, start: int, records: list[Record]) -> list[Record]:
        now = now_ms()
        procs = self.procs
        for i in range(start, len(procs)):
            if not records:
                break
            records = procs[i][1].process(records, now)
        return records

    def _tick(self) -> list[Record]:
        now = now_ms()
        out: list[Record] = []
        for i, (_, p, _) in enumerate(self.procs):
            emitted = p.tick(now)
            if emitted:
                out.extend(self._chain(i + 1, emitted))
        return out

    def _flush(self) -> list[Record]:
        out: list[Record] = []
        for i, (_, p, _) in enumerate(self.procs):
            emitted = p.flush()
            if emitted:
                out.extend(self._chain(i + 1, list(emitted)))
        return out

    def _emit(self, records: list[Record]) -> None:
        self._out.inc(len(records))
        taps = self.engine.taps
        if taps is not None:
            taps.emitted(self.name, records)
        for name in self.pc.sinks:
            self.engine.put_sink(name, records)

    def snapshot(self) -> dict[str, Any]:
        """Each processor's snapshot for a checkpoint (``checkpoint_snapshot`` where it has one: the same
        JSON, encoded by the checkpoint entry by entry)."""
        return {cc.label: getattr(p, "checkpoint_snapshot", p.snapshot)() for cc, p, _ in self.procs}

    def close(self) -> None:
        """No more input: the pipeline drains what is queued, flushes and ends."""
        self.input.close()
        self._stopping.set()

    def join(self, deadline: float) -> list[Record]:
        """Wait for the drain until ``deadline``; returns the queued records it had to give up.

        A pipeline still busy at the deadline is reported only if it still holds records."""
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
            queued, in_flight = len(self.input), self.in_flight
            if self._thread.is_alive() and queued + in_flight:
                log.error("pipeline %s did not drain before the stop deadline: %d records still held "
                          "(%d queued, %d in its processors)", self.name, queued + in_flight, queued, in_flight)
        return self.input.kill()

    def stop(self, deadline: float) -> list[Record]:
        """Drain the input through the processors, then flush them; returns leftovers."""
        self.close()
        return self.join(deadline)


class SourceRunner:
    """A source and the pipelines it feeds. ``ticket`` counts the units it emitted (a checkpoint's cut
    reads it under ``intake.lock``)."""

    def __init__(self, engine: "Engine", cc: ComponentConfig, source: Source, ctx: ComponentContext) -> None:
        self.engine, self.cc, self.source, self.ctx = engine, cc, source, ctx
        self.name = cc.name
        self.intake: Intake = ctx.intake
        self.ticket = 0
        self._count = engine.metrics.child("edgestream_source_records_total", cc.label)
        self.started = False

    def emit(self, records: list[Record]) -> int:
        """Queue one unit's records (maybe none) to the source's pipelines; returns the unit's ticket."""
        with self.intake.lock:
            self.ticket += 1
            if records:
                self._count.inc(len(records))
                taps = self.engine.taps
                if taps is not None:
                    taps.source(self.name, records)
                for p in self.engine.targets.get(self.name, ()):
                    self.engine.put_pipeline(p, records)
            return self.ticket

    def positions(self) -> Any:
        try:
            return self.source.positions()
        except Exception as e:  # a source whose positions fail is checkpointed without them
            self.ctx.log.error("sequence positions not taken: %s: %s", type(e).__name__, e)
            return None

    def resume(self, positions: Any, where: str) -> None:
        """Continue from ``positions`` (from ``where``); positions the source cannot read are logged and
        left out (it then starts afresh: redelivered messages may count twice)."""
        if positions is None:
            return
        try:
            self.source.restore_positions(positions)
        except Exception as e:
            self.ctx.log.error("cannot resume the sequence positions from %s (%s: %s): starting without them, so "
                               "messages delivered again may be counted twice", where, type(e).__name__, e)

    def acknowledge(self, ticket: int) -> None:
        try:
            self.source.acknowledge(ticket)
        except Exception as e:
            self.ctx.log.error("acknowledging failed: %s: %s", type(e).__name__, e)

    def wants_checkpoint(self) -> bool:
        try:
            return bool(self.started and self.source.wants_checkpoint())
        except Exception:
            return False

    def open(self) -> None:
        try:
            self.source.open()
        except EdgeStreamError:
            raise
        except Exception as e:
            raise StartError(self.cc.label, f"cannot open source: {type(e).__name__}: {e}") from e

    def start(self) -> None:
        self.source.start(self.emit)
        self.started = True

    def stop(self) -> None:
        if self.started:
            try:
                self.source.stop()
            except Exception as e:
                self.ctx.log.error("stop failed: %s: %s", type(e).__name__, e)
        self.started = False


class Engine:
    """Runs one ``HubConfig``. ``registry=`` and ``metrics_registry=`` are injectable; ``fresh_state`` names
    pipelines that start with empty state whatever the checkpoint holds for them."""

    def __init__(self, config: HubConfig, *, registry: Registry | None = None, metrics_registry: Any = None,
                 fresh_state: Iterable[str] = ()) -> None:
        self.config = config
        self.fresh_state = set(fresh_state)
        self.store: CheckpointStore | None = None
        self.restored = Restored()
        self.checkpointer: Checkpointer | None = None
        self.registry = registry if registry is not None else Registry.default()
        self.metrics = HubMetrics(metrics_registry)
        self.abort = threading.Event()  # set when a stop runs out of time: puts stop blocking
        self.sinks: dict[str, SinkRunner] = {}
        self.pipelines: dict[str, PipelineRunner] = {}
        self.sources: dict[str, SourceRunner] = {}
        self.targets: dict[str, list[str]] = {}
        self.finished = threading.Event()  # every source is finite and done
        self._lock = threading.RLock()  # one start/stop/reload (and checkpoint cut) at a time
        self._metrics_server: Any = None
        self.metrics_url: str | None = None  # where /metrics is served, once started
        self._dl_log_at: dict[str, float] = {}
        self._watch: threading.Thread | None = None
        self._running = False
        self.devices = DeviceFeed()  # the device registry's way in (stable across reloads)
        self.device_service: Any = None
        self.state_dir: Path | None = None
        self.taps: Any = None  # a ``taps.Taps`` when the REST API runs: the latest records it may show
        self._split: tuple[str, ...] = ()  # hub.workers, partitions, take as started
        self.share = share_of(config.hub)  # the devices this process takes (hub.workers, hub.partitions, hub.take)
        if not self.share.whole:
            self.share.shared = frozenset(shared_sources(config, self.registry))
        self._apply_hub(config)

    def _apply_hub(self, config: HubConfig) -> None:
        logging.getLogger("edgestream").setLevel(config.hub["log_level"].upper())
        self.backoff_max_s = config.hub["restart_backoff_max"] / 1000
        sd = config.state.get("dir")
        # where components keep files of their own (ComponentContext.state_path): state.dir when set
        self.component_state_dir = Path(sd if os.path.isabs(sd) else os.path.join(config.base_dir, sd)) if sd else None
        self.state_interval_s = config.state["interval"] / 1000
        where = state_dir(config.state, config.base_dir)
        split = tuple(str(config.hub.get(k)) for k in ("workers", "partitions", "take"))
        if self._running and split != self._split:
            log.warning("hub.workers, hub.partitions and hub.take take effect at the next start, which refuses the "
                        "state kept now if they split the devices another way: set them back before it, or stop "
                        "the hub and run `edgestream state reset --all` (open windows are lost)")
        self._split = split
        if not self._running:
            self.state_dir = where  # the checkpoints' folder; None: not durable
        elif where != self.state_dir:
            log.warning("state.dir and state.enabled take effect at the next start; checkpoints still go to %s",
                        self.state_dir or "nowhere (state.enabled: false)")

    @property
    def lock(self) -> threading.RLock:
        """Held by start, stop and reload; a checkpoint's cut takes it so that it never sees half a reload."""
        return self._lock

    @property
    def durable(self) -> bool:
        """Does this hub checkpoint (``state.enabled``, the default)?"""
        return self.state_dir is not None

    # -- routing --
    def targets_of(self, config: HubConfig) -> dict[str, list[str]]:
        t: dict[str, list[str]] = {s: [] for s in config.sources}
        for p in config.pipelines.values():
            for s in p.sources:
                t.setdefault(s, []).append(p.name)
        return t

    def put_pipeline(self, name: str, records: list[Record]) -> None:
        for _ in range(_PUT_RETRIES):
            p = self.pipelines.get(name)
            if p is None:
                return
            try:
                p.put(records)
                return
            except QueueClosed:
                time.sleep(0.001)  # swapped by a reload: the new runner is being installed
        log.error("pipeline %s: no live input queue, %d records lost", name, len(records))

    def put_sink(self, name: str, records: list[Record]) -> None:
        for _ in range(_PUT_RETRIES):
            s = self.sinks.get(name)
            if s is None:
                log.error("sink %s is gone: %d records lost", name, len(records))
                return
            try:
                s.put(records)
                return
            except QueueClosed:
                time.sleep(0.001)
        log.error("sink %s: no live input queue, %d records lost", name, len(records))

    def dead_letter(self, component: str, pipeline: str | None, record: Any, reason: str,
                    sink: str | None = None) -> None:
        """Route a rejected record, with the reason, to its dead-letter sink; never blocks."""
        self.metrics.inc("edgestream_hub_dead_letters_total", component)
        reason = deadletter.clip(reason)
        sink = sink or self.config.hub.get("dead_letter")
        runner = self.sinks.get(sink) if sink else None
        entry: dict[str, Any] | None = None
        if self.taps is not None:
            entry = {"reason": reason, "component": component, "pipeline": pipeline, "at_ms": now_ms(),
                     "record": deadletter.bounded(record)}
            self.taps.dead_letter(entry)
        if runner is None or runner.label == component:
            t = time.monotonic()
            if t - self._dl_log_at.get(component, 0.0) >= 1.0:
                self._dl_log_at[component] = t
                log.warning("%s rejected a record (no dead-letter sink): %s", component, reason)
            return
        if entry is None:
            entry = {"reason": reason, "component": component, "pipeline": pipeline, "at_ms": now_ms(),
                     "record": deadletter.bounded(record)}
        try:
            runner.queue.put([entry], _ALWAYS)  # over capacity rather than block the rejecting stage
        except QueueClosed:
            log.warning("%s rejected a record (dead-letter sink restarting): %s", component, reason)

    def _late(self, component: str, pipeline: str | None, record: Record) -> None:
        self.metrics.inc("edgestream_hub_late_records_total", component)
        p = self.config.pipelines.get(pipeline or "")
        self.dead_letter(component, pipeline, record, "late record", p.dead_letter if p else None)

    # -- building --
    def _ctx(self, kind: str, cc: ComponentConfig, pipeline: str | None, dl_sink: str | None,
             resume: Any = None) -> ComponentContext:
        def dl(component: str, pl: str | None, record: Any, reason: str) -> None:
            self.dead_letter(component, pl, record, reason, dl_sink)

        return ComponentContext(kind, cc.name, cc.label, pipeline=pipeline, base_dir=self.config.base_dir,
                                connections=self.config.connections, registry=self.registry, metrics=self.metrics,
                                resume_state=resume, dead_letter=dl, late=self._late,
                                state_dir=str(self.component_state_dir) if self.component_state_dir else None,
                                dead_letter_target=kind == "sink" and cc.name in deadletter.targets(self.config),
                                devices=self.devices if kind == "source" and self._tracked(cc.name) else None,
                                intake=Intake() if kind == "source" else None, durable=self.durable,
                                share=self.share)

    def _tracked(self, source: str) -> bool:
        """Does this source feed the device registry (``devices.sources``, or every wire source)?"""
        dev = self.config.devices
        if dev is None:
            return False
        return source in (dev["sources"] or wire_sources(self.config.sources))

    def _build_devices(self, config: HubConfig) -> Any:
        """The device service of ``config`` (None without a ``devices`` section), built, not started."""
        if config.devices is None:
            return None
        from edgestream_hub.reconcile import DeviceService

        def dl(component: str, pl: str | None, record: Any, reason: str) -> None:
            self.dead_letter(component, pl, record, reason)

        return DeviceService(config.devices, config, self.devices, self.metrics, dl, share=self.share)

    def _start_devices(self, service: Any) -> None:
        if service is not None:
            self.metrics.add_devices(self.devices)
            self.device_service = service.start()

    def _stop_devices(self) -> None:
        svc, self.device_service = self.device_service, None
        if svc is not None:
            try:
                svc.stop()
            except Exception as e:
                log.error("device service: stop failed: %s: %s", type(e).__name__, e)

    def _build(self, cc: ComponentConfig, ctx: ComponentContext) -> Any:
        t = self.registry.get(cc.kind, cc.type)
        if t is None:
            raise StartError(cc.label, f"unknown {cc.kind} type {cc.type!r}")
        try:
            return t.factory(cc.config, ctx)
        except EdgeStreamError as e:
            if isinstance(e, StartError):
                raise
            raise StartError(cc.label, str(e)) from e
        except Exception as e:
            raise StartError(cc.label, f"cannot build {cc.kind} {cc.type!r}: {type(e).__name__}: {e}") from e

    def build_sink(self, cc: ComponentConfig) -> SinkRunner:
        ctx = self._ctx("sink", cc, None, None)
        return SinkRunner(self, cc, self._build(cc, ctx), ctx)

    def build_source(self, cc: ComponentConfig) -> SourceRunner:
        ctx = self._ctx("source", cc, None, cc.common.get("dead_letter"))
        return SourceRunner(self, cc, self._build(cc, ctx), ctx)

    def build_pipeline(self, pc: PipelineConfig, resume: bool = True) -> PipelineRunner:
        """Build a pipeline's processors, each from its state in the checkpoint (``resume``) unless the
        pipeline is in ``fresh_state``. State a processor refuses (a changed query) is a StartError that
        says how to go on without it."""
        state = self._pipeline_state(pc.name) if resume else {}
        procs = []
        for cc in pc.processors:
            snap = state.get(cc.label)
            ctx = self._ctx("processor", cc, pc.name, pc.dead_letter, snap)
            try:
                proc = self._build(cc, ctx)
            except StartError as e:
                if snap is None or not self._builds_fresh(cc, pc):
                    raise
                cfg = self.config.path or "hub.yaml"
                why = str(e).removeprefix(cc.label + ": ")
                raise StartError(f"pipeline {pc.name}", f"processor {cc.label} cannot resume from "
                                 f"{self._restored_from()}: {why}. To start the pipeline with empty state, run "
                                 f"`edgestream hub run -c {cfg} --fresh-state {pc.name}` (or drop its state from "
                                 f"the checkpoint: `edgestream state reset -c {cfg} --pipeline {pc.name}`)") from e
            procs.append((cc, proc, ctx))
        return PipelineRunner(self, pc, procs)

    def _builds_fresh(self, cc: ComponentConfig, pc: PipelineConfig) -> bool:
        try:
            self._build(cc, self._ctx("processor", cc, pc.name, pc.dead_letter))
            return True
        except Exception:
            return False

    def _pipeline_state(self, name: str) -> dict[str, Any]:
        if name in self.fresh_state:
            return {}
        sec = self.restored.sections.get(f"pipeline/{name}")
        procs = sec.get("processors") if isinstance(sec, dict) else None
        return procs if isinstance(procs, dict) else {}

    def _warn_unclaimed_state(self, cfg: HubConfig) -> None:
        """Say which processor state of the checkpoint no pipeline of the config takes (a pipeline or processor
        renamed or removed): the next checkpoint drops it, and the records it held are lost."""
        for key, sec in sorted(self.restored.sections.items()):
            name = key.removeprefix("pipeline/")
            procs = sec.get("processors") if isinstance(sec, dict) else None
            if name == key or name in self.fresh_state or not isinstance(procs, dict):
                continue
            pc = cfg.pipelines.get(name)
            left = sorted(set(procs) - {cc.label for cc in pc.processors} if pc is not None else set(procs))
            if left:
                log.warning("state: %s holds the state of pipeline %s (processor %s) that no pipeline of the config "
                            "takes (renamed or removed): the next checkpoint drops it, and the records it holds (its "
                            "open windows) are lost; `edgestream state verify` shows this before a start",
                            self._restored_from(), name, ", ".join(left))

    def _restored_from(self) -> str:
        r = self.restored
        if r.n is not None:
            return f"checkpoint {r.n} in {self.state_dir}"
        return f"the state files in {self.state_dir}"

    def sink_marks(self, names: Iterable[str]) -> dict[str, tuple[SinkRunner, int]]:
        """For each named sink, its runner and how many records had been queued to it until now."""
        out = {}
        for n in names:
            s = self.sinks.get(n)
            if s is not None:
                out[n] = (s, s.queue.total_in)
        return out

    # -- state --
    def _open_state(self) -> None:
        """Lock the state folder, clear what a crash left half written, and read the newest checkpoint."""
        assert self.state_dir is not None
        st = self.config.state
        store = CheckpointStore(self.state_dir, full_every=st["full_every"], retain=st["retain"])
        try:
            store.lock()
        except CheckpointError as e:
            raise StartError("state", str(e)) from e
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise StartError("state", f"cannot use state dir {self.state_dir}: {e.strerror or e}") from e
            # a full disk is no reason not to start: checkpoints fail (and say so) until there is room
            log.error("state: cannot lock %s (%s): starting anyway; checkpoints fail until there is room, and the "
                      "broker keeps what is not acknowledged meanwhile", self.state_dir, e.strerror or e)
        for name in store.remove_temp_files():
            log.warning("state: removed %s, a checkpoint a crash left half written (the one before it is used)",
                        name)
        restored = store.restore()
        for problem in restored.problems:
            log.error("state: skipped a checkpoint: %s", problem)
        if restored.n is not None:
            log.info("state: resuming from checkpoint %d in %s (%s)", restored.n, self.state_dir,
                     time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime((restored.at_ms or 0) / 1000)))
            if restored.problems:  # a newer one was skipped: the broker forgot what that one made safe
                log.error("state: checkpoint %d is older than the newest: the broker no longer holds what the hub "
                          "acknowledged after its cut, so those records may be missing from the windows then open "
                          "(and a window closed since may be written again with fewer); the devices' next records "
                          "show it as a gap", restored.n)
        elif restored.legacy:
            log.info("state: resuming from the per-pipeline state files in %s", self.state_dir)
        elif restored.problems:
            log.error("state: no usable checkpoint in %s: starting with empty state", self.state_dir)
        for name in sorted(self.fresh_state):
            log.warning("state: pipeline %s starts with empty state (--fresh-state)", name)
        self.store, self.restored = store, restored

    def _close_state(self) -> None:
        store, self.store = self.store, None
        if store is not None:
            store.unlock()

    def _resume_sources(self, sources: dict[str, SourceRunner]) -> None:
        for name, src in sources.items():
            sec = self.restored.sections.get(f"source/{name}")
            if isinstance(sec, dict):
                src.resume(sec.get("positions"), self._restored_from())

    # -- lifecycle --
    def start(self) -> "Engine":
        """Build and open everything, then start sinks, pipelines and sources (in that order)."""
        with self._lock:
            cfg = self.config
            unknown = sorted(self.fresh_state - set(cfg.pipelines))
            if unknown:
                have = ", ".join(cfg.pipelines) or "none"
                raise ConfigError(ConfigIssue("--fresh-state", f"no pipeline {', '.join(map(repr, unknown))} in "
                                                               f"the config (pipelines: {have})"))
            if self.state_dir is not None:
                self._open_state()
            try:
                for name, cc in cfg.sinks.items():
                    self.sinks[name] = self.build_sink(cc)
                for name, pc in cfg.pipelines.items():
                    self.pipelines[name] = self.build_pipeline(pc)
                self._warn_unclaimed_state(cfg)
                for name, cc in cfg.sources.items():
                    self.sources[name] = self.build_source(cc)
                self._resume_sources(self.sources)
                for s in self.sinks.values():
                    s.open()
                for src in self.sources.values():
                    src.open()
                devices = self._build_devices(cfg)
                if cfg.metrics.get("listen"):
                    try:
                        self._metrics_server = self.metrics.serve(
                            cfg.metrics["listen"], read_timeout_s=cfg.metrics["read_timeout"] / 1000,
                            max_connections=cfg.metrics["max_connections"])
                    except OSError as e:
                        raise StartError("metrics",
                                         f"cannot listen on {cfg.metrics['listen']}: {e.strerror or e}") from e
                    host, port = self._metrics_server.server_address[:2]
                    self.metrics_url = f"http://{f'[{host}]' if ':' in host else host}:{port}/metrics"
            except BaseException:
                self._close_unstarted()
                self._close_state()
                raise
            self._declare(self.sinks.values(), self.pipelines.values(), self.sources.values())
            self.targets = self.targets_of(cfg)
            for s in self.sinks.values():
                s.start()
            for p in self.pipelines.values():
                p.start()
            self._start_devices(devices)  # before the sources: it sees their first message
            for src in self.sources.values():
                src.start()
            self._running = True
            if self.store is not None:
                self.checkpointer = Checkpointer(self, self.store, self.restored)
                self.metrics.add_state(self.checkpointer)
                self.checkpointer.start()
            self._watch = threading.Thread(target=self._watch_finite, name="engine-finite", daemon=True)
            self._watch.start()
            log.info("hub started: %d sources, %d pipelines, %d sinks%s%s", len(self.sources), len(self.pipelines),
                     len(self.sinks), f"; checkpoints in {self.state_dir}" if self.durable else
                     " (state.enabled: false: no checkpoints)", f"; metrics at {self.metrics_url}"
                     if self.metrics_url else "")
        if self.fresh_state and self.checkpointer is not None:
            self._checkpoint_fresh_start(self.checkpointer)
        return self

    def _checkpoint_fresh_start(self, cp: Checkpointer) -> None:
        """Make a ``--fresh-state`` start durable at once: a hub started again without the flag (a worker the
        supervisor restarts, a service manager's restart) before the first periodic checkpoint would otherwise
        resume the state the flag was given to drop (and refuse it again after a changed query)."""
        if cp.take_now():
            log.info("state: checkpoint %d written at the start (--fresh-state %s)", cp.last_n,
                     ", ".join(sorted(self.fresh_state)))
        else:
            log.warning("state: no checkpoint written at the start: until the first one, a start without "
                        "--fresh-state resumes checkpoint %s", self.restored.n)

    def _declare(self, sinks: Any, pipelines: Any, sources: Any) -> None:
        """Every series of these components, at 0, before they handle a record."""
        m = self.metrics
        for s in sinks:
            m.declare("sink", s.label)
        for p in pipelines:
            m.declare("pipeline", p.name)
            for cc, proc, _ in p.procs:
                m.declare("processor", cc.label)
                if callable(getattr(proc, "state_stats", None)):
                    m.declare("stateful", cc.label)
        for src in sources:
            m.declare("source", src.cc.label)

    def _close_unstarted(self) -> None:
        for src in self.sources.values():
            try:
                src.source.stop()
            except Exception:
                pass
        for s in self.sinks.values():
            if s.opened:
                try:
                    s.sink.close()
                except Exception:
                    pass
        self.sources.clear()
        self.pipelines.clear()
        self.sinks.clear()

    def _watch_finite(self) -> None:
        while self._running:
            srcs = list(self.sources.values())
            if srcs and all(s.source.finite and s.source.done() for s in srcs):
                self.finished.set()
                return
            time.sleep(0.05)

    def stop(self, timeout_s: float | None = None) -> bool:
        """Stop sources, drain pipelines and sinks. True if everything drained in time."""
        with self._lock:
            if not self._running:
                return True
            self._running = False
            timeout_s = self.config.hub["shutdown_timeout"] / 1000 if timeout_s is None else timeout_s
            deadline = time.monotonic() + timeout_s
            timer = threading.Timer(timeout_s, self.abort.set)
            timer.daemon = True
            timer.start()
            try:
                cp = self.checkpointer
                if cp is not None:
                    cp.stop()
                    if not self.finished.is_set() and any(r.source.acknowledges for r in self.sources.values()):
                        # the last round closes the intake: what comes after it is neither taken nor acknowledged
                        cp.round(deadline=deadline, abort=self.abort, closing=True)
                for src in self.sources.values():
                    src.stop()
                self._stop_devices()
                left = 0
                for p in self.pipelines.values():  # all drain at once, then each is waited for
                    p.close()
                for p in self.pipelines.values():
                    left += len(p.join(deadline))
                for s in self.sinks.values():
                    rest = s.stop(deadline)
                    if rest:
                        self.metrics.inc("edgestream_sink_dropped_records_total", s.label, len(rest))
                        left += len(rest)
                    left += s.abandoned  # the batch a failing write was retrying
                if self._metrics_server is not None:
                    self._metrics_server.stop()  # bounded: a stalled scraper does not hold the stop
                    self._metrics_server = None
                clean = left == 0 and not self.abort.is_set()
                if not clean:
                    log.error("stop: %d records were not drained within %.1fs", left, timeout_s)
                if cp is not None:
                    self._final_checkpoint(cp, clean)
                log.info("hub stopped%s", "" if clean else " (drain incomplete)")
                return clean
            finally:
                timer.cancel()
                self.checkpointer = None
                self._close_state()

    def _final_checkpoint(self, cp: Checkpointer, clean: bool) -> None:
        """The last checkpoint, of the drained hub; none if the drain was incomplete or a snapshot failed
        (the last good one stays, and the broker delivers again what it did not see acknowledged). After
        an input that ended (every source finite and done, its windows flushed) it holds nothing: the
        next run starts afresh."""
        finals = {f"pipeline/{n}": p.final for n, p in self.pipelines.items()}
        if not clean or None in finals.values():
            log.error("state: no checkpoint written at the stop (%s); the next start resumes from checkpoint %s",
                      "the drain was incomplete" if not clean else "a pipeline's snapshot failed", cp.last_n)
            return
        positions = {n: pos for n, src in self.sources.items() if (pos := src.positions()) is not None}
        if self.finished.is_set():  # the input ended and was flushed: a next run reads it again from the start
            finals, positions = {}, {}
        w = cp.write_final({k: v for k, v in finals.items() if v is not None}, positions)
        if w is not None:
            log.info("state: checkpoint %d written at the stop", w.n)

    # -- hot reload --
    def reload(self, new: HubConfig) -> dict[str, list[str]]:
        """Apply a validated config, restarting only what changed. Returns what was done.

        Everything new is built before anything running is touched: if a
        component cannot be built the reload is refused (StartError) and
        the running config keeps going.
        """
        with self._lock:
            old = self.config
            conn_changed = {n for n in set(old.connections) | set(new.connections)
                            if old.connections.get(n) != new.connections.get(n)}

            def changed(cc: ComponentConfig, before: ComponentConfig | None) -> bool:
                return not cc.same_as(before) or cc.config.get("connection") in conn_changed

            sinks = {n for n, cc in new.sinks.items() if changed(cc, old.sinks.get(n))}
            srcs = {n for n, cc in new.sources.items() if changed(cc, old.sources.get(n))}
            pls = {n for n, pc in new.pipelines.items() if not pc.same_as(old.pipelines.get(n))}
            gone_sinks = set(old.sinks) - set(new.sinks)
            gone_srcs = set(old.sources) - set(new.sources)
            gone_pls = set(old.pipelines) - set(new.pipelines)
            hub_changed = new.hub != old.hub or new.state != old.state or new.metrics != old.metrics
            dev_changed = new.devices != old.devices or new.state != old.state or new.base_dir != old.base_dir or (
                new.devices is not None and new.devices["connection"] in conn_changed) or (
                {n: c.label for n, c in new.sources.items()} != {n: c.label for n, c in old.sources.items()})
            was_tracked = {n for n in old.sources if self._tracked(n)}
            self.config = new  # contexts built below see the new connections/base_dir
            # a source that starts or stops feeding the device registry is rebuilt
            srcs |= {n for n in new.sources if n in old.sources and (n in was_tracked) != self._tracked(n)}
            try:
                b_sinks = {n: self.build_sink(new.sinks[n]) for n in sorted(sinks)}
                b_pls = {n: self.build_pipeline(new.pipelines[n], resume=False) for n in sorted(pls)}
                b_srcs = {n: self.build_source(new.sources[n]) for n in sorted(srcs)}
                b_devices = self._build_devices(new) if dev_changed else None
            except BaseException:
                self.config = old
                raise
            if self.checkpointer is not None:
                self.checkpointer.cancel_round()  # it may wait for a pipeline or sink about to be replaced
            self._apply_hub(new)
            self._declare(b_sinks.values(), b_pls.values(), b_srcs.values())
            if dev_changed:
                self._stop_devices()
                self._start_devices(b_devices)
            deadline = time.monotonic() + new.hub["shutdown_timeout"] / 1000
            # sinks first, so pipelines always have somewhere to write
            for n, runner in b_sinks.items():
                before = self.sinks.get(n)
                self.sinks[n] = runner
                if before is not None:
                    rest = before.stop(deadline)
                    if rest:
                        runner.queue.put(rest, _ALWAYS)
                runner.start()  # opens the sink on its own thread, retrying with backoff
            for n, pipe in b_pls.items():
                old_pipe = self.pipelines.get(n)
                self.pipelines[n] = pipe
                if old_pipe is not None:
                    old_pipe.flush_at_end = True  # its state does not carry over: its open windows are emitted
                    rest = old_pipe.stop(deadline)
                    if rest:
                        pipe.input.put(rest, _ALWAYS)
                pipe.start()
            self.targets = self.targets_of(new)
            carried: dict[str, Any] = {}
            for n in sorted(gone_srcs | srcs):
                old_src = self.sources.pop(n, None) if n in gone_srcs else self.sources.get(n)
                if old_src is not None:
                    old_src.stop()
                    carried[n] = old_src.positions()  # taken after its last unit: a redelivery is still known
            for n, src in b_srcs.items():
                self.sources[n] = src
                src.resume(carried.get(n), "the source it replaces")
                try:
                    src.open()
                    src.start()
                except EdgeStreamError as e:
                    log.error("reload: source %s did not start: %s", n, e)
            for n in sorted(gone_pls):
                p = self.pipelines.pop(n)
                p.flush_at_end = True
                p.stop(deadline)
            for n in sorted(gone_sinks):
                s = self.sinks.pop(n)
                s.stop(deadline)
            done = {"sinks": sorted(sinks), "pipelines": sorted(pls), "sources": sorted(srcs),
                    "removed": sorted(gone_sinks | gone_srcs | gone_pls)}
            if hub_changed:
                done["hub"] = ["settings"]
            if dev_changed:
                done["devices"] = ["service"]
            log.info("config reloaded: restarted %s", {k: v for k, v in done.items() if v} or "nothing")
            return done


class _AlwaysSet(threading.Event):
    def __init__(self) -> None:
        super().__init__()
        self.set()


_ALWAYS = _AlwaysSet()
