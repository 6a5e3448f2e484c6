"""The SQL windows against bytewax on the same workload, where bytewax installs.

bytewax is never a project dependency: this benchmark makes its own venv (``build/bench-venv``, kept
between runs) and installs ``BYTEWAX`` there; if that fails, RESULTS.md says so and why. The workload
is bench_sql's: 300,000 records of 100 devices in event-time order, in memory, batches of 1000: a
1 s tumbling window per device (count/avg/min/max) and a 10 s window every 1 s per device
(count/max; bytewax's ``SlidingWindower``). bytewax runs in its venv's Python
(``bench/bytewax_flow.py``), the SQL query in this one; both give the same rows (checked) and each
is timed over ``RUNS`` runs. bytewax has no per-record sliding window and no session window with a
longest duration, so those two kinds are compared with hand-written loops only (bench_sql).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.bench_sql import hand_hopping, hand_tumbling, make_records
from bench.report import REPORT, figure, note

SECTION = "SQL windows vs bytewax"
ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / "build" / "bench-venv"
BYTEWAX = "bytewax==0.21.1"
N = 300_000
RUNS = 3
HAND = {"tumbling": hand_tumbling, "hopping": hand_hopping}  # bench_sql's plain loops
QUERIES = {
    "tumbling 1 s per device, count/avg/min/max":
        ("tumbling", "SELECT id, count(*) AS n, avg(temp) AS avg, min(temp) AS min, max(temp) AS max FROM s "
                     "GROUP BY id, TUMBLINGWINDOW(ss, 1)"),
    "hopping 10 s every 1 s per device, count/max":
        ("hopping", "SELECT id, count(*) AS n, max(temp) AS max FROM s GROUP BY id, HOPPINGWINDOW(ss, 10, 1)"),
}


def venv_python() -> tuple[Path | None, str]:
    """The benchmark venv's Python with bytewax installed (making the venv if needed), or None and why not."""
    py = VENV / "bin" / "python"
    want = BYTEWAX.split("==")[1]
    probe = [str(py), "-c", "import importlib.metadata as m, bytewax; print(m.version('bytewax'))"]
    if py.exists():
        p = subprocess.run(probe, capture_output=True, text=True, timeout=120)
        if p.returncode == 0 and p.stdout.strip() == want:
            return py, want
    steps = [[sys.executable, "-m", "venv", "--clear", str(VENV)],
             [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", BYTEWAX]]
    for argv in steps:
        print(f"  {' '.join(argv)}", flush=True)
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired:
            return None, f"`{' '.join(argv[-3:])}` took more than 10 minutes"
        if p.returncode != 0:
            lines = [x for x in (p.stderr + p.stdout).splitlines() if x.strip() and "WARNING" not in x]
            return None, f"`{' '.join(argv[-3:])}` failed: {lines[-1] if lines else f'exit {p.returncode}'}"
    p = subprocess.run(probe, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        return None, f"bytewax installed but does not import: {p.stderr.strip().splitlines()[-1:]}"
    return py, p.stdout.strip()


def sql_runs(query: str, recs: list[dict[str, Any]]) -> tuple[list[float], list[dict[str, Any]]]:
    from edgestream_hub.api import SimpleContext
    from edgestream_hub.sql.processor import SqlProcessor

    secs: list[float] = []
    rows: list[dict[str, Any]] = []
    for _ in range(RUNS):
        p = SqlProcessor(query, SimpleContext())
        rows = []
        t0 = time.perf_counter()
        for i in range(0, len(recs), 1000):
            rows += p.process(recs[i:i + 1000], 0)
        rows += p.flush()
        secs.append(time.perf_counter() - t0)
    return secs, rows


def same_rows(kind: str, sql: list[dict[str, Any]], bw: list[list[Any]]) -> bool:
    """The SQL rows and bytewax's as multisets: (id, count, [avg,] min/max), floats to 9 digits."""
    def r9(x: float) -> float:
        return float(f"{x:.9g}")

    if kind == "tumbling":
        return (sorted((r["id"], r["n"], r9(r["avg"]), r["min"], r["max"]) for r in sql)
                == sorted((k, n, r9(s / n), lo, hi) for k, n, s, lo, hi in bw))
    return sorted((r["id"], r["n"], r["max"]) for r in sql) == sorted((k, n, hi) for k, n, hi in bw)


def main() -> None:
    py, version = venv_python()
    if py is None:
        REPORT.machine("bytewax (benchmark venv)", f"not installed: {version}")
        note(SECTION, f"bytewax could not be installed in {VENV.relative_to(ROOT)}, so it was not measured: {version}")
        return
    REPORT.machine("bytewax (benchmark venv)", f"{version} ({VENV.relative_to(ROOT)}, not a project dependency)")
    recs = make_records(N)
    with tempfile.TemporaryDirectory(prefix="bench-bytewax-") as d:
        src = Path(d) / "records.jsonl"
        src.write_text("".join(json.dumps(r) + "\n" for r in recs))
        for name, (kind, query) in QUERIES.items():
            out = Path(d) / f"{kind}.rows.jsonl"
            p = subprocess.run([str(py), str(Path(__file__).with_name("bytewax_flow.py")), kind, str(src), str(out),
                                str(RUNS)], capture_output=True, text=True, timeout=900, check=True)
            bw = json.loads(p.stdout.strip().splitlines()[-1])
            secs, rows = sql_runs(query, recs)
            bw_rows = [json.loads(x) for x in out.read_text().splitlines()]
            if bw["late"] or not same_rows(kind, rows, bw_rows):
                raise AssertionError(f"{name}: bytewax and the SQL query disagree ({bw['rows']} rows, {bw['late']} "
                                     f"late / {len(rows)} rows)")
            figure(SECTION, f"{name}: SQL", [N / s for s in secs], "records/s")
            figure(SECTION, f"{name}: bytewax", [N / s for s in bw["secs"]], "records/s")
            # the runs are not simultaneous (two processes, one after the other): the ratio of medians, and its
            # spread from the slowest and fastest runs of each
            fast, slow = N / min(secs) / (N / max(bw["secs"])), N / max(secs) / (N / min(bw["secs"]))
            med = (N / sorted(secs)[len(secs) // 2]) / (N / sorted(bw["secs"])[len(bw["secs"]) // 2])
            figure(SECTION, f"{name}: SQL / bytewax", [slow, med, fast], "ratio")
            hand = []
            for _ in range(RUNS):
                t0 = time.perf_counter()
                HAND[kind](recs)
                hand.append(time.perf_counter() - t0)
            figure(SECTION, f"{name}: hand-written loop", [N / s for s in hand], "records/s")
            figure(SECTION, f"{name}: SQL / hand-written loop (wall clock, same process)",
                   [h / s for h, s in zip(hand, secs)], "ratio")
    note(SECTION, f"{N:,} records, 100 devices, in memory, batches of 1000, {RUNS} runs each, the same rows out "
         "(checked). bytewax's event-time clock waits 5 s of wall time before closing a window: with its "
         "watermark following the wall clock, a shorter wait marked in-order records late on a fast replay. "
         "The ratio's spread pairs the slowest run of one with the fastest of the other.")


if __name__ == "__main__":
    main()
