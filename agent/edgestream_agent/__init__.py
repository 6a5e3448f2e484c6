# EdgeStream agent: the MicroPython code flashed onto boards.
#
# Heap: on the unix port (and for any module not frozen into a board's
# firmware) module code and its interned names live on the heap, so the
# agent imports only what a config needs and drops what it needed only
# once: the validator (config) after start, and the
# decoder and remote-config code after each message from the hub
# (need() loads, unload() drops). Submodules load lazily (name -> module
# map plus module __getattr__), so importing the package costs almost
# nothing.

import sys

VERSION = "0.1.0"

_LAZY = {
    "Agent": "agent",
    "Scheduler": "scheduler",
    "Pipeline": "pipeline",
    "load": "config",
    "validate": "config",
    "Replay": "replay",
}


def __getattr__(name):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(name)
    m = __import__("edgestream_agent." + mod, None, None, (name,))
    return getattr(m, name)


# Console lines: "edgestream: <event> ...", one short line per event (ready,
# link up / down, config applied / refused, task errors), never per sample:
# what `edgestream agent logs` follows on a board's USB console. Off
# (console = False) while the console is the data link (serial on stdio).
console = True


def say(text):
    # never raises: a heap too full to print the line costs only the line
    if console:
        try:
            print("edgestream:", text)
        except MemoryError:
            pass


class ConfigError(ValueError):
    # An invalid agent.json (or a part of one). `path` is where the bad value
    # sits ("sensors[0].period_ms"); the message is "<path>: <reason>".
    # Defined here, not in config.py, so that it is the same class however
    # often config.py is unloaded and imported again.
    def __init__(self, path, reason):
        super().__init__("%s: %s" % (path, reason) if path else reason)
        self.path = path
        self.reason = reason


def unload(*names):
    # Drop modules from memory once they are no longer needed:
    # unload("config") after start gives the validator's code back
    # to the heap; a later import loads it again. A name without a dot is an
    # edgestream_agent submodule. Only under MicroPython, where it pays: a
    # CPython process (the host tools, the tests) keeps its modules.
    if sys.implementation.name != "micropython":
        return
    import gc
    for name in names:
        full = name if "." in name else "edgestream_agent." + name
        if sys.modules.pop(full, None) is None:
            continue
        # the parent package holds the submodule as an attribute too
        i = full.rfind(".")
        parent = sys.modules.get(full[:i])
        if parent is not None:
            try:
                delattr(parent, full[i + 1:])
            except (AttributeError, TypeError):
                pass
    gc.collect()


def need(name, attr, package="edgestream_agent."):
    # `from edgestream_agent.<name> import <attr>` for code loaded while the
    # agent runs: what a config names (filters, sources, windows) and what a
    # message from the hub needs. A module the heap cannot hold raises
    # MemoryError like any import, and leaves nothing behind: MicroPython
    # takes the half-loaded module out of sys.modules but leaves it in the
    # table's slot (a removed entry keeps its value), where it holds the
    # module's globals, code and names until the slot is used again. The
    # slot is used again at once (the name put in and taken out: the first
    # free slot on the name's probe chain is that one, as nothing changed
    # the table since), which lets the module go.
    full = package + name
    try:
        return getattr(__import__(full, None, None, (attr,)), attr)
    except MemoryError:
        m = sys.modules
        while full:  # the packages on the way may have failed to load too
            if full not in m:
                m[full] = None
                del m[full]
            full = full[:max(full.rfind("."), 0)]
        raise


def no_heap(what):
    # The reason of a nack for a MemoryError: "memory: not enough heap to
    # <what> (<n> bytes free)", the free heap measured after the failed
    # attempt's garbage is collected (MicroPython; CPython has no such cap).
    import gc
    gc.collect()
    try:
        return "memory: not enough heap to %s (%d bytes free)" % (what, gc.mem_free())
    except AttributeError:
        return "memory: not enough heap to " + what
