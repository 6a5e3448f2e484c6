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
