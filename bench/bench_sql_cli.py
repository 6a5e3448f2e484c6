"""``edgestream sql`` against input size and against a hand-written loop.

Writes 10K and 1M lines of JSON (100 devices, ~1000 records per second of
event time, ~75 MB for 1M) to a temp folder, runs ``edgestream sql`` with a
1 s tumbling-window query over each in a child process (and the 1M file once
more through stdin), and prints each run's peak RSS (the child's
``ru_maxrss``), time and throughput. The CLI reads its inputs a batch at a
time, so the 1M-line peak should sit within a few MB of the 10K-line one.

Then the ratios, in interleaved rounds on the 1M-line file (median and spread):
``edgestream sql`` (the whole command, start included) against a hand loop
that reads the same file (``json.loads`` per line, the same aggregates, its
rows written as JSON: the whole process too), and against the same hand loop
over the records already in memory (the loop alone). The hand loop's rows are
checked against the command's.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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


def hand_loop(records: Any) -> dict[tuple[str, int], list[Any]]:
    """QUERY by hand: count, sum, min and max of ``temp`` per device and 1 s window of ``ts``."""
    groups: dict[tuple[str, int], list[Any]] = {}
    for r in records:
        key = (r["id"], r["ts"] // 1000)
        t = r["temp"]
        g = groups.get(key)
        if g is None:
            groups[key] = [1, t, t, t]
        else:
            g[0] += 1
            g[1] += t
            if t < g[2]:
                g[2] = t
            if t > g[3]:
                g[3] = t
    return groups


def hand_rows(groups: dict[tuple[str, int], list[Any]]) -> str:
    return "".join(json.dumps({"id": k[0], "n": g[0], "avg": g[1] / g[0], "min": g[2], "max": g[3]},
                              separators=(",", ":")) + "\n" for k, g in groups.items())


def hand_main(mode: str, path: str, out: str) -> None:
    """The hand loop as a process: ``file`` reads, aggregates and writes; ``memory`` reads first and prints
    the seconds of the loop alone."""
    if mode == "file":
        with open(path, "rb") as f, open(out, "w") as o:
            o.write(hand_rows(hand_loop(json.loads(line) for line in f)))
        return
    with open(path, "rb") as f:
        records = [json.loads(line) for line in f]
    t0 = time.perf_counter()
    rows = hand_rows(hand_loop(records))
    secs = time.perf_counter() - t0
    with open(out, "w") as o:
        o.write(rows)
    print(secs)


def _rows(path: Path) -> list[tuple[Any, ...]]:
    """The rows of a JSON-lines output, comparable across writers (avg to 9 significant digits)."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return sorted((r["id"], r["n"], float(f"{r['avg']:.9g}"), r["min"], r["max"]) for r in rows)


def ratios(path: Path, n: int, rounds: int = 3) -> dict[str, list[float]]:
    """Records/s of the command and of the hand loops, ``rounds`` interleaved rounds; the ratios of each."""
    cli = [sys.executable, "-m", "edgestream_tools.cli", "sql", QUERY, "--input", f"s={path}"]
    hand = [sys.executable, "-m", "bench.bench_sql_cli", "--hand"]
    root = Path(__file__).resolve().parent.parent
    outs = {k: path.with_suffix(f".{k}.out") for k in ("cli", "std", "file", "memory")}
    rates: dict[str, list[float]] = {"cli": [], "std": [], "file": [], "memory": []}
    envs = {"cli": os.environ, "std": {**os.environ, "EDGESTREAM_JSON": "std"}}
    for _ in range(rounds):
        for k, env in envs.items():
            t0 = time.perf_counter()
            with open(outs[k], "wb") as o:
                subprocess.run(cli, stdout=o, check=True, cwd=root, env=env)
            rates[k].append(n / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        subprocess.run(hand + ["file", str(path), str(outs["file"])], check=True, cwd=root)
        rates["file"].append(n / (time.perf_counter() - t0))
        secs = float(subprocess.run(hand + ["memory", str(path), str(outs["memory"])], check=True, cwd=root,
                                    capture_output=True, text=True).stdout)
        rates["memory"].append(n / secs)
    if outs["std"].read_bytes() != outs["cli"].read_bytes():
        raise AssertionError("edgestream sql wrote other bytes with EDGESTREAM_JSON=std")
    want = _rows(outs["cli"])
    for k in ("file", "memory"):
        if _rows(outs[k]) != want:
            raise AssertionError(f"the hand loop ({k}) and edgestream sql disagree")
    return {"cli": rates["cli"], "vs file": [c / f for c, f in zip(rates["cli"], rates["file"])],
            "vs memory": [c / m for c, m in zip(rates["cli"], rates["memory"])],
            "std vs file": [c / f for c, f in zip(rates["std"], rates["file"])],
            "std vs memory": [c / m for c, m in zip(rates["std"], rates["memory"])],
            "file": rates["file"], "memory": rates["memory"]}


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
        r = ratios(path, LARGE)
        med = statistics.median
        print(f"{LARGE:,} lines, median of {len(r['cli'])} interleaved rounds: edgestream sql "
              f"{med(r['cli']):,.0f} rec/s (the whole command), hand loop {med(r['file']):,.0f} rec/s reading the "
              f"file (the whole process), {med(r['memory']):,.0f} rec/s over the records in memory (the loop alone)")
        for k in ("vs file", "vs memory", "std vs file", "std vs memory"):
            what = f"{k[4:]}, EDGESTREAM_JSON=std" if k.startswith("std") else k
            print(f"  edgestream sql / hand loop {what:<29}: {med(r[k]):.2f} "
                  f"(spread {min(r[k]):.2f}-{max(r[k]):.2f})")
        figure(SECTION, f"edgestream sql, {LARGE:,} lines from a file (the whole command)", r["cli"], "records/s",
               echo=False)
        figure(SECTION, "hand loop reading the file (the whole process)", r["file"], "records/s", echo=False)
        figure(SECTION, "hand loop over the records in memory (the loop alone)", r["memory"], "records/s", echo=False)
        for k, what in (("vs file", "hand loop reading the file"), ("vs memory", "hand loop on in-memory records"),
                        ("std vs file", "hand loop reading the file, EDGESTREAM_JSON=std"),
                        ("std vs memory", "hand loop on in-memory records, EDGESTREAM_JSON=std")):
            figure(SECTION, f"edgestream sql / {what} (same round)", r[k], "ratio", echo=False)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--hand":
        hand_main(*sys.argv[2:5])
    else:
        main()
