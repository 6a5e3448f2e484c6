# One sensor's pipeline: source -> filters -> windows.
#
# push(t_ms, v) is the per-sample path, on fixed-point ints (value *
# 10**decimals): it runs the filter chain and hands what passes to every
# window, allocating nothing unless a window closes. feed(t_ms, value)
# takes a number in the sensor's units (replay, tests) and converts it.
#
# Samples must come in time order per sensor: one with t earlier than the
# previous is refused (counted in `late`), since its windows may be gone.
# Heartbeat filters are time-driven: before each sample (and on advance())
# the pipeline re-sends their last value for every interval that passed
# with nothing new, through the filters after them, at the due times.
#
# Memory: only the code a sensor's config needs is imported (the filters it
# names, tumbling and/or sliding windows). Its sliding windows share one
# ring of samples (ring_window.Ring): each filtered value is written once,
# whatever the number of windows reading it. The sensor's config is not
# kept (a board has no heap to spare for it): only its source part (the
# source is built at attach) and `digest`, a CRC-32 of its canonical JSON,
# which tells a remote config whether the sensor changed.

from binascii import crc32
from json import dumps

from edgestream_agent import need
from edgestream_agent.fixed import I32_MAX, I32_MIN, to_fixed


class Pipeline:
    def __init__(self, cfg, on_result=None, elastic=False):
        # cfg: one validated sensor config; on_result(pipeline, window, start, end)
        self.src = cfg["source"]
        self.name = cfg["name"]
        self.decimals = cfg["decimals"]
        self.factor = 10 ** cfg["decimals"]
        self.period_ms = cfg["period_ms"]
        cap = 0
        for w in cfg["windows"]:
            if w["type"] == "sliding":
                c = w["capacity"] if "size_ms" in w else w["size"]
                if c > cap:
                    cap = c
        if cap and not elastic:
            _room(8 * (cap + 1))  # the ring's two arrays, before any code is loaded
        self.filters = []
        if cfg["filters"]:
            self.filters = need("filters", "build")(cfg["filters"], self.factor)
        # positions of heartbeat filters (the time-driven ones)
        self._hb = [i for i, f in enumerate(self.filters) if hasattr(f, "beat")]
        self._on_result = on_result
        self.ring = None  # the sliding windows' shared ring (not in elastic mode)
        ws = []
        if cap and not elastic:
            self.ring = need("ring_window", "Ring")(cap + 1)  # one slot more: see ring_window.py
        for w in cfg["windows"]:
            if w["type"] == "tumbling":
                ws.append(need("tumbling_window", "TumblingWindow")(w, self.factor, self._emit))
            else:
                ws.append(need("ring_window", "RingWindow")(w, self.factor, self._emit, self.ring))
        self.windows = ws
        self.source = None
        self.clock = None
        self.last_t = None
        # counters
        self.samples = 0      # samples pushed (including heartbeat re-sends: no)
        self.passed = 0       # values that reached the windows
        self.dropped = 0      # values a filter dropped
        self.late = 0         # samples refused for going back in time
        self.rejected = 0     # values that do not fit the fixed-point range
        self.read_errors = 0  # source reads that raised
        self.results = 0
        # last: its garbage comes after the long-lived buffers above
        self.digest = None if elastic else digest(cfg)  # (replay never applies a new config)

    # -- per-sample path ---------------------------------------------------
    def push(self, t, v):
        # -> True if the sample was taken (it may still be filtered out)
        last = self.last_t
        if last is not None and t < last:
            self.late += 1
            return False
        self.last_t = t
        self.samples += 1
        if self._hb:
            self._beats(t)
        v = self._run(0, t, v)
        if v is not None:
            self._out(t, v)
        return True

    def feed(self, t, value):
        # A sample as a number in the sensor's units (converts: may allocate).
        v = to_fixed(value, self.factor)
        if v > I32_MAX or v < I32_MIN:
            self.rejected += 1
            raise ValueError("value %r does not fit sensor %r with decimals=%d (|value| * 10**decimals must be < 2**31)"
                             % (value, self.name, self.decimals))
        return self.push(t, v)

    def _run(self, i, t, v):
        fs = self.filters
        n = len(fs)
        while i < n:
            v = fs[i].push(t, v)
            if v is None:
                self.dropped += 1
                return None
            i += 1
        return v

    def _out(self, t, v):
        if v > I32_MAX or v < I32_MIN:
            # a filter (calibrate) took it out of the ring's 32-bit range
            self.rejected += 1
            return
        self.passed += 1
        p = None
        if self.ring is not None:
            p = self.ring.put(t, v)
        for w in self.windows:
            w.push(t, v, p)

    def _beats(self, t):
        fs = self.filters
        for i in self._hb:
            hb = fs[i]
            while hb.due(t):
                bt = hb.beat()
                v = self._run(i + 1, bt, hb.last)
                if v is not None:
                    self._out(bt, v)

    # -- time --------------------------------------------------------------
    def advance(self, t):
        # The clock says it is t: heartbeats due by t, windows ended by t.
        if self.last_t is not None and t < self.last_t:
            return
        if self._hb:
            self._beats(t)
        for w in self.windows:
            w.advance(t)

    def flush(self):
        # Close every open time window (end of a replay, or shutdown).
        for w in self.windows:
            w.flush()

    # -- sampling (scheduler task) -------------------------------------------
    def sample(self):
        # Read the source once at clock() and push the value.
        t = self.clock()
        try:
            v = self.source.read(t)
        except Exception:  # a flaky bus must not stop the agent
            self.read_errors += 1
            v = None
        if v is None:
            self.advance(t)
        else:
            self.push(t, v)
            for w in self.windows:
                w.advance(t)

    def _emit(self, window, start, end):
        self.results += 1
        if self._on_result is not None:
            self._on_result(self, window, start, end)

    def deinit(self):
        if self.source is not None:
            self.source.deinit()
            self.source = None


def _room(n):
    # MemoryError when n bytes are more than the whole free heap: a sensor
    # whose ring alone cannot fit is refused before its filter and window
    # code is loaded (from .mpy a module loaded once keeps its names on the
    # heap for good, so a config refused for its size should load none).
    # A smaller one may still not fit (a fragmented heap): that MemoryError
    # comes from the allocation itself. CPython has no such cap.
    import gc
    try:
        if n <= gc.mem_free():
            return
        gc.collect()
        if n <= gc.mem_free():
            return
    except AttributeError:
        return
    raise MemoryError("%d bytes for a ring" % n)


def digest(cfg):
    # A validated sensor config -> CRC-32 of its JSON with the keys sorted:
    # equal configs give equal digests whatever their dicts' order.
    return crc32(dumps(_canon(cfg)).encode())


def _canon(v):
    if isinstance(v, dict):
        return [[k, _canon(v[k])] for k in sorted(v)]
    if isinstance(v, (list, tuple)):
        return [_canon(x) for x in v]
    return v
