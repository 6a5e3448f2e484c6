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

from edgestream_agent.fixed import I32_MAX, I32_MIN, to_fixed

try:
    import micropython
    from micropython import const
except ImportError:  # CPython
    from edgestream_agent.cpython import const, micropython

_SMALL = const(0x3FFFFFFF)  # the largest small int on a 32-bit board
_CHUNK = const(16)          # push_block works through blocks of this many, at least


class Pipeline:
    def __init__(self, cfg, on_result=None, elastic=False):
        # cfg: one validated sensor config; on_result(pipeline, window, start, end)
        self.src = cfg["source"]
        self.name = cfg["name"]
        self.decimals = cfg["decimals"]
        self.factor = 10 ** cfg["decimals"]
        self.period_ms = cfg["period_ms"]
        self.block = cfg.get("block", 1)  # samples per source read
        self.filters = []
        self._chain = None
        self._hb = []
        if cfg["filters"]:
            from edgestream_agent.chain import HEARTBEAT, run
            from edgestream_agent.filters import build
            self._chain = run
            fs = self.filters = build(cfg["filters"], self.factor)
            # the heartbeat filters (the time-driven ones), each with the
            # filters after it (a list made once: a re-send runs through them)
            self._hb = [(fs[i], fs[i + 1:]) for i in range(len(fs)) if fs[i].kind == HEARTBEAT]
        self._on_result = on_result
        self.ring = None  # the sliding windows' shared ring (not in elastic mode)
        ws = []
        cap = 0
        for w in cfg["windows"]:
            if w["type"] == "sliding":
                c = w["capacity"] if "size_ms" in w else w["size"]
                if c > cap:
                    cap = c
        if cap and not elastic:
            from edgestream_agent.ring_window import Ring
            self.ring = Ring(cap + 1)  # one slot more: see ring_window.py
        self._sliding = []  # the windows on the shared ring
        for w in cfg["windows"]:
            if w["type"] == "tumbling":
                from edgestream_agent.tumbling_window import TumblingWindow
                ws.append(TumblingWindow(w, self.factor, self._emit))
            else:
                from edgestream_agent.ring_window import RingWindow
                ws.append(RingWindow(w, self.factor, self._emit, self.ring))
                self._sliding.append(ws[-1])
        self.windows = ws
        self.elastic = elastic
        # a block of values and their time offsets, between the filters and
        # the windows (lists: a value may leave 32 bits inside the chain);
        # a source with blocks reads into _vb
        n = self.block if self.block > _CHUNK else _CHUNK
        self._vb = [0] * n
        self._ob = [0] * n
        self.source = None
        self.clock = None
        self.last_t = None
        # counters
        self.samples = 0      # samples pushed (including heartbeat re-sends: no)
        self.resent = 0       # heartbeat re-sends
        self.dropped = 0      # values a filter dropped
        self.late = 0         # samples refused for going back in time
        self.rejected = 0     # values that do not fit the fixed-point range
        self.read_errors = 0  # source reads that raised
        self.results = 0
        # last: its garbage comes after the long-lived buffers above
        self.digest = None if elastic else digest(cfg)  # (replay never applies a new config)

    @property
    def passed(self):
        # values that reached the windows: every sample and re-send is
        # dropped, refused or passed (one counter less on the hot path)
        return self.samples + self.resent - self.dropped - self.rejected

    # -- per-sample path ---------------------------------------------------
    @micropython.native
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
        if self._chain is not None:
            vb = self._vb
            vb[0] = v
            self._ob[0] = 0
            if not self._chain(self.filters, t, vb, self._ob, 1):
                self.dropped += 1
                return True
            v = vb[0]
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

    @micropython.native
    def _out(self, t, v):
        # One value past the filters, to every window.
        if (v > _SMALL or v < -_SMALL) and (v > I32_MAX or v < I32_MIN):
            # a filter (calibrate, round) took it out of the ring's 32-bit
            # range (compared with the long-int bounds only past small ints)
            self.rejected += 1
            return
        p = None
        r = self.ring
        if r is not None:
            p = r.put(t, v)
        for w in self.windows:
            w.push(t, v, p)

    def _beats(self, t):
        vb = self._vb
        ob = self._ob
        for hb, rest in self._hb:
            while hb.due(t):
                bt = hb.beat()
                self.resent += 1
                vb[0] = hb.last
                ob[0] = 0
                if self._chain(rest, bt, vb, ob, 1):
                    self._out(bt, vb[0])
                else:
                    self.dropped += 1

    # -- block path --------------------------------------------------------
    @micropython.native
    def push_block(self, t0, period_ms, buf, n):
        # n samples, buf[i] (fixed point) at t0 + i * period_ms: the results
        # of n pushes, in one call. -> how many were taken (late ones, before
        # the previous sample, are refused as push refuses them).
        if self._hb or self.elastic:
            # re-sends interleave with the samples / rings grow: one by one
            k = 0
            for i in range(n):
                if self.push(t0 + i * period_ms, buf[i]):
                    k += 1
            return k
        vb = self._vb
        ob = self._ob
        size = len(vb)
        if buf is vb and n > size:
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
            if buf is vb:
                # read into the pipeline's own buffer: in place (the late
                # ones, if any, moved down)
                for k in range(c):
                    vb[k] = vb[i + k]
                    ob[k] = k * period_ms
            else:
                for k in range(c):
                    vb[k] = buf[i + k]
                    ob[k] = k * period_ms
            t = t0 + i * period_ms
            self.samples += c
            self.last_t = t + (c - 1) * period_ms
            m = c
            if self._chain is not None:
                m = self._chain(self.filters, t, vb, ob, c)
                self.dropped += c - m
            if m:
                self._out_block(t, m)
            i += c
        return taken

    @micropython.native
    def _out_block(self, t0, m):
        # The m values past the filters (vb[i] at t0 + ob[i]) to every window:
        # runs of samples that close no window go in one call per window;
        # a sample that closes one takes the per-sample path.
        vb = self._vb
        ob = self._ob
        j = 0
        for i in range(m):
            v = vb[i]
            if (v > _SMALL or v < -_SMALL) and (v > I32_MAX or v < I32_MIN):
                self.rejected += 1
                continue
            if j != i:
                vb[j] = v
                ob[j] = ob[i]
            j += 1
        m = j
        ws = self.windows
        r = self.ring
        i = 0
        while i < m:
            k = m - i
            for w in ws:
                q = w.quiet(t0, ob, i, k)
                if q < k:
                    k = q
                    if not k:
                        break
            if k and r is not None and r.t0 is not None and t0 + ob[i + k - 1] - r.t0 > _SMALL:
                k = 0  # time offsets near 32 bits: the per-sample path moves the ring's t0
            if k:
                p = None
                if r is not None:
                    for w in self._sliding:
                        w.room(k)  # evictions read the ring before it is written
                    p = r.put_run(t0, vb, ob, i, i + k)
                for w in ws:
                    w.run(t0, vb, ob, i, i + k, p)
                i += k
            else:
                self._out(t0 + ob[i], vb[i])
                i += 1

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
        # Read the source at clock() and push: one value, or with `block` > 1
        # a block of them at t, t + period_ms, ... (the task runs every
        # block * period_ms).
        t = self.clock()
        try:
            if self.block > 1:
                n = self.source.read_block(t, self.period_ms, self._vb, self.block)
                v = None
            else:
                n = 0
                v = self.source.read(t)
        except Exception:  # a flaky bus must not stop the agent
            self.read_errors += 1
            n = 0
            v = None
        if n:
            self.push_block(t, self.period_ms, self._vb, n)
        elif v is None:
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
