# Sliding windows over a preallocated ring buffer of samples.
#
#   time  {size_ms, every_ms}: at each multiple b of every_ms, a window over
#         the samples with t in [b - size_ms, b); emitted when the first
#         sample with t >= b arrives, when advance(t) sees b pass, or on
#         flush(). start/end are b - size_ms and b. Empty windows are skipped.
#   count {size, every}: after every `every`-th sample (counting from the
#         first), once at least `size` samples have come, a window over the
#         last `size`; start/end are the t of its first and last sample.
#
# Memory, allocated once. The samples live in a Ring: per slot a value and a
# time offset from the ring's t0 (array('i'), so epoch-ms timestamps fit in
# 32 bits). Every sliding window of a sensor sees the same stream of filtered
# values, so they share ONE ring (the pipeline writes each value once) with
# one slot more than the largest window's capacity; a window is a view on
# it: the position of its oldest sample and its count. When min/max are
# asked for, a window adds one monotonic deque each (array('H') of ring
# positions, as long as its capacity): the front of the min deque is the
# position of the window's minimum, so sliding min/max cost O(1) amortised
# per sample instead of a rescan.
#
# A window that got more samples than its `capacity` (a time window at a
# faster rate than configured) drops its oldest sample and counts it in
# `overwritten`. With elastic=True (replay on a host) each window has its
# own ring that doubles instead, and `grown` says how large it had to be.

from array import array
from edgestream_agent.aggregate import Aggregate

from edgestream_agent.timebase import const

_I32 = const(0x7FFFFFFF)
# |d| above this from the window's reference: rebase the sums at the next
# emit so d*d stays a small int on 32-bit boards
_DRIFT = const(0x3FFF)
# min/max by a scan at close when a window closes at least every size/_SCAN
_SCAN = const(16)


class Ring:
    # Samples of one sensor: vs[p] value, t0 + ts[p] time. put() writes the
    # next slot (wrapping) and returns its position; the windows reading the
    # ring never hold the slot being written (the ring has one slot more
    # than any of them may hold).
    def __init__(self, cap):
        self.cap = cap
        # from a range, not bytes(4 * cap): one allocation each, no copy
        # (the contents of a slot not yet written do not matter)
        self.vs = array("i", range(cap))
        self.ts = array("i", range(cap))
        self.t0 = None
        self.pos = cap - 1       # position of the last sample written
        self.windows = []        # the windows reading this ring (for _retime)

    def put(self, t, v):
        if self.t0 is None:
            self.t0 = t
        off = t - self.t0
        if off > _I32:
            self._retime(t)
            off = t - self.t0
        p = self.pos + 1
        if p == self.cap:
            p = 0
        self.vs[p] = v
        self.ts[p] = off
        self.pos = p
        return p

    def _retime(self, t):
        # Offsets would leave 32 bits (24.8 days after t0): move t0 up to the
        # oldest sample a window still holds (or to t when none holds any).
        shift = None
        for w in self.windows:
            if w.agg.n:
                o = self.ts[w.head]
                if shift is None or o < shift:
                    shift = o
        if shift is None:
            self.t0 = t
            return
        self.t0 += shift
        ts = self.ts
        for i in range(self.cap):
            x = ts[i] - shift
            ts[i] = x if x > -_I32 else 0  # slots no window holds may be stale
        if t - self.t0 > _I32:
            raise ValueError("window samples span more than 2**31 ms")


