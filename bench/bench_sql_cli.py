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


# Linux keeps a process's ru_maxrss across exec, so a child forked from a large process (this one, after
# the other benchmarks) reports the parent's size as its peak: the command is started from this small
# launcher instead, which writes its child's ru_maxrss (KB) to the fd it is given.
LAUNCH = """import os, sys
fd = int(sys.argv[1])
p = os.fork()
if p == 0:
    os.close(fd)
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(p, 0)
os.write(fd, str(usage.ru_maxrss).encode())
sys.exit(os.waitstatus_to_exitcode(status))
"""


def peak_rss(argv: list[str], stdin_path: Path | None = None) -> tuple[float, float, int]:
    """(peak RSS in MB, seconds, rows printed) of one child process."""
    with open(stdin_path or os.devnull, "rb") as stdin, tempfile.TemporaryFile() as out:
        r, w = os.pipe()
        t0 = time.perf_counter()
        p = subprocess.Popen([sys.executable, "-c", LAUNCH, str(w), *argv], stdin=stdin, stdout=out,
                             stderr=subprocess.PIPE, pass_fds=(w,))
        os.close(w)
        _, err = p.communicate()
        secs = time.perf_counter() - t0
        with os.fdopen(r, "rb") as f:
            maxrss = f.read()
        if p.returncode != 0:
            raise RuntimeError(f"edgestream sql exited {p.returncode}: {err.decode()}")
        out.seek(0)
        rows = sum(1 for _ in out)
    return int(maxrss) / 1024, secs, rows  # ru_maxrss is in KB on Linux


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
