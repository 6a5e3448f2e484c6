# One sensor's pipeline: source -> filters -> windows.
#
# push(t_ms, v) is the per-sample path, on fixed-point ints (value *
# 10**decimals): it runs the filter chain and hands what passes to every
# window, allocating nothing unless a window closes. feed(t_ms, value)
# takes a number in the sensor's units (replay, tests) and converts it.
# push_block(t0_ms, period_ms, buf, n) takes n samples at once (a source
# that reads a block: sensors with `block` > 1), with the same results as n
# pushes, in the same order.
#
# The hot path is fused: the filter chain is one call (chain.run, stage by
# stage over the values), and a block goes to the windows in runs of
# samples that close no window (each window adds a run in one call, its
# state in local variables) cut by the samples that close one, which take
# the per-sample path (so results come in the same order as from push).
# These functions are compiled to machine code where the port can
# (@micropython.native: ESP32, RP2040, the unix port; bundles per arch,
# edgestream_tools.bundle); elsewhere, and under CPython, they run as they
# are.
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
from edgestream_agent.timebase import const, micropython

_SMALL = const(0x3FFFFFFF)  # the largest small int on a 32-bit board
_CHUNK = const(16)          # samples a pushed run holds (and push_block's chunks, at least)
# chain.run (every filter's per-sample code: several KB of machine code from
# a bundle), set by the first pipeline built with filters: an agent whose
# sensors have none never loads it
run = None


