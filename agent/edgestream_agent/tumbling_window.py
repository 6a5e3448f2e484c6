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

from edgestream_agent.aggregate import Aggregate


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

    def push(self, t, v, p=None):
        a = self.agg
        if self.time:
            if a.n and t >= self.end:
                self._close()
            if not a.n:
                self.start = t - t % self.size
                self.end = self.start + self.size
        elif not a.n:
            self.start = t
        if not a.n:
            a.first = v
            a.lo = v
            a.hi = v
        else:
            if v < a.lo:
                a.lo = v
            if v > a.hi:
                a.hi = v
        a.last = v
        a.add(v)
        if not self.time:
            self.end = t
            if a.n >= self.size:
                self._close()

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
