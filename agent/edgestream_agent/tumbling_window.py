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

try:
    import micropython
except ImportError:  # CPython
    from edgestream_agent.cpython import micropython


class TumblingWindow:
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
    def push(self, t0, vb, ob, i, p=None):
        # One sample, vb[i] at t0 + ob[i].
        if self.time:
            if self.agg.n and t0 + ob[i] >= self.end:
                self._close()
            self.run(t0, vb, ob, i, i + 1)
        else:
            self.run(t0, vb, ob, i, i + 1)
            if self.agg.n >= self.size:
                self._close()

    @micropython.native
    def limit(self, t, lim):
        # Samples from t on close nothing while before lim[0] (time) and no
        # more than lim[1] of them: lowers both to this window's limits.
        if self.time:
            e = self.end if self.agg.n else t - t % self.size + self.size
            if e < lim[0]:
                lim[0] = e
        else:
            q = self.size - self.agg.n - 1
            if q < lim[1]:
                lim[1] = q

    @micropython.native
    def run(self, t0, vb, ob, i, j, p=None):
        # Block samples i..j-1 (vb[x] at t0 + ob[x]), none of which closes the
        # window (see limit). push() adds its sample here too.
        a = self.agg
        if not a.n:
            t = t0 + ob[i]
            if self.time:
                s = t - t % self.size
                self.start = s
                self.end = s + self.size
            else:
                self.start = t
            v = vb[i]
            a.first = v
            a.lo = v
            a.hi = v
        lo = a.lo
        hi = a.hi
        for x in range(i, j):
            v = vb[x]
            if v < lo:
                lo = v
            elif v > hi:
                hi = v
        a.lo = lo
        a.hi = hi
        a.last = vb[j - 1]
        a.add_run(vb, i, j)
        if not self.time:
            self.end = t0 + ob[j - 1]

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
