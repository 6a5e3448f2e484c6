"""What the REST API costs the engine: the taps it calls on every batch, and one turn of the live view.

The engine calls ``Taps.source`` for every batch a source emits and ``Taps.emitted`` for every batch a
pipeline hands its sinks (only with an ``api`` section); the live view turns what they took into events
four times a second on its own thread.
"""

from __future__ import annotations

import time
from typing import Any

from bench.report import figure

SECTION = "Costs: REST API taps and live view"
RUNS = 5


def _per_call(fn: Any, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def main() -> None:
    from edgestream_hub.live import EventBus, LiveView
    from edgestream_hub.taps import Taps

    recs = [{"device": f"d{i % 50}", "sensor": "temp", "window": "w", "ts": 1_700_000_000_000 + i, "avg": 20.5,
             "count": 10} for i in range(500)]
    taps = Taps(recent=200, results=100, dead_letters=100)
    for batch in (1, 50, 500):
        part = recs[:batch]
        runs = [_per_call(lambda part=part: taps.source("s", part), 20_000) for _ in range(RUNS)]
        figure(SECTION, f"taps.source, batches of {batch}, per record", [s / batch * 1e9 for s in runs], "ns")

    class _Engine:  # what the live view reads of an engine
        device_service = None

        def __init__(self) -> None:
            from edgestream_hub.metrics import HubMetrics

            self.taps = taps
            self.metrics = HubMetrics()

    bus = EventBus(256)
    view = LiveView(_Engine(), {"history": 240}, bus)
    client = bus.subscribe()
    assert client is not None

    def turn() -> None:
        taps.source("s", recs[:200])
        taps.emitted("p", recs[:100])
        view.turn(slow=False)
        client.take(0)

    runs = [_per_call(turn, 500) for _ in range(RUNS)]
    figure(SECTION, "live view turn (200 new source records, 100 results, 1 client)", [t * 1e3 for t in runs], "ms")
    figure(SECTION, "live view at 4 turns a second", [t * 4 * 100 for t in runs], "% of one core")
