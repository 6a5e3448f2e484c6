# Helpers for device-zone tests, which run under both CPython (pytest) and
# the real MicroPython unix port (tests/mprunner.py). Keep this file
# MicroPython-compatible: no typing, no pytest imports.

import sys

MICROPYTHON = sys.implementation.name == "micropython"


def raises(exc_type, fn, *args, **kw):
    # Call fn and return the exc_type instance it raised; fail otherwise.
    try:
        fn(*args, **kw)
    except exc_type as e:
        return e
    raise AssertionError("%s did not raise %s" % (getattr(fn, "__name__", fn), exc_type.__name__))


def alloc_bytes(fn, n=1000):
    # Heap bytes allocated by n calls of fn() under MicroPython, measured
    # with gc.mem_alloc() and the collector off (so nothing is freed in
    # between and hidden). Returns None under CPython, where it is not
    # meaningful. fn is called once first, to warm caches.
    if not MICROPYTHON:
        return None
    import gc
    fn()
    gc.collect()
    gc.disable()
    try:
        before = gc.mem_alloc()
        for _ in range(n):
            fn()
        return gc.mem_alloc() - before
    finally:
        gc.enable()


def heap_locked(fn, n=1000):
    # Run fn() n times with the MicroPython heap locked: any allocation
    # raises MemoryError. Under CPython it just runs the loop.
    if not MICROPYTHON:
        for _ in range(n):
            fn()
        return
    import gc
    import micropython
    fn()
    gc.collect()
    micropython.heap_lock()
    try:
        for _ in range(n):
            fn()
    finally:
        micropython.heap_unlock()


def close(a, b, tol=1e-6):
    # Float comparison that survives single-precision boards.
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))
