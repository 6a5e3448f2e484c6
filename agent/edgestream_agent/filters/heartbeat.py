# heartbeat{interval_ms}: values pass; when nothing passed for interval_ms,
# the last value is sent again. Time-driven: the pipeline asks due(t) before
# each sample (and on advance) and calls beat() for each re-send.


class Heartbeat:
    def __init__(self, p, f):
        self.interval = p["interval_ms"]
        self.last = None
        self.last_t = 0

    def due(self, t):
        # -> True when a re-send is due at or before t
        return self.last is not None and t - self.last_t >= self.interval

    def beat(self):
        # One re-send: returns (and records) its time; the value is self.last.
        self.last_t += self.interval
        return self.last_t


FILTER = Heartbeat
