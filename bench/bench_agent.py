"""Agent core budgets, measured on the board build of MicroPython.

The board build is a 32-bit unix port (31-bit small ints, as ESP32 and
RP2040; ``edgestream_tools.boardbuild``). Figures are given per profile
(``edgestream_tools.micropython``): ``frozen``, the agent frozen into the
firmware (code and names in flash), and ``mpy``, a stock firmware with the
agent's ``.mpy -O3`` files on its filesystem (code and names on the heap).
Prints, from one run each:
- the heap cost of importing every agent and shared module, per profile
  (and on the 64-bit PyPI build, for comparison);
- the agent's pipeline for the benchmark config (3 filters + 2 windows,
  CONFIG) against the same pipeline written by hand (bench/hand_pipeline.py,
  a plain MicroPython loop), per profile: both are first run on the same
  samples and must give identical results; then samples/s of the agent one
  sample at a time (Pipeline.push), a block at a time (push_block) and of
  the hand-written loop, the ratio agent/hand (target >= 0.5), bytes
  allocated per sample (collector off; budget 0) and the heap the agent
  takes; median and range of RUNS processes, each the best of REPS passes;
- heap used after start by an agent with 4 sensors x 2 windows of 256
  samples in the `tiny` (64 KB) heap, started as main.py starts one, per
  profile;
- start time: import to the first sample, in ms, per profile.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

from bench.report import figure
from edgestream_tools import micropython as mp
from edgestream_tools.bundle import ARCHS, build, mpy_cross, sources

SECTION = "Agent (MicroPython board build)"

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

#: The benchmark config: 3 filters and 2 windows (one sliding in time, one
#: counting), the pipeline bench/hand_pipeline.py writes by hand.
CONFIG = {"sensors": [{"name": "temp", "period_ms": 10,
    "filters": [{"range": {"min": -50, "max": 150}}, {"calibrate": {"slope": 1.8, "offset": 32}}, {"ema": 0.3}],
    "windows": [{"name": "slide", "size_ms": 2000, "every_ms": 500,
                 "aggregates": ["count", "avg", "min", "max", "stddev"]},
                {"name": "count", "size": 100, "aggregates": ["count", "sum", "min", "max", "first", "last"]}]}]}
BLOCK = 32  # samples per push_block
RUNS = 3    # processes per profile: the spread says how noisy the machine was
REPS = 15   # timed passes per process, the best one counts

VS_HAND = r"""
import gc, json, sys, time
from array import array
CONFIG = json.loads(CONFIG_JSON)
B = int(sys.argv[1])
REPS = int(sys.argv[2])
N = 64 * B
vals = array("i", bytes(4 * N))
for i in range(N):
    # 20.000 .. 24.999 degrees, now and then far below the range filter
    vals[i] = -80000 if i % 97 == 0 else 20000 + ((i % 500) * 7919) % 5000
mv = memoryview(vals)
blocks = [mv[i:i + B] for i in range(0, N, B)]
gc.collect()
m0 = gc.mem_alloc()
from edgestream_agent.agent import Agent
agent = Agent(CONFIG)
gc.collect()
heap = gc.mem_alloc() - m0  # the agent: its modules (.mpy: code on the heap) and the pipeline
from hand_pipeline import Hand

def pushes(p, t):
    for v in vals:
        t += 10
        p.push(t, v)
    return t

def in_blocks(p, t):
    for b in blocks:
        p.push_block(t + 10, 10, b, B)
        t += 10 * B
    return t

# the same results on the same samples, or no timing at all
for path in (pushes, in_blocks):
    want = []
    got = []
    a = Agent(CONFIG, on_result=lambda s, w, start, end, names, v: got.append((w, start, end, names, v)))
    h = Hand(lambda *r: want.append(r))
    path(a.pipeline("temp"), 0)
    h.run(0, 10, vals)
    if got != want or len(got) < 50:
        raise AssertionError("%s: the agent and the hand-written loop differ: %d / %d results, first %r / %r"
                             % (path.__name__, len(got), len(want), got[:1], want[:1]))
a = got = want = h = None

one = Agent(CONFIG).pipeline("temp")
blk = Agent(CONFIG).pipeline("temp")
hand = Hand()
best = [1 << 30, 1 << 30, 1 << 30]
t = [0, 0, 0]
for _ in range(REPS):
    for k in range(3):
        t0 = time.ticks_us()
        if k == 0:
            t[0] = hand.run(t[0], 10, vals)
        elif k == 1:
            t[1] = pushes(one, t[1])
        else:
            t[2] = in_blocks(blk, t[2])
        d = time.ticks_diff(time.ticks_us(), t0)
        if d < best[k]:
            best[k] = d
alloc = []
for k, p in ((1, one), (2, blk)):
    gc.collect()
    gc.disable()
    m = gc.mem_alloc()
    t[k] = (pushes if k == 1 else in_blocks)(p, t[k])
    alloc.append((gc.mem_alloc() - m) / N)
    gc.enable()
from edgestream_agent.pipeline import Pipeline
print(json.dumps({"hand": N * 1000000 // best[0], "push": N * 1000000 // best[1], "block": N * 1000000 // best[2],
                  "alloc_push": alloc[0], "alloc_block": alloc[1], "heap": heap,
                  "native": type(Pipeline.push) is not type(Pipeline.feed)}))
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


def _spread(xs: list[float], fmt: str) -> str:
    xs = sorted(xs)
    return f"{fmt.format(xs[len(xs) // 2])} ({fmt.format(xs[0])}-{fmt.format(xs[-1])})"


