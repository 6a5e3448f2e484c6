# throttle{interval_ms}: the first value passes; the next once
# t - last pass >= interval_ms.

from edgestream_agent.chain import THROTTLE


class Throttle:
    def __init__(self, p, f):
        self.kind = THROTTLE
        self.interval = p["interval_ms"]
        self.last_t = None


FILTER = Throttle
