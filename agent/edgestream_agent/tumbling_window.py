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
# nothing (quiet() says how long a run may be, run() takes it).

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
    def push(self, t, v, p=None):
        a = self.agg
        if self.time:
            if a.n and t >= self.end:
                self._close()
            if not a.n:
                s = t - t % self.size
                self.start = s
                self.end = s + self.size
        elif not a.n:
            self.start = t
        if not a.n:
            a.first = v
            a.lo = v
            a.hi = v
        elif v < a.lo:
            a.lo = v
        elif v > a.hi:
            a.hi = v
        a.last = v
        a.add(v)
        if not self.time:
            self.end = t
            if a.n >= self.size:
                self._close()

    @micropython.native
    def quiet(self, t0, ob, i, k):
        # How many of the k block samples from i (times t0 + ob[x]) this
        # window takes before one closes it.
        if not self.time:
            q = self.size - self.agg.n - 1  # the size-th sample closes it
            return q if q < k else k
        if self.agg.n:
            lim = self.end - t0
        else:
            t = t0 + ob[i]  # it opens the window [t - t % size, ... + size)
            lim = t - t % self.size + self.size - t0
        q = 0
        while q < k and ob[i + q] < lim:
            q += 1
        return q

    @micropython.native
    def run(self, t0, vb, ob, i, j, p=None):
        # Block samples i..j-1 (vb[x] at t0 + ob[x]), none of which closes the
        # window (see quiet).
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