def vs_hand(profile: str, lib: str) -> str:
    """The agent's pipeline against the same pipeline written by hand, RUNS processes of one profile."""
    bench_dir = str(Path(__file__).resolve().parent)
    script = Path(lib) / "vs_hand.py"
    # (the config goes in the script: the unix port fails on a long argument)
    script.write_text(f"CONFIG_JSON = {json.dumps(json.dumps(CONFIG))}\n" + VS_HAND)
    runs = []
    for _ in range(RUNS):
        out = mp.run([str(script), str(BLOCK), str(REPS)], board="esp32",
                     extra_paths=[bench_dir], profile=profile).stdout.decode()
        runs.append(json.loads(out.splitlines()[-1]))
    r = runs[0]
    code = "native code" if r["native"] else "bytecode"
    for key, what in (("push", "push"), ("block", f"push_block({BLOCK})"), ("hand", "hand-written loop")):
        figure(SECTION, f"{profile}: samples/s, {what}", [x[key] for x in runs], "samples/s", echo=False)
    figure(SECTION, f"{profile}: agent pipeline (push) / hand-written MicroPython ({code})",
           [x["push"] / x["hand"] for x in runs], "ratio", target=">= 0.5", echo=False)
    figure(SECTION, f"{profile}: agent pipeline (push_block) / hand-written MicroPython ({code})",
           [x["block"] / x["hand"] for x in runs], "ratio", target=">= 0.5", echo=False)
    figure(SECTION, f"{profile}: bytes allocated per sample, push (worst run)", max(x["alloc_push"] for x in runs),
           "B", target="<= 0", echo=False)
    figure(SECTION, f"{profile}: heap the agent takes (modules + pipeline), esp32 board",
           [x["heap"] / 1024 for x in runs], "KB", echo=False)
    push = _spread([x["push"] for x in runs], "{:,}")
    block = _spread([x["block"] for x in runs], "{:,}")
    hand = _spread([x["hand"] for x in runs], "{:,}")
    rp = _spread([x["push"] / x["hand"] for x in runs], "{:.2f}")
    rb = _spread([x["block"] / x["hand"] for x in runs], "{:.2f}")
    return (f"agent vs hand-written ({profile}{', native code' if r['native'] else ', bytecode'}; 3 filters + 2 "
            f"windows, outputs checked equal; median (min-max) of {RUNS} runs, samples/s): push {push}, "
            f"push_block({BLOCK}) {block}, hand-written loop {hand}; ratio agent/hand: push {rp}, "
            f"push_block {rb} (target >= 0.5); allocated per sample: push {max(x['alloc_push'] for x in runs):g} B, "
            f"push_block {max(x['alloc_block'] for x in runs):g} B (budget 0); heap used by the agent "
            f"(modules + pipeline): {r['heap'] / 1024:.1f} KB")


def module_names() -> list[str]:
    return [str(rel.with_suffix("")).replace("/", ".").removesuffix(".__init__") for _, rel in sources()]


def tiny(kind: str, profile: str, paths: list[str]) -> str:
    code = f"import tiny_{kind}"
    label = f"tiny heap (64 KB), {profile}, 4 sensors x 2 {kind} windows of 256 samples"
    proc = mp.run(["-c", code], board="tiny", extra_paths=paths, check=False, profile=profile)
    if proc.returncode == 0:
        started, after, free, samples, nres = proc.stdout.split()
        figure(SECTION, f"{profile}: heap after start, tiny board (64 KB), 4 sensors x 2 {kind} windows of 256",
               int(started) / 1024, "KB", echo=False)
        figure(SECTION, f"{profile}: heap free after a minute, tiny board, 4 sensors x 2 {kind} windows",
               int(free) / 1024, "KB", target="> 0", echo=False)
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
        extra = [] if profile != "host" else [mp.mpy_bundle("host")]  # host: .mpy -O3 files, 64-bit
        out = mp.run([script.name, *names], board="rp2040", extra_paths=extra, profile=profile).stdout.split()
        used, validator, codec = map(int, out)
        figure(SECTION, f"{profile}: heap to import every agent and shared module (rp2040 board)", used / 1024, "KB",
               echo=False)
        what = {"frozen": "32-bit, frozen", "mpy": "32-bit, .mpy -O3 on the filesystem",
                "host": "64-bit PyPI build, .mpy -O3, for comparison"}[profile]
        print(f"import all {len(names)} agent and shared modules ({what}): {used / 1024:.1f} KB of heap; "
              f"of it the validator (config) {validator / 1024:.1f} KB, the shared encoder + decoder + topics "
              f"{codec / 1024:.1f} KB")
    Path(script.name).unlink()
    with tempfile.TemporaryDirectory() as lib:
        paths = [lib]
        for profile in PROFILES:
            print(vs_hand(profile, lib), flush=True)
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
            figure(SECTION, f"{profile}: start, import to first sample (esp32 board)", [x / 1000 for x in runs], "ms")
    bundle_sizes()


def bundle_sizes() -> None:
    """Bytes of the agent's .mpy bundle (every device module, -O3) per board, as `edgestream agent bundle`
    writes it: bytecode for any board, machine code for each board's architecture."""
    for board, arch in (("any board (bytecode)", None), *((f"{b} ({a})", a) for b, a in ARCHS.items())):
        with tempfile.TemporaryDirectory() as d:
            files = build(Path(d), arch=arch)
            size = sum(f.stat().st_size for f in files)
        figure(SECTION, f"bundle size, {board}, {len(files)} modules", size / 1024, "KB")


if __name__ == "__main__":
    main()
