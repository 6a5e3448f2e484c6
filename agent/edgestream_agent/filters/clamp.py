# clamp{min,max}: clip into [min, max]; either bound may be absent. The
# parameters are range's (chain.run tells the two apart by their kind).

from edgestream_agent.filters.range import Range

FILTER = Range
