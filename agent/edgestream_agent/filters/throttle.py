# throttle{interval_ms}: the first value passes; the next once
# t - last pass >= interval_ms.


class Throttle:
    def __init__(self, p, f):
        self.interval = p["interval_ms"]
        self.last_t = None


FILTER = Throttle
