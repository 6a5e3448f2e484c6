"""Checkpoint rounds: a consistent cut of the running hub, made durable, then acknowledged.

``Checkpointer.round()`` takes one checkpoint:

1. **Cut.** It takes every source's ``intake.lock`` (a source decodes and emits
   each unit of input under it, so no unit is half way), reads each source's
   sequence positions and *ticket* (how many units it emitted), and puts a
   ``Barrier`` into every pipeline's input queue, behind everything queued.
   In the last round of a stop it also closes the intake of the sources that
   acknowledge: what they receive after the cut is never decoded nor
   acknowledged, so the broker delivers it again after the restart.
2. **Snapshots.** Each pipeline takes the barrier off its queue after every
   record queued before it, and snapshots its processors on its own thread
   (state is never read while it changes), noting for each of its sinks how
   many records had been queued to it by then.
3. **Sinks.** The round waits until every sink has handled (written, sent to
   the dead-letter sink, or dropped by its queue policy) what was queued to it
   before the cut: results of windows closed before the cut are then safe.
4. **Write.** The sections go to the ``CheckpointStore`` (atomic, checksummed,
   only what changed since the last one). A failed write (a full disk) is
   logged and counted, nothing is acknowledged, and processing goes on from
   the last good checkpoint.
5. **Acknowledge.** Each source acknowledges every unit up to its ticket.

So a message is acknowledged only once what it produced is either in a
checkpoint (in a processor's state, or among the sequence positions that will
drop its redelivery) or written by the sinks. A round that cannot finish
(a pipeline or sink that does not get there within ``ROUND_TIMEOUT_S``, a
reload that replaced a pipeline) is abandoned: nothing is acknowledged and the
next round starts afresh.

The thread runs a round every ``state.interval``, and sooner when a source asks
(``wants_checkpoint``: its window of unacknowledged messages is half full, or
its broker stopped sending while messages wait), at most every ``MIN_GAP_S``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Iterable

from edgestream_hub.checkpoint import CheckpointStore, Restored, Section, Written, section

if TYPE_CHECKING:
    from edgestream_hub.engine import Engine, PipelineRunner, SourceRunner

log = logging.getLogger("edgestream.hub.state")
ROUND_TIMEOUT_S = 60.0  # a round still waiting for a pipeline or a sink after this long is abandoned
MIN_GAP_S = 0.05  # rounds a source asks for come at most this often
CUT_WAIT_S = 2.0  # how long a cut waits for a source to finish its unit (it may be blocked on full pipelines)
POLL_S = 0.025  # how often the thread looks at the sources
_ERROR_LOG_EVERY_S = 30.0


def _acquire(lock: Any, abort: threading.Event) -> bool:
    """Take ``lock`` unless ``abort`` is set first (a stop holds the engine's lock while it ends this thread)."""
    while not lock.acquire(timeout=0.05):
        if abort.is_set():
            return False
    return True


def dumps(value: Any) -> str:
    """A section's JSON text (compact)."""
    return json.dumps(value, separators=(",", ":"))


class Barrier:
    """One round's marker in the pipelines' input queues; collects each pipeline's snapshot."""

    def __init__(self, rid: int, pipelines: Iterable[str]) -> None:
        self.id = rid
        self.waiting = set(pipelines)
        self.parts: dict[str, tuple[Section, dict[str, tuple[Any, int]]]] = {}
        self.errors: dict[str, str] = {}
        self.cancelled = False
        self._cond = threading.Condition()

    def reached(self, runner: "PipelineRunner") -> None:
        """Called on the pipeline's thread when it takes the barrier off its queue: snapshot its processors
        and note how many records each of its sinks had been given."""
        if self.cancelled:
            return
        try:
            text = section({"processors": runner.snapshot()})  # read here, while its state stands still
            err = None
        except Exception as e:  # a processor whose snapshot fails fails the round, never the pipeline
            text, err = Section(""), f"{type(e).__name__}: {e}"
        marks = runner.engine.sink_marks(runner.pc.sinks)
        with self._cond:
            if err is not None:
                self.errors[runner.name] = err
            else:
                self.parts[runner.name] = (text, marks)
            self.waiting.discard(runner.name)
            self._cond.notify_all()

    def cancel(self) -> None:
        with self._cond:
            self.cancelled = True
            self._cond.notify_all()

    def wait(self, deadline: float, abort: threading.Event) -> bool:
        """Until every pipeline reached the barrier: True, or False when cancelled, aborted or out of time."""
        with self._cond:
            while self.waiting and not self.cancelled and not abort.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
            return not self.waiting and not self.cancelled and not abort.is_set()


class Checkpointer:
    """Takes the engine's checkpoints; see the module doc. ``stats()`` feeds the state metrics."""

    def __init__(self, engine: "Engine", store: CheckpointStore, restored: Restored) -> None:
        self.engine = engine
        self.store = store
        self.restored = restored
        self._round_lock = threading.Lock()
        self._rid = 0
        self._barrier: Barrier | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.checkpoints = 0
        self.errors = 0
        self.last_duration_s: float | None = None
        self.last_size: int | None = None
        self.last_good_ms: int | None = restored.at_ms  # wall clock of the newest good checkpoint on disk
        self.last_n: int | None = restored.n
        self._error_logged_at = -1e9
        self._errors_unlogged = 0
        self._failing = 0  # rounds failed since the last good one

    # -- the thread --
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="checkpointer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the thread; a round under way is abandoned."""
        self._stop.set()
        b = self._barrier
        if b is not None:
            b.cancel()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def cancel_round(self) -> None:
        """Abandon the round under way (a reload is replacing what it waits for)."""
        b = self._barrier
        if b is not None:
            b.cancel()

    def _run(self) -> None:
        last = time.monotonic()
        next_due = last + self.engine.state_interval_s
        hold_until = 0.0  # after a failed round, rounds wait for the interval (no retry storm on a full disk)
        while not self._stop.wait(POLL_S):
            try:
                now = time.monotonic()
                asked = [r for r in list(self.engine.sources.values()) if r.wants_checkpoint()]
                self._gauges()
                if now >= next_due or (asked and now - last >= MIN_GAP_S and now >= hold_until):
                    last = now
                    ok = self.round(deadline=now + ROUND_TIMEOUT_S, abort=self._stop)
                    next_due = now + self.engine.state_interval_s
                    hold_until = 0.0 if ok else next_due
            except Exception as e:  # a bug here must not end durability silently
                log.error("checkpoint thread: %s: %s", type(e).__name__, e, exc_info=True)
                self._stop.wait(1.0)

    def _gauges(self) -> None:
        m = self.engine.metrics
        for r in list(self.engine.sources.values()):
            if r.source.acknowledges:
                m.child("edgestream_source_unacked_messages", r.cc.label).set(r.source.unacked())

    # -- one round --
    def take_now(self) -> bool:
        """One round now, on the caller's thread (the periodic ones go on); True if it was written."""
        return self.round(deadline=time.monotonic() + ROUND_TIMEOUT_S, abort=self._stop)

    def round(self, *, deadline: float, abort: threading.Event, closing: bool = False) -> bool:
        """Take one checkpoint; True if it was written (and its messages acknowledged)."""
        with self._round_lock:
            t0 = time.monotonic()
            engine = self.engine
            self._rid += 1
            if not _acquire(engine.lock, abort):  # never in the middle of a reload
                return False
            try:
                runners = sorted(engine.sources.items())
                pipes = dict(engine.pipelines)
                barrier = Barrier(self._rid, pipes)
                self._barrier = barrier
                cut = self._cut(runners, pipes, barrier, closing, abort)
            finally:
                engine.lock.release()
            if cut is None:
                self._barrier = None
                return False  # a source stayed busy (its pipelines full): the next round tries again
            positions, tickets = cut
            try:
                if not barrier.wait(deadline, abort):
                    waiting = ", ".join(sorted(barrier.waiting))
                    return self._abandoned(barrier, t0, deadline, abort, f"pipeline {waiting} did not reach it")
                if any(engine.pipelines.get(n) is not p for n, p in pipes.items()):
                    return self._abandoned(barrier, t0, deadline, abort, "a reload replaced a pipeline")
                if barrier.errors:
                    name, why = sorted(barrier.errors.items())[0]
                    return self._failed(f"pipeline {name}: a processor's snapshot failed: {why}")
                for name, (_, marks) in sorted(barrier.parts.items()):
                    for sink, (runner, mark) in marks.items():
                        if not self._sink_done(sink, runner, mark, deadline, abort, barrier):
                            return self._abandoned(barrier, t0, deadline, abort,
                                                   f"sink {runner.label} did not write what pipeline {name} gave it")
                sections: dict[str, str | Section] = {f"pipeline/{name}": text
                                                     for name, (text, _) in barrier.parts.items()}
                for name, pos in positions.items():
                    sections[f"source/{name}"] = dumps({"positions": pos})
                try:
                    written = self.store.write(sections)
                except (OSError, ValueError, TypeError) as e:
                    return self._failed(f"cannot write a checkpoint in {self.store.dir}: "
                                        f"{getattr(e, 'strerror', None) or e}; messages stay unacknowledged at the "
                                        "broker and processing goes on from the last good checkpoint")
                self._committed(written, time.monotonic() - t0)
                for runner, ticket in tickets:
                    if engine.sources.get(runner.name) is runner:  # not replaced by a reload meanwhile
                        runner.acknowledge(ticket)
                return True
            finally:
                self._barrier = None

    def _cut(self, runners: list[tuple[str, "SourceRunner"]], pipes: dict[str, Any], barrier: Barrier,
             closing: bool, abort: threading.Event) -> tuple[dict[str, Any], list[tuple["SourceRunner", int]]] | None:
        """Step 1 under every intake lock: positions and tickets, the barrier into every pipeline. None when
        a source holds its lock past ``CUT_WAIT_S`` (blocked on full pipelines: nothing is held meanwhile)."""
        locks = [r.intake.lock for _, r in runners]
        held: list[Any] = []
        give_up = time.monotonic() + CUT_WAIT_S
        for lk in locks:
            while not lk.acquire(timeout=0.05):
                if abort.is_set() or time.monotonic() >= give_up:
                    for h in reversed(held):
                        h.release()
                    return None
            held.append(lk)
        try:
            positions: dict[str, Any] = {}
            tickets: list[tuple[SourceRunner, int]] = []
            for name, r in runners:
                pos = r.positions()
                if pos is not None:
                    positions[name] = pos
                if r.source.acknowledges:
                    tickets.append((r, r.ticket))
                    if closing:
                        r.intake.closed = True
            for p in pipes.values():
                try:
                    p.input.put_marker(barrier)
                except Exception:  # a pipeline being replaced: this round cannot finish
                    barrier.cancel()
            return positions, tickets
        finally:
            for lk in reversed(held):
                lk.release()

    def _sink_done(self, name: str, runner: Any, mark: int, deadline: float, abort: threading.Event,
                   barrier: Barrier) -> bool:
        while runner.handled < mark:
            if barrier.cancelled or abort.is_set() or time.monotonic() >= deadline:
                return False
            if self.engine.sinks.get(name) is not runner:  # replaced by a reload: its count starts over
                barrier.cancel()
                return False
            time.sleep(0.002)
        return True

    def _committed(self, w: Written, took_s: float) -> None:
        self.checkpoints += 1
        self.last_duration_s = took_s
        self.last_size = w.size
        self.last_good_ms = w.at_ms
        self.last_n = w.n
        if self._failing:
            log.warning("checkpoint %d written: checkpoints work again after %d failed", w.n, self._failing)
            self._failing = self._errors_unlogged = 0
            self._error_logged_at = -1e9
        log.debug("checkpoint %d (%s, %d bytes) in %.1f ms", w.n, w.kind, w.size, took_s * 1000)

    def _failed(self, why: str) -> bool:
        self.errors += 1
        self._failing += 1
        now = time.monotonic()
        if now - self._error_logged_at >= _ERROR_LOG_EVERY_S:
            more = f" ({self._errors_unlogged} more failures since the last line)" if self._errors_unlogged else ""
            log.error("checkpoint failed: %s%s", why, more)
            self._error_logged_at = now
            self._errors_unlogged = 0
        else:
            self._errors_unlogged += 1
        return False

    def _abandoned(self, barrier: Barrier, t0: float, deadline: float, abort: threading.Event, why: str) -> bool:
        barrier.cancel()
        if abort.is_set():
            return False  # a stop: not a failure
        if time.monotonic() >= deadline:
            waited = time.monotonic() - t0
            return self._failed(f"round abandoned after {waited:.0f}s: {why} (busy, or blocked by a sink); "
                                "nothing was acknowledged")
        return False  # cancelled by a reload: the next round starts afresh

    # -- at a stop --
    def write_final(self, pipelines: dict[str, Section], positions: dict[str, Any]) -> Written | None:
        """The last checkpoint, after everything drained: the pipelines' final snapshots and the sources'
        positions (no acknowledgements: the sources have stopped)."""
        sections: dict[str, str | Section] = dict(pipelines)
        for name, pos in positions.items():
            sections[f"source/{name}"] = dumps({"positions": pos})
        t0 = time.monotonic()
        try:
            w = self.store.write(sections)
        except (OSError, ValueError, TypeError) as e:
            self._failed(f"cannot write the checkpoint at stop in {self.store.dir}: "
                         f"{getattr(e, 'strerror', None) or e}; the next start resumes from checkpoint "
                         f"{self.last_n} (the broker delivers again what was not acknowledged)")
            return None
        self._committed(w, time.monotonic() - t0)
        return w

    def stats(self) -> dict[str, Any]:
        """What the state metrics export."""
        return {"checkpoints": self.checkpoints, "errors": self.errors, "duration_s": self.last_duration_s,
                "size": self.last_size, "last_good_ms": self.last_good_ms}
