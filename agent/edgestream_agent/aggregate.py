# Incremental aggregates of one window, in fixed-point integers.
#
# count, sum, avg and stddev come from running sums that add (and, for
# sliding windows, subtract) one sample in O(1) without allocating:
#   - values are shifted by a reference `ref` (the first value since the
#     window was last empty), so sums stay small for a sensor that moves
#     around a level: d = v - ref;
#   - the sum of squares of d is kept in two limbs, sq_hi * 2**28 + sq_lo,
#     with 0 <= sq_lo < 2**28 after every step, so it never overflows a
#     31-bit small int on a board however many samples a window holds.
#     d*d itself stays a small int while |d| < 2**14 (16.383 at decimals 3);
#     beyond that a board allocates a temporary long int (still exact).
# When the window closes, results are computed exactly from these integers:
#   sum    = n*ref + sd                  (sd = sum of d)
#   stddev = sqrt(n*sq - sd*sd) / n      (population; exact integer variance)
# min, max, first and last are tracked by the window that owns this object
# (a tumbling window directly, a sliding one from its ring and deques).

import math
from edgestream_agent.fixed import ldiv

from edgestream_agent.timebase import const, micropython

_SQ_BITS = const(28)
_SQ_MASK = const(0xFFFFFFF)

# aggregate names in code order: the code (index) builds results without
# string compares; the bytes go to the wire encoder as they are, shared by
# every window (no bytes object per window)
NAMES = (b"count", b"sum", b"avg", b"min", b"max", b"stddev", b"first", b"last")


class Aggregate:
    def __init__(self, names, factor):
        # names: aggregate names (str) in output order; factor: 10**decimals
        codes = tuple(NAMES.index(n.encode()) for n in names)
        self._codes = codes
        self.names = tuple(NAMES[c] for c in codes)  # bytes, for the wire encoder
        self.factor = factor
        self.need_sq = "stddev" in names
        self.need_min = "min" in names
        self.need_max = "max" in names
        self.reset()

    def reset(self):
        self.n = 0
        self.ref = 0
        self.sd = 0
        self.sq_lo = 0
        self.sq_hi = 0
        # set by the owning window before values() is called
        self.lo = 0
        self.hi = 0
        self.first = 0
        self.last = 0

    @micropython.native
    def add(self, vs, i, k):
        # Add the values vs[i:k] (i < k: one sample, or a run of a block),
        # the sums kept in local variables meanwhile
        n = self.n
        if n == 0:
            self.ref = vs[i]
            self.sd = 0
            self.sq_lo = 0
            self.sq_hi = 0
        ref = self.ref
        sd = self.sd
        if self.need_sq:
            lo = self.sq_lo
            hi = self.sq_hi
            for x in range(i, k):
                d = vs[x] - ref
                sd += d
                lo += d * d
                hi += lo >> _SQ_BITS
                lo &= _SQ_MASK
            self.sq_lo = lo
            self.sq_hi = hi
        else:
            for x in range(i, k):
                sd += vs[x] - ref
        self.sd = sd
        self.n = n + k - i

    @micropython.native
    def remove(self, vs, i, k, cap):
        # Sliding windows: take back the k samples added earlier that a ring
        # holds at vs[i], vs[i + 1], ... (wrapping at cap).
        ref = self.ref
        sd = self.sd
        if self.need_sq:
            lo = self.sq_lo
            hi = self.sq_hi
            for _ in range(k):
                d = vs[i] - ref
                sd -= d
                lo -= d * d
                hi += lo >> _SQ_BITS  # floor shift: borrows from hi
                lo &= _SQ_MASK
                i += 1
                if i == cap:
                    i = 0
            self.sq_lo = lo
            self.sq_hi = hi
        else:
            for _ in range(k):
                sd -= vs[i] - ref
                i += 1
                if i == cap:
                    i = 0
        self.sd = sd
        self.n -= k

    def rebase(self, values, start, count, cap):
        # Recompute the sums around a new ref from the samples a ring holds
        # (values[start], ... count of them, wrapping at cap). Used when a
        # sliding window's values drift far from ref.
        self.n = 0
        end = start + count
        if end <= cap:
            self.add(values, start, end)
        else:
            self.add(values, start, cap)
            self.add(values, 0, end - cap)

    def values(self):
        # The configured aggregates as a new list of numbers (allocates: a
        # window result is built only when a window closes).
        n = self.n
        f = self.factor
        out = []
        for c in self._codes:
            if c == 0:
                out.append(n)
            elif c == 1:
                out.append(ldiv(n * self.ref + self.sd, f))
            elif c == 2:
                out.append(ldiv(n * self.ref + self.sd, n * f))
            elif c == 3:
                out.append(ldiv(self.lo, f))
            elif c == 4:
                out.append(ldiv(self.hi, f))
            elif c == 5:
                sq = (self.sq_hi << _SQ_BITS) + self.sq_lo
                var = n * sq - self.sd * self.sd  # n**2 * variance, exact
                # sqrt(var) / (n * f); exact 0 and exact integers stay ints
                if var <= 0:
                    out.append(0)
                else:
                    r = math.sqrt(var)
                    ri = int(r)
                    out.append(ldiv(ri, n * f) if ri * ri == var else r / (n * f))
            elif c == 6:
                out.append(ldiv(self.first, f))
            else:
                out.append(ldiv(self.last, f))
        return out

