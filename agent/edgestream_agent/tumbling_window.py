# Tumbling windows (time or count): no samples are kept, only running
# aggregates (aggregate.py), so a tumbling window costs the same memory for
# 10 samples or 10 million.
#
#   time  {size_ms}: windows [k*size, (k+1)*size) of the device clock t (ms);
#         a window is emitted when the first sample with t >= its end arrives,
#         when advance(t) sees the time pass, or on flush(); empty windows
#         are never emitted. start/end are the window's bounds.
#   count {size}:    every `size` samples; start/end are the t of the first
#         and the last sample.
#
# emit(window, start, end) is called with this object; the caller reads
# window.agg.values() and window.name.
#
# Samples come one by one (push) or, from a block, in runs that close
# nothing (limit() says how long a run may be, run() takes it).

from edgestream_agent.aggregate import Aggregate
from edgestream_agent.timebase import micropython


class TumblingWindow:
    ring = None  # (a sliding window's: the pipeline asks)

    def __init__(self, cfg, factor, emit):
        self.name = cfg["name"]
        self.time = "size_ms" in cfg
        self.size = cfg["size_ms"] if self.time else cfg["size"]
        self.agg = Aggregate(cfg["aggregates"], factor)
        self._emit = emit
        self.start = 0      # time: window start; count: first sample's t
        self.end = 0        # time: window end;   count: last sample's t
        self.emitted = 0
        self.overwritten = 0  # a tumbling window never drops samples

    @micropython.native
    def push(self, t0, vs, ts, i, p=None):
        # One sample, vs[i] at t0 + ts[i].
        if self.time:
            if self.agg.n and t0 + ts[i] >= self.end:
                self._close()
            self.run(t0, vs, ts, i, i + 1)
        else:
            self.run(t0, vs, ts, i, i + 1)
            if self.agg.n >= self.size:
                self._close()

    @micropython.native
    def limit(self, t, out):
        # Samples from t on close nothing while before out[0] (time) and no
        # more than out[1] of them: lowers both to this window's limits.
        if self.time:
            e = self.end if self.agg.n else t - t % self.size + self.size
            if e < out[0]:
                out[0] = e
        else:
            q = self.size - self.agg.n - 1
            if q < out[1]:
                out[1] = q

    @micropython.native
    def run(self, t0, vs, ts, i, k, p=None):
        # Block samples i..k-1 (vs[x] at t0 + ts[x]), none of which closes the
        # window (see limit). push() adds its sample here too.
        a = self.agg
        if not a.n:
            t = t0 + ts[i]
            if self.time:
                s = t - t % self.size
                self.start = s
                self.end = s + self.size
            else:
                self.start = t
            v = vs[i]
            a.first = v
            a.lo = v
            a.hi = v
        lo = a.lo
        hi = a.hi
        for x in range(i, k):
            v = vs[x]
            if v < lo:
                lo = v
            elif v > hi:
                hi = v
        a.lo = lo
        a.hi = hi
        a.last = vs[k - 1]
        a.add(vs, i, k)
        if not self.time:
            self.end = t0 + ts[k - 1]

    def advance(self, t):
        # The clock says it is t: close a time window that has ended.
        if self.time and self.agg.n and t >= self.end:
            self._close()

    def flush(self):
        # End of input: emit the open time window (count windows wait for
        # their `size` samples and are not emitted partial).
        if self.time and self.agg.n:
            self._close()

    def pending(self):
        return self.agg.n

    def _close(self):
        self.emitted += 1
        try:
            self._emit(self, self.start, self.end)
        finally:
            self.agg.n = 0