class RingWindow:
    def __init__(self, cfg, factor, emit, ring=None):
        # ring: the sensor's shared Ring (its cap > this window's capacity),
        # or None for a private ring that grows (elastic, replay).
        self.name = cfg["name"]
        self.time = "size_ms" in cfg
        if self.time:
            self.size = cfg["size_ms"]
            self.every = cfg["every_ms"]
            cap = cfg["capacity"]
        else:
            self.size = cfg["size"]
            self.every = cfg["every"]
            cap = self.size  # a count window holds exactly its last `size`
        self.capacity = cap  # as configured (an elastic ring may grow past it)
        self.agg = Aggregate(cfg["aggregates"], factor)
        self._emit = emit
        self.elastic = ring is None
        self.emitted = 0
        self.overwritten = 0
        self.grown = 0
        if ring is None:
            ring = Ring(cap)
        self._attach(ring, cap)
        self.next_b = None   # time: next boundary; count: None
        self.phase = 0       # count: samples since the last every-th
        self.seen = 0        # count: samples seen, saturating at size

    def _attach(self, ring, cap):
        self.ring = ring
        ring.windows.append(self)
        self.cap = cap                # samples this window may hold
        self.head = 0                 # ring position of its oldest sample
        # A window that closes at least once per _SCAN samples (count) or
        # per _SCAN-th of its size (time) finds its min/max by scanning its
        # samples when it closes: at most _SCAN reads per sample, no deque.
        # Windows that close more often keep monotonic deques.
        deq = self.size > _SCAN * self.every
        need_min = self.agg.need_min and deq
        need_max = self.agg.need_max and deq
        # deques of ring positions: the smallest array type that holds them
        small = ring.cap <= 0xFFFF
        self.minq = array("H" if small else "i", range(cap)) if need_min else None
        self.maxq = array("H" if small else "i", range(cap)) if need_max else None
        self.min_h = self.min_n = 0   # deque head index and length
        self.max_h = self.max_n = 0

    # -- ring ------------------------------------------------------------
    def _append(self, t, v, p):
        # the sample (t, v) was written at ring position p (private ring:
        # p is None and it is written here, once the window made room)
        a = self.agg
        if a.n == self.cap:
            if self.elastic:
                self._grow()
                p = None
            else:
                self.overwritten += 1
                self._evict()
        if p is None:
            p = self.ring.put(t, v)
        if a.n == 0:
            self.head = p
        a.add(v)
        if self.minq is not None:
            self._min_push(p, v)
        if self.maxq is not None:
            self._max_push(p, v)

    def _evict(self):
        # Drop the oldest sample.
        h = self.head
        cap = self.cap
        self.agg.remove(self.ring.vs[h])
        q = self.minq
        if q is not None and self.min_n and q[self.min_h] == h:
            self.min_h += 1
            if self.min_h == cap:
                self.min_h = 0
            self.min_n -= 1
        q = self.maxq
        if q is not None and self.max_n and q[self.max_h] == h:
            self.max_h += 1
            if self.max_h == cap:
                self.max_h = 0
            self.max_n -= 1
        h += 1
        self.head = 0 if h == self.ring.cap else h

    def _min_push(self, p, v):
        # Pop from the back every position whose value is >= v, then push p.
        q = self.minq
        vs = self.ring.vs
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
        vs = self.ring.vs
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
        # elastic mode only: double the private ring, keeping order (allocates).
        old, h, n = self.ring, self.head, self.agg.n
        cap = self.cap * 2
        self._attach(Ring(cap), cap)
        self.grown = cap
        self.agg.n = 0
        for k in range(n):
            i = (h + k) % old.cap
            self._append(old.t0 + old.ts[i], old.vs[i], None)

    # -- windows ----------------------------------------------------------
    def push(self, t, v, p=None):
        # p: where the pipeline wrote (t, v) in the shared ring
        if self.time:
            if self.next_b is None:
                self.next_b = (t // self.every + 1) * self.every
            elif t >= self.next_b:
                self.advance(t)
            # samples older than the next window's start are never needed again
            self._evict_before(self.next_b - self.size)
            self._append(t, v, p)
            return
        if self.agg.n == self.size:
            self._evict()
        self._append(t, v, p)
        self.phase += 1
        if self.seen < self.size:
            self.seen += 1
        if self.phase >= self.every:
            self.phase = 0
            if self.seen >= self.size:
                r = self.ring
                self._close(r.t0 + r.ts[self.head], t)  # the oldest sample's t

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
        r = self.ring
        while self.agg.n and r.t0 + r.ts[self.head] < lo:
            self._evict()

    def _close(self, start, end):
        a = self.agg
        vs = self.ring.vs
        if self.minq is not None:
            a.lo = vs[self.minq[self.min_h]]
        if self.maxq is not None:
            a.hi = vs[self.maxq[self.max_h]]
        if (a.need_min and self.minq is None) or (a.need_max and self.maxq is None):
            # scan the window's samples (allocation-free: small ints)
            c = self.ring.cap
            p = self.head
            lo = hi = vs[p]
            k = a.n - 1
            while k:
                p += 1
                if p == c:
                    p = 0
                x = vs[p]
                if x < lo:
                    lo = x
                elif x > hi:
                    hi = x
                k -= 1
            if a.need_min:
                a.lo = lo
            if a.need_max:
                a.hi = hi
        a.first = vs[self.head]
        p = self.head + a.n - 1  # the newest sample's position
        c = self.ring.cap
        a.last = vs[p - c if p >= c else p]
        self.emitted += 1
        self._emit(self, start, end)
        # keep the shifted sums small: rebase around the oldest sample
        d = a.first - a.ref
        if d > _DRIFT or d < -_DRIFT:
            a.rebase(vs, self.head, a.n, self.ring.cap)
