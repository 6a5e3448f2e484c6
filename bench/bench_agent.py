"""Agent core budgets, measured on the board build of MicroPython.

The board build is a 32-bit unix port (31-bit small ints, as ESP32 and
RP2040; ``edgestream_tools.boardbuild``). Figures are given per profile
(``edgestream_tools.micropython``): ``frozen``, the agent frozen into the
firmware (code and names in flash), and ``mpy``, a stock firmware with the
agent's ``.mpy -O3`` files on its filesystem (code and names on the heap).
Prints, from one run each:
- the heap cost of importing every agent and shared module, per profile
  (and on the 64-bit PyPI build, for comparison);
- steady-state allocation over 10,000 samples through 3 filters and 2 windows
  (gc.mem_alloc() growth, collector off; budget 0 bytes);
- samples/s of filters + windows vs a bare loop that only appends to an array
  (ratio measured in the same process);
- heap used after start by an agent with 4 sensors x 2 windows of 256
  samples in the `tiny` (64 KB) heap, started as main.py starts one, per
  profile;
- start time: import to the first sample, in ms, per profile.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from edgestream_tools import micropython as mp
from edgestream_tools.bundle import mpy_cross, sources

PROFILES = ("frozen", "mpy")

IMPORT_ALL = r"""
import gc, sys
def cost(*names):
    gc.collect()
    a = gc.mem_alloc()
    for n in names:
        __import__(n)
    gc.collect()
    return gc.mem_alloc() - a
# the validator, and the shared codec the agent does without (its own wire, wire_in)
parts = cost("edgestream_agent.config"), cost("edgestream_shared.encoder", "edgestream_shared.decoder",
                                            "edgestream_shared.topics")
print(cost(*sys.argv[1:]) + sum(parts), *parts)
"""

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
        p.push(t, 20000 + ((t % 5000) * 7919) % 5000)  # in 31-bit small ints
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
        p.push(t, 20000 + ((t % 5000) * 7919) % 5000)  # in 31-bit small ints
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


def module_names() -> list[str]:
    return [str(rel.with_suffix("")).replace("/", ".").removesuffix(".__init__") for _, rel in sources()]


def tiny(kind: str, profile: str, paths: list[str]) -> str:
    code = f"import tiny_{kind}"
    label = f"tiny heap (64 KB), {profile}, 4 sensors x 2 {kind} windows of 256 samples"
    proc = mp.run(["-c", code], board="tiny", extra_paths=paths, check=False, profile=profile)
    if proc.returncode == 0:
        started, after, free, samples, nres = proc.stdout.split()
        return (f"{label}: {int(started) / 1024:.1f} KB used after start, {int(after) / 1024:.1f} KB after "
                f"{int(samples):,} samples / {int(nres)} results; {int(free) / 1024:.1f} KB free")
    err = (proc.stdout + proc.stderr).decode().strip().splitlines()[-1]
    for board in ("esp32", "rp2040"):
        p2 = mp.run(["-c", code], board=board, extra_paths=paths, check=False, profile=profile)
        if p2.returncode == 0:
            return (f"{label}: does NOT fit ({err}); needs {int(p2.stdout.split()[0]) / 1024:.1f} KB after start "
                    f"(measured in the {board} heap)")
    return f"{label}: does not start ({err})"


def main() -> None:
    names = module_names()
    script = tempfile.NamedTemporaryFile("w", suffix=".py", delete=False)
    with script:
        script.write(IMPORT_ALL)
    for profile in (*PROFILES, "host"):
        extra = [] if profile != "host" else [mp.mpy_bundle()]  # host: the same .mpy -O3 files, 64-bit
        out = mp.run([script.name, *names], board="rp2040", extra_paths=extra, profile=profile).stdout.split()
        used, validator, codec = map(int, out)
        what = {"frozen": "32-bit, frozen", "mpy": "32-bit, .mpy -O3 on the filesystem",
                "host": "64-bit PyPI build, .mpy -O3, for comparison"}[profile]
        print(f"import all {len(names)} agent and shared modules ({what}): {used / 1024:.1f} KB of heap; "
              f"of it the validator (config) {validator / 1024:.1f} KB, the shared encoder + decoder + topics "
              f"{codec / 1024:.1f} KB")
    Path(script.name).unlink()
    with tempfile.TemporaryDirectory() as lib:
        paths = [lib]
        alloc, results, rate, bare = mp.run_code(STEADY, board="esp32", extra_paths=paths).split()
        print(f"steady state (frozen): {alloc} bytes allocated over 10,000 samples "
              f"(3 filters, 2 windows, {results} windows closed; budget 0)")
        print(f"per-sample speed (32-bit unix port): {int(rate):,} samples/s through filters + windows; "
              f"bare append-to-array loop {int(bare):,}/s; ratio {int(bare) / int(rate):.1f}x slower")
        # the script is compiled to .mpy too: on a board only main.py is source
        for kind in ("tumbling", "sliding"):
            src = Path(lib) / f"tiny_{kind}.py"
            src.write_text(f"SLIDING = {kind == 'sliding'}\n" + TINY)
            subprocess.run([mpy_cross(), "-O3", "-o", str(src.with_suffix(".mpy")), str(src)], check=True)
            src.unlink()
        for profile in PROFILES:
            for kind in ("tumbling", "sliding"):
                print(tiny(kind, profile, paths))
        for profile in PROFILES:
            runs = sorted(int(mp.run_code(START, board="esp32", extra_paths=paths, profile=profile)) for _ in range(5))
            print(f"start ({profile}), import to first sample: {runs[len(runs) // 2] / 1000:.1f} ms (median of 5)")


if __name__ == "__main__":
    main()
