# Measure a config's pipelines on this interpreter (edgestream agent bench):
#
#   micropython -m edgestream_agent.bench agent.json [samples]
#
# Builds the sensors' pipelines as the agent does and samples them through
# Pipeline.sample(), the scheduler task's own path (a sensor with `block`
# reads and pushes a block per run), on a clock that steps by the sensor's
# period instead of waiting for it: samples come in order, as fast as the
# pipeline takes them. Sim sources run as configured; a hardware source
# (adc, pin, i2c, internal_temp) is replaced by a simulated one (a sine with
# noise), since the samples are synthetic anyway. Prints one JSON object:
#   samples_per_s          samples through filters and windows per second
#   alloc_bytes_per_sample heap allocated per sample in the steady state
#                          (collector off while measured; 0 is the budget)
#   heap_used, heap_free   the whole heap once the pipelines run (after
#                          gc.collect(), as the health message's)
#   samples, results, elapsed_ms, sensors, native (machine code in use)
# The link (transport) is not started: results are counted, not sent.

import gc
import sys
import time

_CHUNK = 256  # sample() calls per measured stretch, the collector off


class _Clock:
    def __init__(self):
        self.ms = 0

    def now(self):
        return self.ms


def run(cfg, samples, standin):
    # cfg: validated config (consumed); standin: the sim source config used
    # for hardware sources -> dict of the figures
    from edgestream_agent.agent import Agent
    from edgestream_agent.sources.sim import Sim
    agent = Agent(cfg, validated=True)
    cfg = None
    clocks = []
    for p in agent.sensors:
        c = _Clock()
        clocks.append(c)
        p.clock = c.now
        p.source = Sim(p.src if p.src["type"] == "sim" else standin, p.factor)
    sensors = agent.sensors
    per = samples // len(sensors) or 1
    # warm up: every window opened, sliding rings full (not measured)
    for k in range(len(sensors)):
        _drive(sensors[k], clocks[k], per // 4 + 1)
    gc.collect()
    used = gc.mem_alloc()
    free = gc.mem_free()
    taken = alloc = elapsed = 0
    before = [p.samples for p in sensors]
    for k in range(len(sensors)):
        p = sensors[k]
        left = per
        while left > 0:
            n = left if left < _CHUNK * p.block else _CHUNK * p.block
            left -= n
            gc.collect()
            gc.disable()
            try:
                a = gc.mem_alloc()
                t0 = time.ticks_us()
                _drive(p, clocks[k], n)
                elapsed += time.ticks_diff(time.ticks_us(), t0)
                alloc += gc.mem_alloc() - a
            finally:
                gc.enable()
    for k in range(len(sensors)):
        taken += sensors[k].samples - before[k]
    agent.flush()
    gc.collect()
    return {"sensors": len(sensors), "samples": taken, "results": agent.results,
            "elapsed_ms": elapsed / 1000, "samples_per_s": round(taken * 1000000 / (elapsed or 1)),
            "alloc_bytes_per_sample": alloc / (taken or 1),
            "heap_used": used, "heap_free": free,
            "native": _native()}


def _drive(p, clock, n):
    # n samples of one sensor through its scheduler task's path
    step = p.period_ms * p.block
    t = clock.ms
    for _ in range((n + p.block - 1) // p.block):
        t += step
        clock.ms = t
        p.sample()


def _native():
    # True when the hot path runs as machine code: a native function's type
    # is not the bytecode functions' (both are named "function")
    from edgestream_agent.pipeline import Pipeline
    return type(Pipeline.push) is not type(Pipeline.feed)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not 1 <= len(argv) <= 2 or (len(argv) == 2 and not argv[1].isdigit()):
        sys.stderr.write("usage: bench <agent.json> [samples]\n")
        return 2
    if not hasattr(gc, "mem_alloc"):
        sys.stderr.write("bench: measures MicroPython's heap: run it under micropython\n")
        return 2
    from edgestream_agent import unload
    from edgestream_agent.config import ConfigError, load, validate
    try:
        cfg = load(argv[0])
    except ConfigError as e:
        sys.stderr.write("config %s\n" % e if str(e).startswith(argv[0]) else "%s: %s\n" % (argv[0], e))
        return 2
    standin = validate({"sensors": [{"name": "s", "source": {"type": "sim", "noise": 0.1}}]})["sensors"][0]["source"]
    del load, validate, ConfigError
    unload("config")  # as the agent: the validator's code goes before the pipelines are built
    import json
    out = run(cfg, int(argv[1]) if len(argv) > 1 else 10000, standin)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