class Pipeline:
    def __init__(self, cfg, on_result=None, elastic=False):
        # cfg: one validated sensor config; on_result(pipeline, window, start, end)
        self.src = cfg["source"]
        self.name = cfg["name"]
        self.decimals = cfg["decimals"]
        self.factor = 10 ** cfg["decimals"]
        self.period_ms = cfg["period_ms"]
        self.block = cfg.get("block", 1)  # samples per source read
        cap = 0
        for w in cfg["windows"]:
            if w["type"] == "sliding":
                c = w["capacity"] if "size_ms" in w else w["size"]
                if c > cap:
                    cap = c
        if cap and not elastic:
            _room(8 * (cap + 1))  # the ring's two arrays, before any code is loaded
        self.filters = []
        self._hb = []
        if cfg["filters"]:
            fs = self.filters = need("filters", "build")(cfg["filters"], self.factor)
            # the heartbeat filters (the time-driven ones), each with the
            # filters after it (a list made once: a re-send runs through them)
            self._hb = [(fs[i], fs[i + 1:]) for i in range(len(fs)) if hasattr(fs[i], "beat")]
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
        self._ws = ws
        self.elastic = elastic
        # a block of values and their time offsets, between the filters and
        # the windows (lists: a value may leave 32 bits inside the chain); a
        # source with blocks reads into vs; push() gathers a run in them
        n = self.block if self.block > _CHUNK else _CHUNK
        self.vs = [0] * n
        self.ts = [0] * n
        self._run = 0  # samples of the pushed run waiting in vs (see push)
        # the run may hold samples with t < [0], [1] of them (_horizon); [2]:
        # its first sample's t (ts: offsets from it)
        self._lim = [0, 0, 0]
        self.source = None
        self.clock = None
        self.last_t = None
        # counters
        self.samples = 0      # samples pushed (not counting heartbeat re-sends)
        self.resent = 0       # heartbeat re-sends
        self._dropped = 0     # values a filter dropped
        self.late = 0         # samples refused for going back in time
        self._rejected = 0    # values that do not fit the fixed-point range
        self.read_errors = 0  # source reads that raised
        self.results = 0
        if self.filters and run is None:
            _chain()  # once the pipeline is built: a refused one leaves chain to be unloaded
        # last: its garbage comes after the long-lived buffers above
        self.digest = None if elastic else digest(cfg)  # (replay never applies a new config)

    # What a waiting run would change is settled before anyone looks.
    @property
    def windows(self):
        self._settle()
        return self._ws

    @property
    def dropped(self):
        self._settle()
        return self._dropped

    @property
    def rejected(self):
        self._settle()
        return self._rejected

    @property
    def passed(self):
        # values that reached the windows: every sample and re-send is
        # dropped, refused or passed (one counter less on the hot path)
        self._settle()
        return self.samples + self.resent - self._dropped - self._rejected

    # -- per-sample path ---------------------------------------------------
    # A sample that cannot close a window (its time is before every time
    # window's next end, and the count windows and rings have room for it
    # however the filters treat it) closes nothing whatever comes of it, so
    # push() only keeps it, in a run of up to _CHUNK, and returns. The run
    # goes through the filters and windows as one block (the block path)
    # when a sample comes that might close a window (before that sample:
    # so results come at the same push as one at a time), when the run is
    # full, and before anything reads the windows or the counters
    # (advance, flush, the `windows`, `dropped`, `rejected`, `passed`
    # properties). With heartbeat filters samples go one at a time.
    @micropython.native
    def push(self, t, v):
        # -> True if the sample was taken (it may still be filtered out)
        last = self.last_t
        if last is not None and t < last:
            self.late += 1
            return False
        self.last_t = t
        self.samples += 1
        k = self._run
        if k:
            lim = self._lim
            if k < lim[1] and t < lim[0]:
                self.vs[k] = v
                self.ts[k] = t - lim[2]
                self._run = k + 1
                return True
            self._settle()  # then t may start the next run
        if self._hb:
            self._beats(t)
        elif self._horizon(t):
            self.vs[0] = v
            self.ts[0] = 0
            self._lim[2] = t
            self._run = 1
            return True
        # the sample itself, now
        vs = self.vs
        vs[0] = v
        self.ts[0] = 0
        if self.filters and not run(self.filters, t, vs, self.ts, 1):
            self._dropped += 1
        else:
            self._out(t, 0)
        return True

    def feed(self, t, value):
        # A sample as a number in the sensor's units (converts: may allocate).
        v = to_fixed(value, self.factor)
        if v > I32_MAX or v < I32_MIN:
            self._rejected += 1
            raise ValueError("value %r does not fit sensor %r with decimals=%d (|value| * 10**decimals must be < 2**31)"
                             % (value, self.name, self.decimals))
        return self.push(t, v)

    @micropython.native
    def _horizon(self, t):
        # A run may start at t: how far it may go without a window closing
        # (_lim: before that time, that many samples). -> True if t may wait.
        if self.elastic:
            return False  # (private rings grow one sample at a time)
        lim = self._lim
        lim[0] = _SMALL if t < _SMALL else t + _SMALL  # (no limit: a small int while t is one)
        lim[1] = len(self.vs)
        for w in self._ws:
            w.limit(t, lim)
        r = self.ring
        if r is not None and r.t0 is not None and lim[0] - r.t0 > _SMALL:
            lim[0] = r.t0 + _SMALL  # ring offsets stay small ints
        return lim[1] > 0 and t < lim[0]

    @micropython.native
    def _settle(self):
        # The waiting run through the filters and windows, as a block.
        m = self._run
        if not m:
            return
        self._run = 0
        t0 = self._lim[2]
        if self.filters:
            k = run(self.filters, t0, self.vs, self.ts, m)
            self._dropped += m - k
            m = k
        if m:
            self._out_block(t0, m, m)  # within the horizon push() checked

    @micropython.native
    def _out(self, t0, i):
        # One value past the filters, vs[i] at t0 + ts[i], to every window.
        v = self.vs[i]
        if (v > _SMALL or v < -_SMALL) and (v > I32_MAX or v < I32_MIN):
            # a filter (calibrate, round) took it out of the ring's 32-bit
            # range (compared with the long-int bounds only past small ints)
            self._rejected += 1
            return
        p = None
        r = self.ring
        if r is not None:
            p = r.put(t0, self.vs, self.ts, i, i + 1)
        for w in self._ws:
            w.push(t0, self.vs, self.ts, i, p)

    def _beats(self, t):
        vs = self.vs
        ts = self.ts
        for hb, rest in self._hb:
            while hb.due(t):
                bt = hb.beat()
                self.resent += 1
                vs[0] = hb.last
                ts[0] = 0
                if run(rest, bt, vs, ts, 1):
                    self._out(bt, 0)
                else:
                    self._dropped += 1

    # -- block path --------------------------------------------------------
    @micropython.native
    def push_block(self, t0, period_ms, buf, n):
        # n samples, buf[i] (fixed point) at t0 + i * period_ms: the results
        # of n pushes, in one call. -> how many were taken (late ones, before
        # the previous sample, are refused as push refuses them).
        self._settle()
        if self._hb or self.elastic:
            # re-sends interleave with the samples / rings grow: one by one
            k = 0
            for i in range(n):
                if self.push(t0 + i * period_ms, buf[i]):
                    k += 1
            self._settle()
            return k
        vs = self.vs
        ts = self.ts
        size = len(vs)
        if buf is vs and n > size:
            raise ValueError("push_block: %d samples do not fit the pipeline's buffer (%d)" % (n, size))
        i = 0
        last = self.last_t
        if last is not None and t0 < last:
            i = (last - t0 + period_ms - 1) // period_ms  # the late ones
            if i > n:
                i = n
            self.late += i
        taken = n - i
        while i < n:
            c = n - i
            if c > size:
                c = size
            if buf is vs:
                # read into the pipeline's own buffer: in place (the late
                # ones, if any, moved down)
                for k in range(c):
                    vs[k] = vs[i + k]
                    ts[k] = k * period_ms
            else:
                for k in range(c):
                    vs[k] = buf[i + k]
                    ts[k] = k * period_ms
            t = t0 + i * period_ms
            self.samples += c
            self.last_t = t + (c - 1) * period_ms
            m = c
            if self.filters:
                m = run(self.filters, t, vs, ts, c)
                self._dropped += c - m
            if m:
                self._out_block(t, m)
            i += c
        return taken

    @micropython.native
    def _out_block(self, t0, m, k=0):
        # The m values past the filters (vs[i] at t0 + ts[i]) to every window:
        # runs of samples that close no window (the first k are known to
        # close none) go in one call per window; a sample that may close one
        # takes the per-sample path.
        vs = self.vs
        ts = self.ts
        j = 0
        for i in range(m):
            v = vs[i]
            if (v > _SMALL or v < -_SMALL) and (v > I32_MAX or v < I32_MIN):
                self._rejected += 1
                continue
            if j != i:
                vs[j] = v
                ts[j] = ts[i]
            j += 1
        m = j
        if k > m:
            k = m  # (fewer, after refused ones: still quiet)
        r = self.ring
        i = 0
        while i < m:
            if not k and self._horizon(t0 + ts[i]):
                # the samples from i before the windows' limits close nothing
                lim = self._lim[0] - t0
                n = m - i
                if n > self._lim[1]:
                    n = self._lim[1]
                k = 1
                while k < n and ts[i + k] < lim:
                    k += 1
            if k:
                p = None
                if r is not None:
                    for w in self._ws:
                        if w.ring is r:
                            w.room(k)  # evictions read the ring before it is written
                    p = r.put(t0, vs, ts, i, i + k)
                for w in self._ws:
                    w.run(t0, vs, ts, i, i + k, p)
                i += k
                k = 0
            else:
                self._out(t0, i)
                i += 1

    # -- time --------------------------------------------------------------
    @micropython.native
    def advance(self, t):
        # The clock says it is t: heartbeats due by t, windows ended by t.
        if self._run:
            if t < self._lim[0]:
                return  # no window ends before the waiting run's horizon
            self._settle()
        if self.last_t is not None and t < self.last_t:
            return
        if self._hb:
            self._beats(t)
        for w in self._ws:
            w.advance(t)

    def flush(self):
        # Close every open time window (end of a replay, or shutdown).
        self._settle()
        for w in self._ws:
            w.flush()

    # -- sampling (scheduler task) -------------------------------------------
    def sample(self):
        # Read the source at clock() and push: one value, or with `block` > 1
        # a block of them, period_ms apart (the task runs every block *
        # period_ms; the source says when its first sample was).
        t = self.clock()
        t0 = v = None
        try:
            if self.block > 1:
                self._settle()  # (a pushed run waits in vs)
                t0 = self.source.read_block(t, self.period_ms, self.vs, self.block)
            else:
                v = self.source.read(t)
        except Exception:  # a flaky bus must not stop the agent
            self.read_errors += 1
        if t0 is not None:
            self.push_block(t0, self.period_ms, self.vs, self.block)
        elif v is not None:
            self.push(t, v)
        # the time windows that ended by t close (a sample that a filter
        # dropped, or no reading, does not close them)
        self.advance(t)

    def _emit(self, window, start, end):
        self.results += 1
        if self._on_result is not None:
            self._on_result(self, window, start, end)

    def deinit(self):
        if self.source is not None:
            self.source.deinit()
            self.source = None


def _chain():
    global run
    run = need("chain", "run")


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
