# Sliding windows over a preallocated ring buffer.
#
#   time  {size_ms, every_ms}: at each multiple b of every_ms, a window over
#         the samples with t in [b - size_ms, b); emitted when the first
#         sample with t >= b arrives, when advance(t) sees b pass, or on
#         flush(). start/end are b - size_ms and b. Empty windows are skipped.
#   count {size, every}: after every `every`-th sample (counting from the
#         first), once at least `size` samples have come, a window over the
#         last `size`; start/end are the t of its first and last sample.
#
# Memory, allocated once: per slot a value and a time offset (array('i')),
# plus, when min/max are asked for, one monotonic deque each (array('H'), ring
# positions): the front of the min deque is the position of the window's
# minimum, so sliding min/max cost O(1) amortised per sample instead of a
# rescan of the ring. Times are stored as offsets from `t0`, so epoch-ms
# timestamps fit in 32 bits.
#
# A full ring (a time window that got more samples than `capacity`) drops its
# oldest sample and counts it in `overwritten`; with elastic=True (replay on
# a host) it doubles instead, and `grown` says how large it had to be.

from array import array
from edgestream_agent.aggregate import Aggregate

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

_I32 = const(0x7FFFFFFF)
# |d| above this from the window's reference: rebase the sums at the next
# emit so d*d stays a small int on 32-bit boards
_DRIFT = const(0x3FFF)


def _positions(cap):
    return array("H" if cap <= 0xFFFF else "i", bytes(2 * cap if cap <= 0xFFFF else 4 * cap))


