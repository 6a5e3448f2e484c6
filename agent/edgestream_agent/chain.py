# The per-sample code of every filter (the filter objects of filters/ hold
# only their parameters and state): a sensor's chain runs stage by stage
# over a block of values, one filter at a time, each with its state in
# local variables for the whole block.
#
#   n = run(filters, t0, vs, ts, n)
#
# vs[i] is a value (fixed point) at time t0 + ts[i], for i < n, in time
# order; vs and ts are lists (a value between two filters may leave 32 bits,
# e.g. after calibrate, and must stay exact until the pipeline refuses it).
# In place: what a filter drops is taken out and the rest move down with
# their offsets; returns how many are left. A single sample is a block of
# one (Pipeline.push), a source's block a block of many (push_block): the
# same code, one call per chain instead of a method call per filter and
# sample, compiled to machine code where the port can (@micropython.native).
#
# Rounding to the sensor's fixed point is half to even (fixed.div_round,
# written out: no call, no tuple). heartbeat only records its last value
# here; its re-sends are the pipeline's (they interleave with the samples).

from edgestream_agent.fixed import I32_MAX, I32_MIN

from edgestream_agent.timebase import const, micropython

# filter kinds: each filter object's `kind` is its type's place here (set
# by filters.build); private constants below, so no name per kind on a board
KINDS = ("range", "calibrate", "ema", "median", "clamp", "delta", "throttle", "round", "heartbeat")
_RANGE = const(0)
_CALIBRATE = const(1)
_EMA = const(2)
_MEDIAN = const(3)
_CLAMP = const(4)
_DELTA = const(5)
_THROTTLE = const(6)
_ROUND = const(7)
_SMALL = const(0x3FFFFFFF)  # the largest small int on a 32-bit board
_EMA_BITS = const(10)   # ema keeps y << _EMA_BITS
_EMA_HALF = const(512)


@micropython.native
def run(filters, t0, vs, ts, n):
    for f in filters:
        if not n:
            return 0
        k = f.kind
        if k == _RANGE:
            lo = f.lo
            hi = f.hi
            j = 0
            for i in range(n):
                v = vs[i]
                if (lo is not None and v < lo) or (hi is not None and v > hi):
                    continue
                if j != i:
                    vs[j] = v
                    ts[j] = ts[i]
                j += 1
            n = j
        elif k == _CALIBRATE:
            num = f.num
            den = f.den
            off = f.off
            if den == 1:
                for i in range(n):
                    vs[i] = vs[i] * num + off
            else:
                for i in range(n):
                    x = vs[i] * num
                    q = x // den
                    r = (x - q * den) * 2
                    if r > den or (r == den and q & 1):
                        q += 1
                    vs[i] = q + off
        elif k == _EMA:
            num = f.num
            den = f.den
            y = f.y
            for i in range(n):
                ve = vs[i] << _EMA_BITS
                if y is None:
                    y = ve
                else:
                    x = (ve - y) * num
                    q = x // den
                    r = (x - q * den) * 2
                    if r > den or (r == den and q & 1):
                        q += 1
                    y += q
                vs[i] = (y + _EMA_HALF) >> _EMA_BITS
            f.y = y
        elif k == _MEDIAN:
            # two rings of `size`: arrival order and sorted (insertion sort);
            # they hold 32 bits: a value beyond (after calibrate) is dropped
            s = f.sorted
            ring = f.ring
            size = f.size
            c = f.n
            pos = f.pos
            o = 0
            for i in range(n):
                v = vs[i]
                if (v > _SMALL or v < -_SMALL) and (v > I32_MAX or v < I32_MIN):
                    continue
                if c == size:
                    # take the oldest value out of the sorted copy
                    old = ring[pos]
                    j = 0
                    while s[j] != old:
                        j += 1
                    c -= 1
                    while j < c:
                        s[j] = s[j + 1]
                        j += 1
                j = c
                while j > 0 and s[j - 1] > v:
                    s[j] = s[j - 1]
                    j -= 1
                s[j] = v
                c += 1
                ring[pos] = v
                pos += 1
                if pos == size:
                    pos = 0
                h = c >> 1
                if c & 1:
                    v = s[h]
                else:
                    x = s[h - 1] + s[h]
                    v = x >> 1
                    if x & 1 and v & 1:  # the mean of the middle two, half to even
                        v += 1
                vs[o] = v
                ts[o] = ts[i]
                o += 1
            f.n = c
            f.pos = pos
            n = o
        elif k == _CLAMP:
            lo = f.lo
            hi = f.hi
            for i in range(n):
                v = vs[i]
                if lo is not None and v < lo:
                    vs[i] = lo
                elif hi is not None and v > hi:
                    vs[i] = hi
        elif k == _DELTA:
            d = f.min
            last = f.last
            j = 0
            for i in range(n):
                v = vs[i]
                if last is not None:
                    x = v - last
                    if x < d and -x < d:
                        continue
                last = v
                if j != i:
                    vs[j] = v
                    ts[j] = ts[i]
                j += 1
            f.last = last
            n = j
        elif k == _THROTTLE:
            # compared as offsets from t0: the next pass at offset >= nxt
            last = f.last_t
            every = f.interval
            nxt = None if last is None else last + every - t0
            j = 0
            for i in range(n):
                o = ts[i]
                if nxt is not None and o < nxt:
                    continue
                nxt = o + every
                if j != i:
                    vs[j] = vs[i]
                    ts[j] = o
                j += 1
            if j:
                f.last_t = t0 + ts[j - 1]
            n = j
        elif k == _ROUND:
            q0 = f.q
            if q0 != 1:
                for i in range(n):
                    v = vs[i]
                    q = v // q0
                    r = (v - q * q0) * 2
                    if r > q0 or (r == q0 and q & 1):
                        q += 1
                    vs[i] = q * q0
        else:  # heartbeat
            f.last = vs[n - 1]
            f.last_t = t0 + ts[n - 1]
    return n
