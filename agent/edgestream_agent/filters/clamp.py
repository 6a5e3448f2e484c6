# clamp{min,max}: clip into [min, max]; either bound may be absent.

from edgestream_agent.chain import CLAMP
from edgestream_agent.filters.range import Range


class Clamp(Range):
    def __init__(self, p, f):
        Range.__init__(self, p, f)
        self.kind = CLAMP


FILTER = Clamp
