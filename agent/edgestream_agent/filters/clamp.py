# clamp{min,max}: clip into [min, max]; either bound may be absent.

from edgestream_agent.filters.range import Range


class Clamp(Range):
    def push(self, t, v):
        if self.lo is not None and v < self.lo:
            return self.lo
        if self.hi is not None and v > self.hi:
            return self.hi
        return v


FILTER = Clamp
