# median{size}: median of the last `size` values seen (fewer at the start);
# an even count gives the mean of the two middle values, rounded half to
# even. Two preallocated rings: arrival order and sorted (insertion sort:
# O(size) per sample, allocation-free).

from array import array


class Median:
    def __init__(self, p, f):
        n = p["size"]
        self.size = n
        self.ring = array("i", bytes(4 * n))    # last `size` values, arrival order
        self.sorted = array("i", bytes(4 * n))  # the same values, sorted
        self.n = 0
        self.pos = 0


FILTER = Median
