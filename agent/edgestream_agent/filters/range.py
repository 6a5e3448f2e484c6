# range{min,max}: drop values outside [min, max]; either bound may be absent.

from edgestream_agent.fixed import to_fixed


class Range:
    def __init__(self, p, f):
        self.lo = None if p["min"] is None else to_fixed(p["min"], f)
        self.hi = None if p["max"] is None else to_fixed(p["max"], f)


FILTER = Range
