# The per-sample code of every filter (the filter objects of filters/ hold
# only their parameters and state): a sensor's chain runs stage by stage
# over a block of values, one filter at a time, each with its state in
# local variables for the whole block.
#
#   m = run(filters, t0, vb, ob, m)
#
# vb[i] is a value (fixed point) at time t0 + ob[i], for i < m, in time
# order; vb and ob are lists (a value between two filters may leave 32 bits,
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

try:
    import micropython
    from micropython import const
except ImportError:  # CPython
    from edgestream_agent.cpython import const, micropython

# filter kinds: each filter object's `kind` (set by its module in filters/)
RANGE = const(0)
CALIBRATE = const(1)
EMA = const(2)
MEDIAN = const(3)
CLAMP = const(4)
DELTA = const(5)
THROTTLE = const(6)
ROUND = const(7)
HEARTBEAT = const(8)
_SMALL = const(0x3FFFFFFF)  # the largest small int on a 32-bit board
_EMA_BITS = const(10)   # ema keeps y << _EMA_BITS
_EMA_HALF = const(512)


@micropython.native
def run(fs, t0, vb, ob, m):
    for f in fs:
        if not m:
            return 0
        k = f.kind
        if k == RANGE:
            lo = f.lo
            hi = f.hi
            j = 0
            for i in range(m):
                v = vb[i]
                if (lo is not None and v < lo) or (hi is not None and v > hi):
                    continue
                if j != i:
                    vb[j] = v
                    ob[j] = ob[i]
                j += 1
            m = j
        elif k == CALIBRATE:
            num = f.num
            den = f.den
            off = f.off
            if den == 1:
                for i in range(m):
                    vb[i] = vb[i] * num + off
            else:
                for i in range(m):
                    x = vb[i] * num
                    q = x // den
                    r = (x - q * den) * 2
                    if r > den or (r == den and q & 1):
                        q += 1
                    vb[i] = q + off
        elif k == EMA:
            num = f.num
            den = f.den
            y = f.y
            for i in range(m):
                ve = vb[i] << _EMA_BITS
                if y is None:
                    y = ve
                else:
                    x = (ve - y) * num
                    q = x // den
                    r = (x - q * den) * 2
                    if r > den or (r == den and q & 1):
                        q += 1
                    y += q
                vb[i] = (y + _EMA_HALF) >> _EMA_BITS
            f.y = y
        elif k == MEDIAN:
            # two rings of `size`: arrival order and sorted (insertion sort);
            # they hold 32 bits: a value beyond (after calibrate) is dropped
            s = f.sorted
            ring = f.ring
            size = f.size
            c = f.n
            pos = f.pos
            o = 0
            for i in range(m):
                v = vb[i]
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
                vb[o] = v
                ob[o] = ob[i]
                o += 1
            f.n = c
            f.pos = pos
            m = o
        elif k == CLAMP:
            lo = f.lo
            hi = f.hi
            for i in range(m):
                v = vb[i]
                if lo is not None and v < lo:
                    vb[i] = lo
                elif hi is not None and v > hi:
                    vb[i] = hi
        elif k == DELTA:
            d = f.min
            last = f.last
            j = 0
            for i in range(m):
                v = vb[i]
                if last is not None:
                    x = v - last
                    if x < d and -x < d:
                        continue
                last = v
                if j != i:
                    vb[j] = v
                    ob[j] = ob[i]
                j += 1
            f.last = last
            m = j
        elif k == THROTTLE:
            # compared as offsets from t0: the next pass at offset >= nxt
            last = f.last_t
            every = f.interval
            nxt = None if last is None else last + every - t0
            j = 0
            for i in range(m):
                o = ob[i]
                if nxt is not None and o < nxt:
                    continue
                nxt = o + every
                if j != i:
                    vb[j] = vb[i]
                    ob[j] = o
                j += 1
            if j:
                f.last_t = t0 + ob[j - 1]
            m = j
        elif k == ROUND:
            q0 = f.q
            if q0 != 1:
                for i in range(m):
                    v = vb[i]
                    q = v // q0
                    r = (v - q * q0) * 2
                    if r > q0 or (r == q0 and q & 1):
                        q += 1
                    vb[i] = q * q0
        else:  # HEARTBEAT
            f.last = vb[m - 1]
            f.last_t = t0 + ob[m - 1]
    return m
