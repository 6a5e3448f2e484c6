# ema{alpha}: y = alpha*v + (1 - alpha)*y_prev, the first y = v. alpha is an
# exact decimal fraction; y keeps 10 extra bits of precision and the output
# is rounded to the sensor's fixed point.

from edgestream_agent.fixed import div_round, fraction

from edgestream_agent.timebase import const

_EMA_BITS = const(10)
_EMA_HALF = const(512)


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


FILTER = Ema