class RingWindow:
    def __init__(self, cfg, factor, emit, elastic=False):
        self.name = cfg["name"]
        self.bname = cfg["name"].encode()
        self.time = "size_ms" in cfg
        if self.time:
            self.size = cfg["size_ms"]
            self.every = cfg["every_ms"]
            cap = cfg["capacity"]
        else:
            self.size = cfg["size"]
            self.every = cfg["every"]
            cap = self.size  # a count window holds exactly its last `size`
        self.agg = Aggregate(cfg["aggregates"], factor)
        self._emit = emit
        self.elastic = elastic
        self.emitted = 0
        self.overwritten = 0
        self.grown = 0
        self._alloc(cap)
        self.t0 = 0          # time base of the offsets in self.ts
        self.head = 0        # position of the oldest sample
        self.next_b = None   # time: next boundary; count: None
        self.phase = 0       # count: samples since the last every-th
        self.seen = 0        # count: samples seen, saturating at size

    def _alloc(self, cap):
        self.cap = cap
        self.vs = array("i", bytes(4 * cap))
        self.ts = array("i", bytes(4 * cap))
        self.minq = _positions(cap) if self.agg.need_min else None
        self.maxq = _positions(cap) if self.agg.need_max else None
        self.min_h = self.min_n = 0  # deque head index and length
        self.max_h = self.max_n = 0

    # -- ring ------------------------------------------------------------
    def _append(self, t, v):
        a = self.agg
        if a.n == self.cap:
            if self.elastic:
                self._grow()
            else:
                self.overwritten += 1
                self._evict()
        n = a.n
        if n == 0:
            self.t0 = t
            self.head = 0
        off = t - self.t0
        if off > _I32:
            self._retime(t)
            off = t - self.t0
        p = self.head + n
        if p >= self.cap:
            p -= self.cap
        self.vs[p] = v
        self.ts[p] = off
        a.add(v)
        if self.minq is not None:
            self._min_push(p, v)
        if self.maxq is not None:
            self._max_push(p, v)

    def _evict(self):
        # Drop the oldest sample.
        h = self.head
        self.agg.remove(self.vs[h])
        q = self.minq
        if q is not None and self.min_n and q[self.min_h] == h:
            self.min_h += 1
            if self.min_h == self.cap:
                self.min_h = 0
            self.min_n -= 1
        q = self.maxq
        if q is not None and self.max_n and q[self.max_h] == h:
            self.max_h += 1
            if self.max_h == self.cap:
                self.max_h = 0
            self.max_n -= 1
        h += 1
        self.head = 0 if h == self.cap else h

    def _min_push(self, p, v):
        # Pop from the back every position whose value is >= v, then push p.
        q = self.minq
        vs = self.vs
        cap = self.cap
        n = self.min_n
        while n:
            b = self.min_h + n - 1
            if b >= cap:
                b -= cap
            if vs[q[b]] < v:
                break
            n -= 1
        b = self.min_h + n
        if b >= cap:
            b -= cap
        q[b] = p
        self.min_n = n + 1

    def _max_push(self, p, v):
        q = self.maxq
        vs = self.vs
        cap = self.cap
        n = self.max_n
        while n:
            b = self.max_h + n - 1
            if b >= cap:
                b -= cap
            if vs[q[b]] > v:
                break
            n -= 1
        b = self.max_h + n
        if b >= cap:
            b -= cap
        q[b] = p
        self.max_n = n + 1

    def _grow(self):
        # elastic mode only: double the ring, keeping order (allocates).
        vs, ts, h, n, cap = self.vs, self.ts, self.head, self.agg.n, self.cap
        self._alloc(cap * 2)
        self.grown = self.cap
        self.agg.n = 0
        t0 = self.t0
        for k in range(n):
            i = (h + k) % cap
            self._append(t0 + ts[i], vs[i])

    def _retime(self, t):
        # Offsets would leave 32 bits: move t0 up to the oldest sample.
        shift = self.ts[self.head]
        self.t0 += shift
        i = self.head
        for _ in range(self.agg.n):
            self.ts[i] -= shift
            i += 1
            if i == self.cap:
                i = 0
        if t - self.t0 > _I32:
            raise ValueError("window %s: samples span more than 2**31 ms" % self.name)

    def _oldest_t(self):
        return self.t0 + self.ts[self.head]

    def _newest_pos(self):
        p = self.head + self.agg.n - 1
        return p - self.cap if p >= self.cap else p

    # -- windows ----------------------------------------------------------
    def push(self, t, v):
        if self.time:
            if self.next_b is None:
                self.next_b = (t // self.every + 1) * self.every
            elif t >= self.next_b:
                self.advance(t)
            # samples older than the next window's start are never needed again
            self._evict_before(self.next_b - self.size)
            self._append(t, v)
            return
        if self.agg.n == self.size:
            self._evict()
        self._append(t, v)
        self.phase += 1
        if self.seen < self.size:
            self.seen += 1
        if self.phase >= self.every:
            self.phase = 0
            if self.seen >= self.size:
                self._close(self._oldest_t(), t)

    def advance(self, t):
        # Emit every time window whose boundary b <= t.
        if not self.time or self.next_b is None:
            return
        every = self.every
        while self.next_b <= t:
            b = self.next_b
            self._evict_before(b - self.size)
            if self.agg.n:
                self._close(b - self.size, b)
            self.next_b = b + every
            if not self.agg.n:
                # nothing left: jump to the first boundary after t
                nb = (t // every + 1) * every
                if nb > self.next_b:
                    self.next_b = nb
                break

    def flush(self):
        # End of input: emit every remaining time window that holds samples.
        if not self.time or self.next_b is None:
            return
        while self.agg.n:
            b = self.next_b
            self._evict_before(b - self.size)
            if self.agg.n:
                self._close(b - self.size, b)
            self.next_b = b + self.every

    def pending(self):
        return self.agg.n

    def _evict_before(self, lo):
        t0 = self.t0
        while self.agg.n and t0 + self.ts[self.head] < lo:
            self._evict()

    def _close(self, start, end):
        a = self.agg
        vs = self.vs
        if a.need_min:
            a.lo = vs[self.minq[self.min_h]]
        if a.need_max:
            a.hi = vs[self.maxq[self.max_h]]
        a.first = vs[self.head]
        a.last = vs[self._newest_pos()]
        self.emitted += 1
        self._emit(self, start, end)
        # keep the shifted sums small: rebase around the oldest sample
        d = a.first - a.ref
        if d > _DRIFT or d < -_DRIFT:
            a.rebase(vs, self.head, a.n, self.cap)
