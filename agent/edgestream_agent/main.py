# Runnable agent: agent.json -> sensors, windows and the link to the hub.
# The one way to start an agent (agent/README.md, "Run it on a board"):
#
#   # main.py on a board
#   from edgestream_agent.main import main
#   main("agent.json")
#
#   # the unix port, from a checkout
#   MICROPYPATH=.frozen:agent:shared micropython -m edgestream_agent.main agent.json [duration_ms]
#
# Loads and validates the whole config (the transport section included),
# takes the next boot id, builds the Agent with the Link as its result sink,
# and runs the scheduler: one sampling task per sensor, the link's poll task
# and its health task. duration_ms (tests, demos) stops it after a while;
# the open windows are then flushed into the link and it gets a grace
# period to drain before it closes: until every buffered result is sent and
# confirmed, at most 2 s (a loaded machine or a reconnect right before the
# end can take longer than a few polls).

#
# Memory: the validator (config) is imported to read
# agent.json and unloaded before anything is built; then only the modules
# the config needs are imported (see the README, "Memory").

import sys


def full_validate(cfg):
    # the whole config, transport included -> normalised dict (config.validate)
    from edgestream_agent.config import validate
    return validate(cfg)


def boot_id(path):
    # A per-boot id the hub uses to tell reboots apart: a counter kept next
    # to agent.json, or random bits where the filesystem is read-only.
    f = _dir(path) + "edgestream.boot"
    n = None
    try:
        with open(f) as h:
            n = int(h.read().strip()) + 1
    except (OSError, ValueError):
        n = 1
    try:
        with open(f, "w") as h:
            h.write(str(n))
    except OSError:
        try:
            from random import getrandbits
            n = getrandbits(30)
        except ImportError:
            import time
            n = time.ticks_ms() & 0x3FFFFFFF
    return n & 0x3FFFFFFF


def _dir(path):
    i = path.rfind("/")
    return path[:i + 1] if i >= 0 else ""


def main(path="agent.json", duration_ms=None, reserve=8192):
    # reserve: bytes held at the bottom of the heap while the validator
    # loads, validates and unloads (which leaves small holes between the
    # blocks of the config it built), then freed for the config's compact
    # copy and the long-lived objects, so they find room in one piece.
    import gc
    gc.collect()
    hold = bytearray(reserve) if reserve else None
    from edgestream_agent import ConfigError, say, unload
    from edgestream_agent.config import load
    try:
        cfg = load(path)
    except ConfigError as e:
        say("config refused: %s" % e)
        raise
    if cfg["transport"] is None:
        from edgestream_agent.config import validate_transport
        cfg["transport"] = validate_transport(None)
        del validate_transport
    del load  # (a function keeps its module's globals alive)
    # The normalised config was built between the validator's blocks: made
    # again from its JSON once the validator is gone, it sits in one place
    # and the validator's space is free in one piece. The validator and the
    # held block go first: the config's blocks are scattered over the heap
    # by then, and its JSON text needs one piece (2.9 KB for 4 sensors over
    # MQTT), which the held block is; the text and the copy are the config
    # held twice, so nothing else may be.
    import json
    unload("config")
    hold = None
    gc.collect()
    text = json.dumps(cfg)
    cfg = None
    gc.collect()
    cfg = json.loads(text)
    text = None
    boot = boot_id(path)
    from edgestream_agent.agent import Agent
    from edgestream_agent.scheduler import Scheduler
    # The sampling side first (its code and sources), then the link (its
    # code, then its buffers): see the README, "Memory".
    sched = Scheduler(watchdog_ms=cfg["watchdog_ms"])
    agent = Agent(cfg, validated=True)
    agent.attach(sched)
    # the packages that build filter chains and sources are needed again
    # only if a remote config builds a sensor (imported again then); the
    # filter and source modules in use stay loaded
    unload("filters", "sources")
    from edgestream_agent.link import Link
    link = Link(cfg, boot, path=path)
    kind = cfg["transport"]["type"]
    cfg = None  # built: nothing keeps the config any more (see pipeline.py, digest)
    agent.on_result = link.result
    link.attach(sched, agent)
    gc.collect()
    from edgestream_agent import VERSION
    say("ready fw=%s device=%s boot=%d transport=%s heap_free=%d heap_used=%d"
        % (VERSION, link.dev, boot, kind, gc.mem_free(), gc.mem_alloc()))
    kind = None
    try:
        sched.run(duration_ms)
        if duration_ms is not None:
            agent.flush()
            sched.deinit()
            s2 = Scheduler()
            s2.every(link.poll_ms, link.poll, "link")
            for _ in range(40):  # 40 x 50 ms: at most 2 s
                if link.drained():
                    break
                s2.run(50)
    finally:
        link.close()
        agent.deinit()
        sched.deinit()
    return agent, link, sched


def _cli():
    args = sys.argv[1:]
    if not args:
        args = ["agent.json"]
    duration = int(args[1]) if len(args) > 1 else None
    agent, link, sched = main(args[0], duration)
    import json
    print(json.dumps(link.collect()))


if __name__ == "__main__":
    _cli()
