"""``edgestream demo`` into a closed pipe: it stops early and quietly, exits 141, and leaves nothing running."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from edgestream_tools.cli import EXIT_BROKEN_PIPE

EDGESTREAM = [sys.executable, "-m", "edgestream_tools.cli"]


def running_under(folder: Path) -> list[str]:
    """Command lines of the processes that name ``folder`` (the demo's broker, hub and agent do)."""
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


def test_demo_into_a_closed_pipe_stops_everything_and_exits_141(tmp_path):
    """The reader (``head -1``) is gone before the first row: the demo stops at that row, long before its
    --seconds, with no thread traceback, and stops the broker, the hub and the agent it started."""
    r, w = os.pipe()
    head = subprocess.Popen(["head", "-1"], stdin=r, stdout=subprocess.DEVNULL)
    os.close(r)
    env = dict(os.environ, TMPDIR=str(tmp_path))  # the demo's work folder, in every child's command line
    try:
        os.write(w, b"a line for head\n")
        head.wait(timeout=30)
        t0 = time.monotonic()
        demo = subprocess.run(EDGESTREAM + ["demo", "--seconds", "40"], stdin=subprocess.DEVNULL, stdout=w,
                              stderr=subprocess.PIPE, env=env, timeout=120)
        took = time.monotonic() - t0
    finally:
        os.close(w)
        if head.poll() is None:
            head.kill()
            head.wait()
    err = demo.stderr.decode(errors="replace")
    assert demo.returncode == EXIT_BROKEN_PIPE, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert "starting the hub" in err and "hub stopped" in err, err
    assert took < 35, f"the demo ran {took:.0f}s of its 40 s after its reader had gone"
    assert running_under(tmp_path) == []
    assert list(tmp_path.iterdir()) == []  # its work folder is removed too
