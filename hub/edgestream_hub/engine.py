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
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

from edgestream_hub import deadletter
from edgestream_hub.components import ComponentContext, Sink, Source, now_ms
from edgestream_hub.config import ComponentConfig, HubConfig, PipelineConfig, wire_sources
from edgestream_hub.devices import DeviceFeed
from edgestream_hub.errors import EdgeStreamError, OutputGoneError, StartError
from edgestream_hub.metrics import STATE_GAUGES, HubMetrics
from edgestream_hub.queues import BoundedQueue, QueueClosed
from edgestream_hub.registry import Registry
from edgestream_hub.supervise import supervise

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
        state_every = self.engine.state_interval_s
        next_state = time.monotonic() + state_every if state_every else None
        next_stats = time.monotonic() if self._stateful else float("inf")
        self.in_flight = 0
        while True:
            batch = self.input.get(size, linger_s, max(0.0, min(next_tick, next_stats) - time.monotonic()))
            self._depth.set(len(self.input))
            if batch:
                self._in.inc(len(batch))
                self.in_flight = len(batch)
                self._guarded(batch, functools.partial(self._chain, 0, batch))
                self.in_flight = 0
            elif self.input.closed and not len(self.input):
                break
            t = time.monotonic()
            if t >= next_tick:
                self._guarded(None, self._tick)
                next_tick = t + tick_s
            if state_every and next_state is not None and t >= next_state:
                self.engine.save_state(self)
                next_state = t + state_every
            if t >= next_stats:
                self._refresh_state_stats()
                next_stats = t + _STATS_EVERY_S
        if self.engine.state_dir is None:
            self._guarded(None, self._flush)
        self.engine.save_state(self)
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
        return {cc.label: p.snapshot() for cc, p, _ in self.procs}

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
    """A source and the pipelines it feeds."""

    def __init__(self, engine: "Engine", cc: ComponentConfig, source: Source, ctx: ComponentContext) -> None:
        self.engine, self.cc, self.source, self.ctx = engine, cc, source, ctx
        self.name = cc.name
        self._count = engine.metrics.child("edgestream_source_records_total", cc.label)
        self.started = False

    def emit(self, records: list[Record]) -> None:
        if not records:
            return
        self._count.inc(len(records))
        taps = self.engine.taps
        if taps is not None:
            taps.source(self.name, records)
        for p in self.engine.targets.get(self.name, ()):
            self.engine.put_pipeline(p, records)

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
    """Runs one ``HubConfig``. ``registry=`` and ``metrics_registry=`` are injectable."""

    def __init__(self, config: HubConfig, *, registry: Registry | None = None, metrics_registry: Any = None) -> None:
        self.config = config
        self.registry = registry if registry is not None else Registry.default()
        self.metrics = HubMetrics(metrics_registry)
        self.abort = threading.Event()  # set when a stop runs out of time: puts stop blocking
        self.sinks: dict[str, SinkRunner] = {}
        self.pipelines: dict[str, PipelineRunner] = {}
        self.sources: dict[str, SourceRunner] = {}
        self.targets: dict[str, list[str]] = {}
        self.finished = threading.Event()  # every source is finite and done
        self._lock = threading.RLock()  # one start/stop/reload at a time
        self._metrics_server: Any = None
        self.metrics_url: str | None = None  # where /metrics is served, once started
        self._dl_log_at: dict[str, float] = {}
        self._watch: threading.Thread | None = None
        self._running = False
        self.devices = DeviceFeed()  # the device registry's way in (stable across reloads)
        self.device_service: Any = None
        self.taps: Any = None  # a ``taps.Taps`` when the REST API runs: the latest records it may show
        self._apply_hub(config)

    def _apply_hub(self, config: HubConfig) -> None:
        logging.getLogger("edgestream").setLevel(config.hub["log_level"].upper())
        self.backoff_max_s = config.hub["restart_backoff_max"] / 1000
        sd = config.state.get("dir")
        self.state_dir = Path(sd if os.path.isabs(sd) else os.path.join(config.base_dir, sd)) if sd else None
        self.state_interval_s = config.state["interval"] / 1000 if self.state_dir else None

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
                                state_dir=str(self.state_dir) if self.state_dir else None,
                                dead_letter_target=kind == "sink" and cc.name in deadletter.targets(self.config),
                                devices=self.devices if kind == "source" and self._tracked(cc.name) else None)

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

        return DeviceService(config.devices, config, self.devices, self.metrics, dl)

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
        state = self.load_state(pc.name) if resume else {}
        procs = []
        for cc in pc.processors:
            ctx = self._ctx("processor", cc, pc.name, pc.dead_letter, state.get(cc.label))
            procs.append((cc, self._build(cc, ctx), ctx))
        return PipelineRunner(self, pc, procs)

    # -- state --
    def load_state(self, pipeline: str) -> dict[str, Any]:
        if self.state_dir is None:
            return {}
        f = self.state_dir / f"{pipeline}.json"
        try:
            return json.loads(f.read_text()).get("processors", {})
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            log.error("pipeline %s: ignoring unreadable state %s: %s", pipeline, f, e)
            return {}

    def save_state(self, runner: PipelineRunner) -> None:
        """Write the pipeline's processor snapshots atomically (temp file + rename)."""
        if self.state_dir is None:
            return
        try:
            snap = runner.snapshot()
            self.state_dir.mkdir(parents=True, exist_ok=True)
            f = self.state_dir / f"{runner.name}.json"
            tmp = f.with_suffix(".json.tmp")
            tmp.write_text(json.dumps({"pipeline": runner.name, "at_ms": now_ms(), "processors": snap}))
            os.replace(tmp, f)
        except Exception as e:
            log.error("pipeline %s: cannot write state: %s: %s", runner.name, type(e).__name__, e)

    # -- lifecycle --
    def start(self) -> "Engine":
        """Build and open everything, then start sinks, pipelines and sources (in that order)."""
        with self._lock:
            cfg = self.config
            if self.state_dir is not None:
                try:
                    self.state_dir.mkdir(parents=True, exist_ok=True)
                except OSError as e:
                    raise StartError("state", f"cannot create state dir {self.state_dir}: {e}") from e
            try:
                for name, cc in cfg.sinks.items():
                    self.sinks[name] = self.build_sink(cc)
                for name, pc in cfg.pipelines.items():
                    self.pipelines[name] = self.build_pipeline(pc)
                for name, cc in cfg.sources.items():
                    self.sources[name] = self.build_source(cc)
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
            self._watch = threading.Thread(target=self._watch_finite, name="engine-finite", daemon=True)
            self._watch.start()
            log.info("hub started: %d sources, %d pipelines, %d sinks%s", len(self.sources), len(self.pipelines),
                     len(self.sinks), f"; metrics at {self.metrics_url}" if self.metrics_url else "")
            return self

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
                log.info("hub stopped%s", "" if clean else " (drain incomplete)")
                return clean
            finally:
                timer.cancel()

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
                    rest = old_pipe.stop(deadline)
                    if rest:
                        pipe.input.put(rest, _ALWAYS)
                pipe.start()
            self.targets = self.targets_of(new)
            for n in sorted(gone_srcs | srcs):
                old_src = self.sources.pop(n, None) if n in gone_srcs else self.sources.get(n)
                if old_src is not None:
                    old_src.stop()
            for n, src in b_srcs.items():
                self.sources[n] = src
                try:
                    src.open()
                    src.start()
                except EdgeStreamError as e:
                    log.error("reload: source %s did not start: %s", n, e)
            for n in sorted(gone_pls):
                p = self.pipelines.pop(n)
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
