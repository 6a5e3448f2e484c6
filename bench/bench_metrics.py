"""What the Prometheus endpoint costs a pipeline: on (``metrics.listen`` and a scraper) against off.

The engine keeps its counters whatever the config says (one increment per batch and component, the
``/metrics`` text is built from them on a scrape), so "off" is a hub without a ``metrics`` section and
"on" is one serving ``/metrics`` on loopback with a client scraping it every ``SCRAPE_S`` (ten times
as often as a demanding Prometheus job), with a ``devices`` section's per-device series absent. The
pipeline is a cheap one (in-memory source -> ``filter`` -> a sink that counts, ``bench/engine_run.py``),
so whatever the endpoint costs shows at its largest; ``RUNS`` interleaved
runs of each, records/s and the cost per run pair.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from typing import Any

from bench.engine_run import MemRun
from bench.report import figure, note

SECTION = "Costs: metrics on vs off"
N = 500_000
REPEAT = 20  # the records, emitted this many times over: runs of ~1-2 s, ~10-20 scrapes each
RUNS = 5
SCRAPE_S = 0.1
BASE = """
sources: {s: {mem: {}}}
sinks: {out: {discard: {}, batch: {size: 1000, linger: 0ms}}}
pipelines: {p: {from: s, processors: [{filter: {field: t, gt: 20}}], to: out, batch: {size: 1000, linger: 0ms}}}
"""
ON = BASE + "metrics: {listen: '127.0.0.1:0'}\n"


def scraper(times: list[float]) -> Any:
    """A ``during`` hook for :meth:`MemRun.time`: GET the engine's /metrics every SCRAPE_S until stopped."""

    def start(engine: Any) -> Any:
        stop = threading.Event()
        url = engine.metrics_url

        def loop() -> None:
            while not stop.wait(SCRAPE_S):
                t = time.perf_counter()
                with urllib.request.urlopen(url, timeout=10) as r:
                    r.read()
                times.append(time.perf_counter() - t)

        th = threading.Thread(target=loop, name="scraper", daemon=True)
        th.start()

        def end() -> None:
            stop.set()
            th.join(15)

        return end

    return start


def main() -> None:
    run = MemRun()
    records: list[dict[str, Any]] = [{"device": f"d{i % 100}", "t": float(i % 40), "seq": i} for i in range(N)]
    rates: dict[str, list[float]] = {"off": [], "on": []}
    cpu: dict[str, list[float]] = {"off": [], "on": []}  # CPU seconds per run: moves less with other load
    scrapes: list[float] = []
    kept = sum(1 for r in records if r["t"] > 20)
    run.time(BASE, records[:50_000], sum(1 for r in records[:50_000] if r["t"] > 20))  # warm up
    for _ in range(RUNS):
        rates["off"].append(N * REPEAT / run.time(BASE, records, kept * REPEAT, repeat=REPEAT))
        cpu["off"].append(run.cpu_s)
        rates["on"].append(N * REPEAT / run.time(ON, records, kept * REPEAT, repeat=REPEAT,
                                                  during=scraper(scrapes)))
        cpu["on"].append(run.cpu_s)
    figure(SECTION, "pipeline without a metrics endpoint", rates["off"], "records/s")
    figure(SECTION, f"pipeline with /metrics scraped every {SCRAPE_S * 1000:.0f} ms", rates["on"], "records/s")
    figure(SECTION, "cost of the endpoint and its scrapes (1 - on/off, per run pair)",
           [100 * (1 - on / off) for on, off in zip(rates["on"], rates["off"])], "% of throughput")
    figure(SECTION, "CPU cost of the endpoint and its scrapes (on/off - 1, CPU seconds per run pair)",
           [100 * (on / off - 1) for on, off in zip(cpu["on"], cpu["off"])], "% of CPU")
    figure(SECTION, "one scrape of /metrics (a hub with one pipeline)", [x * 1000 for x in scrapes], "ms")
    note(SECTION, f"In-memory source -> filter -> counting sink, {N * REPEAT:,} records a run, runs interleaved; "
         "CPU is this process's (engine, server and scraper); the counters themselves are always kept (one "
         "increment per batch), so off means no endpoint and no scraper.")


if __name__ == "__main__":
    main()
