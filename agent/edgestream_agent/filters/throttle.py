# throttle{interval_ms}: the first value passes; the next once
# t - last pass >= interval_ms.


class Throttle:
    def __init__(self, p, f):
        self.interval = p["interval_ms"]
        self.last_t = None

    def push(self, t, v):
        if self.last_t is not None and t - self.last_t < self.interval:
            return None
        self.last_t = t
        return v


FILTER = Throttle
