# Sensor filters, in the spirit of ESPHome's: a per-sensor chain configured
# as a list. Each filter has push(t_ms, v) -> value or None (dropped), on
# fixed-point ints (see fixed.py), and allocates nothing per call.
#
#   range{min,max}          drop values outside [min, max] (either bound optional)
#   clamp{min,max}          clip into [min, max]
#   calibrate{slope,offset} v*slope + offset (slope kept as an exact decimal fraction)
#   delta{min}              pass v only if |v - last passed| >= min; the first passes
#   throttle{interval_ms}   the first passes; the next once t - last pass >= interval
#   median{size}            median of the last `size` values seen (fewer at the
#                           start); an even count gives the mean of the middle two
#   ema{alpha}              y = alpha*v + (1-alpha)*y_prev, the first y = v
#                           (y is kept with 10 extra bits of precision)
#   round{digits}           round half to even to `digits` decimals
#   heartbeat{interval_ms}  values pass; when nothing passed for interval_ms,
#                           the last value is sent again (the pipeline asks
#                           due(t) before each sample and calls beat())
#
# Results that are not exact at the sensor's `decimals` are rounded half to
# even to it. The classes are small on purpose: one chain per sensor.

from array import array
from edgestream_agent.fixed import div_round, fraction, to_fixed

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

_EMA_BITS = const(10)
_EMA_HALF = const(512)


class Range:
    def __init__(self, p, f):
        self.lo = None if p["min"] is None else to_fixed(p["min"], f)
        self.hi = None if p["max"] is None else to_fixed(p["max"], f)

    def push(self, t, v):
        if self.lo is not None and v < self.lo:
            return None
        if self.hi is not None and v > self.hi:
            return None
        return v


class Clamp(Range):
    def push(self, t, v):
        if self.lo is not None and v < self.lo:
            return self.lo
        if self.hi is not None and v > self.hi:
            return self.hi
        return v


class Calibrate:
    def __init__(self, p, f):
        self.num, self.den = fraction(p["slope"])
        self.off = to_fixed(p["offset"], f)

    def push(self, t, v):
        if self.den == 1:
            return v * self.num + self.off
        return div_round(v * self.num, self.den) + self.off


class Delta:
    def __init__(self, p, f):
        self.min = to_fixed(p["min"], f)
        self.last = None

    def push(self, t, v):
        last = self.last
        if last is not None:
            d = v - last
            if d < self.min and -d < self.min:
                return None
        self.last = v
        return v


class Throttle:
    def __init__(self, p, f):
        self.interval = p["interval_ms"]
        self.last_t = None

    def push(self, t, v):
        if self.last_t is not None and t - self.last_t < self.interval:
            return None
        self.last_t = t
        return v


class Median:
    def __init__(self, p, f):
        n = p["size"]
        self.size = n
        self.ring = array("i", bytes(4 * n))    # last `size` values, arrival order
        self.sorted = array("i", bytes(4 * n))  # the same values, sorted
        self.n = 0
        self.pos = 0

    def push(self, t, v):
        s = self.sorted
        n = self.n
        if n == self.size:
            # take the oldest value out of the sorted copy
            old = self.ring[self.pos]
            i = 0
            while s[i] != old:
                i += 1
            while i < n - 1:
                s[i] = s[i + 1]
                i += 1
            n -= 1
        # insertion into the sorted copy
        i = n
        while i > 0 and s[i - 1] > v:
            s[i] = s[i - 1]
            i -= 1
        s[i] = v
        n += 1
        self.n = n
        self.ring[self.pos] = v
        self.pos += 1
        if self.pos == self.size:
            self.pos = 0
        h = n >> 1
        if n & 1:
            return s[h]
        return div_round(s[h - 1] + s[h], 2)


class Ema:
    def __init__(self, p, f):
        self.num, self.den = fraction(p["alpha"])
        self.y = None  # y << _EMA_BITS

    def push(self, t, v):
        ve = v << _EMA_BITS
        y = self.y
        if y is None:
            y = ve
        else:
            y += div_round((ve - y) * self.num, self.den)
        self.y = y
        return (y + _EMA_HALF) >> _EMA_BITS


class Round:
    def __init__(self, p, f):
        d = 0
        while 10 ** d < f:
            d += 1
        # one step of the sensor's fixed point below the wanted digits
        self.q = 10 ** (d - p["digits"]) if p["digits"] < d else 1

    def push(self, t, v):
        q = self.q
        if q == 1:
            return v
        return div_round(v, q) * q


class Heartbeat:
    def __init__(self, p, f):
        self.interval = p["interval_ms"]
        self.last = None
        self.last_t = 0

    def push(self, t, v):
        self.last = v
        self.last_t = t
        return v

    def due(self, t):
        # -> True when a re-send is due at or before t
        return self.last is not None and t - self.last_t >= self.interval

    def beat(self):
        # One re-send: returns (and records) its time; the value is self.last.
        self.last_t += self.interval
        return self.last_t


KINDS = {
    "range": Range, "clamp": Clamp, "calibrate": Calibrate, "delta": Delta,
    "throttle": Throttle, "median": Median, "ema": Ema, "round": Round,
    "heartbeat": Heartbeat,
}


def build(specs, factor):
    # Validated filter specs (config.py) -> list of filter objects.
    return [KINDS[s["type"]](s, factor) for s in specs]
