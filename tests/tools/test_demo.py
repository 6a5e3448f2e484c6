"""``edgestream demo``: the plant end to end, its measured summary, its stops (time, Ctrl-C, a closed pipe)."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgestream_tools.cli import EXIT_BROKEN_PIPE

EDGESTREAM = [sys.executable, "-m", "edgestream_tools.cli"]
SUMMARY = re.compile(r"summary: (\d+) records from (\d+) devices, (\d+) windows, gaps (\d+), missing (\d+), "
                     r"duplicates (\d+); config push: (.*); (broker restarted (\d+)x|broker not restarted)")

pytestmark = pytest.mark.slow


def running_under(folder: Path) -> list[str]:
    """Command lines of the processes that name ``folder`` (the demo's broker, hub, boards and their children do)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(folder) in cmd:
            found.append(cmd)
    return found


def gone_within(folder: Path, seconds: float) -> list[str]:
    """The processes still running under ``folder`` after up to ``seconds`` (a process may take a moment to exit)."""
    deadline = time.monotonic() + seconds
    left = running_under(folder)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = running_under(folder)
    return left


def test_the_demo_runs_the_plant_and_its_summary_is_measured(tmp_path):
    """A scripted run: three boards deployed, results in every output, the config push acked, the broker
    restarted; the summary's gaps (from the hub's registry) and duplicates (in the outputs) agree with the
    archive of every result as received and the tables' result ids, and nothing is left running."""
    work = tmp_path / "demo"
    t0 = time.monotonic()
    demo = subprocess.run(EDGESTREAM + ["demo", "--duration", "24", "--dir", str(work)], stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=150)
    took = time.monotonic() - t0
    err = demo.stderr.decode(errors="replace")
    out = demo.stdout.decode(errors="replace")
    assert demo.returncode == 0, err
    assert "Traceback" not in err, err
    m = SUMMARY.search(err)
    assert m, err
    records, devices, windows, gaps, missing, dups = map(int, m.groups()[:6])
    pushed, restarts = m.group(7), m.group(9)
    assert records > 0 and devices == 3 and windows > 0, err
    assert (gaps, missing, dups) == (0, 0, 0), err
    assert re.fullmatch(r"press-1: config version \d+ applied", pushed), err
    assert restarts == "1", err
    assert took < 90, f"the demo took {took:.0f} s"
    assert "console: http://127.0.0.1:" in err
    assert gone_within(work, 5) == []

    # the same numbers, counted from the outputs: every result once, none missing from seq 0 on
    results = [json.loads(line) for line in (work / "out" / "results.jsonl").read_text().splitlines()]
    assert len(results) == records
    keys = [(r["device"], r["boot"], r["seq"]) for r in results]
    assert len(set(keys)) == len(keys)
    for dev in {k[0] for k in keys}:
        seqs = sorted(s for d, _, s in keys if d == dev)
        assert seqs == list(range(len(seqs))), dev
    assert {k[0] for k in keys} == {"press-1", "conveyor-2", "cooler-3"}
    with sqlite3.connect(work / "out" / "plant.db") as con:
        machines = {row[0] for row in con.execute("SELECT machine FROM averages")}
        ids = [row[0] for row in con.execute("SELECT _id FROM averages")]
    assert len(ids) == len(set(ids)) and all(ids)  # each window once, by its result id
    assert machines == {"Hydraulic press", "Conveyor drive", "Cold store"}  # joined with the fleet table
    registry = json.loads((work / "state" / "devices.json").read_text())["devices"]
    assert registry["press-1"]["config_reported"] >= 1
    # stdout is a pipe: plain lines, the results as they came, the events, the devices
    assert "\x1b[" not in out
    assert re.search(r"^averages \{", out, re.M) and re.search(r"^event .*push-config", out, re.M), out
    assert re.search(r"^device press-1 online=yes", out, re.M), out


def test_ctrl_c_stops_everything_and_still_summarises(tmp_path):
    """Without --duration the demo runs until Ctrl-C; Ctrl-C stops the boards, the hub and the broker in order,
    then the summary comes, and the exit is 0 when nothing was lost."""
    work = tmp_path / "demo"
    demo = subprocess.Popen(EDGESTREAM + ["demo", "--dir", str(work)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert demo.stderr is not None
        lines = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = demo.stderr.readline().decode(errors="replace")
            lines.append(line)
            if not line or "cooler-3: deployed" in line:
                break
        assert "cooler-3: deployed" in lines[-1], "".join(lines)
        time.sleep(4)  # some results
        demo.send_signal(signal.SIGINT)
        err = "".join(lines) + demo.stderr.read().decode(errors="replace")
        code = demo.wait(60)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        assert demo.stderr is not None
        demo.stderr.close()
    assert code == 0, err
    assert "stopping" in err and "Traceback" not in err, err
    m = SUMMARY.search(err)
    assert m and int(m.group(1)) > 0 and m.group(7) == "not reached", err
    assert gone_within(work, 5) == []


def test_demo_into_a_closed_pipe_stops_everything_and_exits_141(tmp_path):
    """The reader (``head -1``) is gone before the first line: the demo stops at that line, long before its
    --duration, with no thread traceback, and stops the broker, the hub and the boards it started."""
    work = tmp_path / "demo"
    r, w = os.pipe()
    head = subprocess.Popen(["head", "-1"], stdin=r, stdout=subprocess.DEVNULL)
    os.close(r)
    try:
        os.write(w, b"a line for head\n")
        head.wait(timeout=30)
        t0 = time.monotonic()
        demo = subprocess.run(EDGESTREAM + ["demo", "--duration", "60", "--dir", str(work)],
                              stdin=subprocess.DEVNULL, stdout=w, stderr=subprocess.PIPE, timeout=120)
        took = time.monotonic() - t0
    finally:
        os.close(w)
        if head.poll() is None:
            head.kill()
            head.wait()
    err = demo.stderr.decode(errors="replace")
    assert demo.returncode == EXIT_BROKEN_PIPE, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert "hub:" in err and "summary:" in err, err
    assert took < 45, f"the demo ran {took:.0f}s of its 60 s after its reader had gone"
    assert gone_within(work, 5) == []


def test_the_demo_refuses_a_folder_that_is_not_its_own(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    p = subprocess.run(EDGESTREAM + ["demo", "--duration", "10", "--dir", str(tmp_path)], capture_output=True,
                       timeout=60)
    assert p.returncode == 2 and b"not empty and not a demo folder" in p.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_the_demo_refuses_a_dir_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("mine")
    p = subprocess.run(EDGESTREAM + ["demo", "--duration", "10", "--dir", str(tmp_path / "f")], capture_output=True,
                       timeout=60)
    err = p.stderr.decode(errors="replace")
    assert p.returncode == 2 and "Traceback" not in err and "is not a folder" in err, err
    assert (tmp_path / "f").read_text() == "mine"


def test_a_second_demo_on_the_same_folder_is_refused_and_leaves_it_alone(tmp_path):
    """A second demo on a folder a demo runs in (the default one, say) must not clear it under the first."""
    first = subprocess.Popen(EDGESTREAM + ["demo", "--duration", "30", "--dir", str(tmp_path)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for_file(tmp_path / "hub.yaml", 30)
        p = subprocess.run(EDGESTREAM + ["demo", "--duration", "10", "--dir", str(tmp_path)], capture_output=True,
                           timeout=60)
        err = p.stderr.decode(errors="replace")
        assert p.returncode == 2 and f"in use by another demo (pid {first.pid})" in err, err
        assert (tmp_path / "hub.yaml").exists() and (tmp_path / "logs").is_dir()
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(60)
    assert gone_within(tmp_path, 5) == []


def wait_for_file(path: Path, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return path.exists()
