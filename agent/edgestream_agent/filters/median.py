# median{size}: median of the last `size` values seen (fewer at the start);
# an even count gives the mean of the two middle values, rounded half to
# even. Two preallocated rings: arrival order and sorted (insertion sort:
# O(size) per sample, allocation-free).

from array import array
from edgestream_agent.fixed import div_round


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


FILTER = Median
