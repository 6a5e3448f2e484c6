# The benchmark config (bench_agent.CONFIG) written by hand for MicroPython:
# one plain loop with the filters and windows inlined for this config and no
# other, what a programmer would write for one board and one sensor. It is
# the yardstick for the agent's per-sample path: bench_agent.py checks that
# both give identical results on the same samples, then times both.
#
#   filters: range[-50, 150] -> calibrate 1.8, +32 -> ema 0.3
#   windows: "slide"  time sliding 2000 ms every 500 ms: count avg min max stddev
#            "count"  count tumbling 100: count sum min max first last
#
# Fixed point at 3 decimals, as the agent (agent/README.md, Numbers): the
# same integer rounding (half to even) and the same exact aggregates, so the
# results are the same numbers. The sliding window keeps its samples in a
# ring of 256 (values and times) and computes its aggregates by a scan when
# it closes; the count window keeps running sums.

import math
from array import array

F = 1000          # 10**decimals
SIZE_MS = 2000
EVERY_MS = 500
COUNT = 100
RING = 256        # > the 201 samples of 2000 ms at the 10 ms period
LO = -50000
HI = 150000
OFF = 32000
SLIDE_NAMES = (b"count", b"avg", b"min", b"max", b"stddev")
COUNT_NAMES = (b"count", b"sum", b"min", b"max", b"first", b"last")


def num(n, den):
    # the agent's ldiv: an int when exact, else a float
    if n % den == 0:
        return n // den
    return n / den


def stddev(n, s, sq):
    var = n * sq - s * s
    if var <= 0:
        return 0
    r = math.sqrt(var)
    ri = int(r)
    return num(ri, n * F) if ri * ri == var else r / (n * F)


class Hand:
    def __init__(self, emit=None):
        # emit(window, start, end, names, values) per closed window, or None
        self.emit = emit
        self.vs = array("i", bytes(4 * RING))
        self.ts = array("i", bytes(4 * RING))
        # state between runs: [ema y or None, next boundary or None, ring
        # head, ring count, ring write position, count window: n, sum, lo,
        # hi, first, last, first t]
        self.st = [None, None, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]

    def run(self, t, period, vals):
        # Every value of vals, at t + period, t + 2 * period, ... -> last t.
        vs = self.vs
        ts = self.ts
        y, nb, head, cnt, wp, n2, s2, lo2, hi2, first2, last2, t2 = self.st
        for v in vals:
            t += period
            # range
            if v < LO or v > HI:
                continue
            # calibrate: v * 18 / 10 rounded half to even, + 32
            x = v * 18
            q = x // 10
            r2 = (x - q * 10) * 2
            if r2 > 10 or (r2 == 10 and q & 1):
                q += 1
            v = q + OFF
            # ema 0.3, 10 extra bits
            ve = v << 10
            if y is None:
                y = ve
            else:
                x = (ve - y) * 3
                q = x // 10
                r2 = (x - q * 10) * 2
                if r2 > 10 or (r2 == 10 and q & 1):
                    q += 1
                y += q
            v = (y + 512) >> 10
            # sliding window: close every boundary passed, drop old samples
            if nb is None:
                nb = (t // EVERY_MS + 1) * EVERY_MS
            while nb <= t:
                lo = nb - SIZE_MS
                while cnt and ts[head] < lo:
                    head += 1
                    if head == RING:
                        head = 0
                    cnt -= 1
                if cnt:
                    self._slide(head, cnt, lo, nb)
                nb += EVERY_MS
                if not cnt:
                    k = (t // EVERY_MS + 1) * EVERY_MS
                    if k > nb:
                        nb = k
                    break
            lo = nb - SIZE_MS
            while cnt and ts[head] < lo:
                head += 1
                if head == RING:
                    head = 0
                cnt -= 1
            vs[wp] = v
            ts[wp] = t
            wp += 1
            if wp == RING:
                wp = 0
            cnt += 1
            # count window
            if n2 == 0:
                t2 = t
                first2 = lo2 = hi2 = v
                s2 = 0
            elif v < lo2:
                lo2 = v
            elif v > hi2:
                hi2 = v
            s2 += v
            last2 = v
            n2 += 1
            if n2 == COUNT:
                if self.emit is not None:
                    self.emit("count", t2, t, COUNT_NAMES,
                              [n2, num(s2, F), num(lo2, F), num(hi2, F), num(first2, F), num(last2, F)])
                n2 = 0
        st = self.st
        st[0] = y
        st[1] = nb
        st[2] = head
        st[3] = cnt
        st[4] = wp
        st[5] = n2
        st[6] = s2
        st[7] = lo2
        st[8] = hi2
        st[9] = first2
        st[10] = last2
        st[11] = t2
        return t

    def _slide(self, head, cnt, start, end):
        # scan the window's samples: sum, min, max (sum of squares only for a
        # result: it leaves small ints)
        vs = self.vs
        p = head
        lo = hi = vs[p]
        s = 0
        k = cnt
        while k:
            x = vs[p]
            s += x
            if x < lo:
                lo = x
            elif x > hi:
                hi = x
            p += 1
            if p == RING:
                p = 0
            k -= 1
        if self.emit is None:
            return
        sq = 0
        p = head
        for _ in range(cnt):
            sq += vs[p] * vs[p]
            p = (p + 1) % RING
        self.emit("slide", start, end, SLIDE_NAMES,
                  [cnt, num(s, cnt * F), num(lo, F), num(hi, F), stddev(cnt, s, sq)])
