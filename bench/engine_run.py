"""An engine fed from records in memory into a sink that only counts: the harness for measuring what one
part of a pipeline costs (a processor, a plugin, the metrics endpoint) without MQTT or files.

>>> run = MemRun()
>>> secs = run.time('''
... sources: {s: {mem: {}}}
... sinks: {out: {discard: {}}}
... pipelines: {p: {from: s, processors: [passthrough: {}], to: out}}
... ''', [{"v": i} for i in range(3000)], expect=3000)
>>> secs > 0
True
"""

from __future__ import annotations

import tempfile
import threading
import time
from typing import Any

from edgestream_hub.components import ComponentContext, PollingSource, Sink
from edgestream_hub.config import load_config
from edgestream_hub.engine import Engine
from edgestream_hub.registry import Registry, component
from edgestream_hub.spec import Spec

BATCH = 1000  # records per poll of the in-memory source


class MemRun:
    """Registers a ``mem`` source (this run's records, ``BATCH`` at a time once the clock starts) and a
    ``discard`` sink (counts) in ``registry`` (default: the built-ins and installed plugins)."""

    def __init__(self, registry: Registry | None = None) -> None:
        self.registry = registry or Registry.default()
        self.records: list[dict[str, Any]] = []
        self.repeat = 1
        self.cpu_s = 0.0  # CPU seconds of this process (all threads) over the last timed run
        self.go = threading.Event()
        self.sinks: list[_Count] = []
        run = self

        class Mem(PollingSource):
            finite = True

            def __init__(self, ctx: ComponentContext) -> None:
                super().__init__(ctx)
                self.i = 0

            def poll(self) -> tuple[list[dict[str, Any]], float | None]:
                if not run.go.is_set():
                    return [], 0.001
                n = len(run.records)
                if self.i >= n * run.repeat:
                    return [], None
                at = self.i % n
                out = run.records[at:at + BATCH]
                self.i += len(out)
                return out, 0

        @component(Spec("mem", "benchmark source: records from memory", []))
        def mem(cfg: dict[str, Any], ctx: ComponentContext) -> Mem:
            return Mem(ctx)

        @component(Spec("discard", "benchmark sink: counts what it is given", []))
        def discard(cfg: dict[str, Any], ctx: ComponentContext) -> _Count:
            s = _Count()
            run.sinks.append(s)
            return s

        self.registry.register("source", "mem", mem)
        self.registry.register("sink", "discard", discard)

    def time(self, config: str, records: list[dict[str, Any]], expect: int, *, repeat: int = 1,
             during: Any = None, timeout_s: float = 60.0) -> float:
        """Seconds from the source's first poll until the ``discard`` sinks have ``expect`` records in all;
        the source emits ``records`` ``repeat`` times over.

        ``during(engine)``, if given, is called once the engine started, before the clock starts (to start
        a scraper, say); what it returns, if callable, is called when the run ends.
        """
        self.records = records
        self.repeat = repeat
        self.sinks.clear()
        self.go.clear()
        with tempfile.TemporaryDirectory(prefix="bench-engine-") as d:  # the engine's state (checkpoints) goes here
            e = Engine(load_config(text=config, env={}, registry=self.registry, base_dir=d), registry=self.registry)
            return self._time(e, expect, during, timeout_s)

    def _time(self, e: Engine, expect: int, during: Any, timeout_s: float) -> float:
        e.start()
        stop = during(e) if during else None
        try:
            t0, c0 = time.perf_counter(), time.process_time()
            self.go.set()
            deadline = time.monotonic() + timeout_s
            while sum(s.n for s in self.sinks) < expect:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the sinks took {sum(s.n for s in self.sinks)} of {expect} records "
                                       f"in {timeout_s:g} s")
                time.sleep(0.0005)
            self.cpu_s = time.process_time() - c0
            return time.perf_counter() - t0
        finally:
            if callable(stop):
                stop()
            e.stop()


class _Count(Sink):
    def __init__(self) -> None:
        self.n = 0

    def write(self, records: list[dict[str, Any]]) -> None:
        self.n += len(records)
