# ema{alpha}: y = alpha*v + (1 - alpha)*y_prev, the first y = v. alpha is an
# exact decimal fraction; y keeps 10 extra bits of precision (chain's
# _EMA_BITS) and the output is rounded to the sensor's fixed point.

from edgestream_agent.fixed import fraction


class Ema:
    def __init__(self, p, f):
        self.num, self.den = fraction(p["alpha"])
        self.y = None  # y << 10


FILTER = Ema
