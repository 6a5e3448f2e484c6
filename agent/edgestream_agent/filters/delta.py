# delta{min}: pass v only if |v - last passed value| >= min; the first passes.

from edgestream_agent.fixed import to_fixed


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


FILTER = Delta
