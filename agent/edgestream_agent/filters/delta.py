# delta{min}: pass v only if |v - last passed value| >= min; the first passes.

from edgestream_agent.fixed import to_fixed


class Delta:
    def __init__(self, p, f):
        self.min = to_fixed(p["min"], f)
        self.last = None


FILTER = Delta
