# calibrate{slope,offset}: v*slope + offset, the slope kept as an exact
# decimal fraction (1.8 -> 18/10) so no float is made per sample.

from edgestream_agent.fixed import fraction, to_fixed


class Calibrate:
    def __init__(self, p, f):
        self.num, self.den = fraction(p["slope"])
        self.off = to_fixed(p["offset"], f)


FILTER = Calibrate
