# EdgeStream agent: the MicroPython code flashed onto boards.
# Submodules load lazily (name -> module map plus module __getattr__), so
# importing the package does not fill a board's heap.

VERSION = "0.1.0"

_LAZY = {
    "Agent": "agent",
    "Scheduler": "scheduler",
    "Pipeline": "pipeline",
    "ConfigError": "config",
    "load": "config",
    "validate": "config",
    "RingWindow": "ring_window",
    "TumblingWindow": "tumbling_window",
    "Replay": "replay",
}


def __getattr__(name):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(name)
    m = __import__("edgestream_agent." + mod, None, None, (name,))
    return getattr(m, name)


def unload(name):
    # Drop a submodule ("config") from memory once it is no longer needed:
    # a board validates agent.json at start, then gives the ~10 KB the
    # validator's code and tables take back to the heap. A later import
    # loads it again.
    import gc
    import sys
    full = "edgestream_agent." + name
    sys.modules.pop(full, None)
    g = globals()
    if name in g:
        del g[name]
    gc.collect()
