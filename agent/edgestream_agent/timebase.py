# The agent's time base: the one place that knows how time is read, for
# every module of the agent (clock, ntp, scheduler, mqtt, health, wifi,
# wire_in). A leaf: it imports nothing of the agent, so nothing imports in
# a circle through it.
#
#   ticks_ms(), ticks_add(t, ms), ticks_diff(a, b)   wrap-safe ms ticks
#   const(x)                                         micropython.const
#   micropython                                      the module (CPython: a stand-in
#                                                    whose @micropython.native does nothing)
#   EPOCH_MIN                                        2000-01-01 in epoch ms
#
# On MicroPython these are the port's own (time.ticks_*: they wrap, so
# compare them only with ticks_diff). Under CPython (host tools, tests)
# ticks_ms counts ms from this module's import on a monotonic clock and
# never wraps: one zero point for every module that reads it.

try:
    from time import ticks_add, ticks_diff, ticks_ms
except ImportError:  # CPython
    import time as _time

    _T0 = _time.monotonic()

    def ticks_ms():
        return int((_time.monotonic() - _T0) * 1000)

    def ticks_add(a, b):
        return a + b

    def ticks_diff(a, b):
        return a - b

try:
    import micropython
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

    class micropython:  # the module's code emitter decorator: a no-op here
        def native(f):  # (called on the class: a plain function)
            return f

# Results and time references at or after this are epoch ms (the clock was
# synced); below it, ms since the agent started. A long int on a 32-bit
# board: a module global, compared once per message, never per sample.
EPOCH_MIN = 946684800000
