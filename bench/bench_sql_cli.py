"""``edgestream sql`` memory against input size: the peak RSS must not grow with the file.

Writes 10K and 1M lines of JSON (100 devices, ~1000 records per second of
event time, ~75 MB for 1M) to a temp folder, runs ``edgestream sql`` with a
1 s tumbling-window query over each in a child process (and the 1M file once
more through stdin), and prints each run's peak RSS (the child's
``ru_maxrss``), time and throughput. The CLI reads its inputs a batch at a
time, so the 1M-line peak should sit within a few MB of the 10K-line one.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.report import figure

QUERY = ("SELECT id, count(*) AS n, avg(temp) AS avg, min(temp) AS min, max(temp) AS max FROM s "
         "GROUP BY id, TUMBLINGWINDOW(ss, 1)")
DEVICES = 100
SMALL, LARGE = 10_000, 1_000_000
#: the most the 1M-line peak may exceed the 10K-line one and still count as flat
FLAT_MB = 5.0
SECTION = "edgestream sql on a JSON-lines file"


def write_records(path: Path, n: int) -> int:
    """n JSON lines in event-time order; returns the file size in bytes."""
    rnd = random.Random(1)
    ts = 1_700_000_000_000
    with path.open("w") as f:
        lines = []
        for i in range(n):
            ts += rnd.randint(0, 2)
            lines.append(f'{{"id": "dev{i % DEVICES}", "ts": {ts}, "temp": {rnd.randint(0, 400) / 10}, '
                         f'"room": "greenhouse-{i % 7}"}}\n')
            if len(lines) == 10_000:
                f.write("".join(lines))
                lines = []
        f.write("".join(lines))
    return path.stat().st_size


def peak_rss(argv: list[str], stdin_path: Path | None = None) -> tuple[float, float, int]:
    """(peak RSS in MB, seconds, rows printed) of one child process."""
    with open(stdin_path or os.devnull, "rb") as stdin, tempfile.TemporaryFile() as out:
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, stdin=stdin, stdout=out, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(p.pid, 0)
        secs = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        err = p.stderr.read().decode() if p.stderr else ""
        if p.stderr:
            p.stderr.close()
        if p.returncode != 0:
            raise RuntimeError(f"edgestream sql exited {p.returncode}: {err}")
        out.seek(0)
        rows = sum(1 for _ in out)
    return usage.ru_maxrss / 1024, secs, rows  # ru_maxrss is in KB on Linux


def main() -> None:
    cli = [sys.executable, "-m", "edgestream_tools.cli", "sql", QUERY]
    with tempfile.TemporaryDirectory(prefix="bench-sql-cli-") as tmp:
        runs = []
        for n in (SMALL, LARGE):
            path = Path(tmp) / f"s{n}.jsonl"
            size = write_records(path, n)
            rss, secs, rows = peak_rss(cli + ["--input", f"s={path}"])
            runs.append(rss)
            figure(SECTION, f"peak RSS, {n:,} lines from a file", rss, "MB", echo=False)
            print(f"edgestream sql, {n:>9,} lines ({size / 1e6:5.1f} MB) from a file: peak RSS {rss:6.1f} MB, "
                  f"{secs:5.2f} s, {n / secs:,.0f} rec/s, {rows:,} rows")
        rss, secs, rows = peak_rss(cli + ["--input", "s=-"], stdin_path=path)
        print(f"edgestream sql, {LARGE:>9,} lines through stdin:          peak RSS {rss:6.1f} MB, "
              f"{secs:5.2f} s, {LARGE / secs:,.0f} rec/s, {rows:,} rows")
        figure(SECTION, f"peak RSS, {LARGE:,} lines through stdin", rss, "MB", echo=False)
        grow = max(runs[1], rss) - runs[0]
        figure(SECTION, f"peak RSS growth from {SMALL:,} to {LARGE:,} lines", grow, "MB", target=f"<= {FLAT_MB:g}",
               echo=False)
        verdict = "flat" if grow <= FLAT_MB else f"NOT FLAT (more than {FLAT_MB:g} MB)"
        print(f"peak RSS growth from {SMALL:,} to {LARGE:,} lines: {grow:+.1f} MB: {verdict}")


if __name__ == "__main__":
    main()
