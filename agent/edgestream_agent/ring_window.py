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

from edgestream_agent.timebase import const, micropython

_I32 = const(0x7FFFFFFF)
_SMALL = const(0x3FFFFFFF)  # the largest small int on a 32-bit board
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

    @micropython.native
    def put(self, t0, vs, ts, i, k):
        # The samples vs[x] at t0 + ts[x], x in i..k-1 (one, or a run of a
        # block), into the next slots (wrapping) -> the first one's position
        if self.t0 is None:
            self.t0 = t0 + ts[i]
        base = t0 - self.t0
        rv = self.vs
        rt = self.ts
        c = self.cap
        p = self.pos + 1
        if p == c:
            p = 0
        first = p
        for x in range(i, k):
            off = base + ts[x]
            if off > _SMALL and off > _I32:  # (a long-int compare only past small ints)
                self._retime(t0 + ts[x])
                base = t0 - self.t0
                off = base + ts[x]
            rv[p] = vs[x]
            rt[p] = off
            p += 1
            if p == c:
                p = 0
        self.pos = p - 1 if p else c - 1
        return first

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
    @micropython.native
    def _evict(self, k=1):
        # Drop the k oldest samples (k <= the samples held).
        h = self.head
        rc = self.ring.cap
        self.agg.remove(self.ring.vs, h, k, rc)
        if self.minq is not None or self.maxq is not None:
            # a deque's front leaves with the sample at its position
            cap = self.cap
            for _ in range(k):
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
                if h == rc:
                    h = 0
            self.head = h
            return
        h += k
        self.head = h - rc if h >= rc else h

    @micropython.native
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

    @micropython.native
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
            v = old.vs[i]
            p = self.ring.put(old.t0, old.vs, old.ts, i, i + 1)  # (the old ring as a block)
            if k == 0:
                self.head = p
            self.agg.add(self.ring.vs, p, p + 1)
            if self.minq is not None:
                self._min_push(p, v)
            if self.maxq is not None:
                self._max_push(p, v)

    # -- windows ----------------------------------------------------------
    @micropython.native
    def push(self, t0, vs, ts, i, p):
        # One sample, vs[i] at t0 + ts[i], written to the shared ring at p
        # (None: a private ring, written here once the window made room).
        a = self.agg
        if self.time:
            nb = self.next_b
            if nb is not None:  # (None: before the first sample; run() sets it)
                if t0 + ts[i] >= nb:
                    self.advance(t0 + ts[i])
                    nb = self.next_b
                # samples older than the next window's start are never
                # needed again (checked here: most samples evict nothing)
                if a.n:
                    r = self.ring
                    if r.ts[self.head] < nb - self.size - r.t0:
                        self._evict_before(nb - self.size)
        elif a.n == self.size:
            self._evict()
        if a.n == self.cap:
            if self.elastic:
                self._grow()
                p = None
            else:
                self.overwritten += 1
                self._evict()
        if p is None:
            p = self.ring.put(t0, vs, ts, i, i + 1)
        self.run(t0, vs, ts, i, i + 1, p)
        if not self.time and self.phase >= self.every:
            self.phase = 0
            if self.seen >= self.size:
                r = self.ring
                self._close(r.t0 + r.ts[self.head], t0 + ts[i])  # the oldest sample's t

    @micropython.native
    def limit(self, t, out):
        # Samples from t on close nothing (nor overwrite) while before out[0]
        # and no more than out[1] of them: lowers both to this window's.
        if self.time:
            nb = self.next_b
            if nb is None:
                nb = (t // self.every + 1) * self.every
            elif t < nb - self.size:
                # older than any window still to come (the clock went past
                # it): push() keeps it only until the next sample evicts it
                out[1] = 0
                return
            if nb < out[0]:
                out[0] = nb
            q = self.cap - self.agg.n
        else:
            q = self.every - self.phase - 1
        if q < out[1]:
            out[1] = q

    @micropython.native
    def room(self, k):
        # Before the shared ring takes k more samples (a quiet run): the
        # evictions push() would make for them, made now, while the ring
        # still holds the evicted values.
        a = self.agg
        if self.time:
            if a.n and self.next_b is not None:
                self._evict_before(self.next_b - self.size)
            return
        x = a.n + k - self.size
        if x > 0:
            self._evict(x)

    @micropython.native
    def run(self, t0, vs, ts, i, k, p):
        # Block samples i..k-1 (vs[x] at t0 + ts[x]), written to the ring at
        # p, p + 1, ... (wrapping), none of which closes the window (see
        # limit; room() made the evictions). push() adds its sample here too.
        a = self.agg
        if self.time and self.next_b is None:
            t = t0 + ts[i]
            self.next_b = (t // self.every + 1) * self.every
        if not a.n:
            self.head = p
        if self.minq is not None or self.maxq is not None:
            c = self.ring.cap
            q = p
            for x in range(i, k):
                if self.minq is not None:
                    self._min_push(q, vs[x])
                if self.maxq is not None:
                    self._max_push(q, vs[x])
                q += 1
                if q == c:
                    q = 0
        a.add(vs, i, k)
        if not self.time:
            n = k - i
            self.phase += n
            n += self.seen
            self.seen = n if n < self.size else self.size

    @micropython.native
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

    @micropython.native
    def _evict_before(self, lo):
        # Drop the samples older than lo (in one _evict: their count first).
        r = self.ring
        lo -= r.t0  # as a time offset in the ring
        ts = r.ts
        rc = r.cap
        n = self.agg.n
        h = self.head
        k = 0
        while k < n and ts[h] < lo:
            k += 1
            h += 1
            if h == rc:
                h = 0
        if k:
            self._evict(k)

    @micropython.native
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
