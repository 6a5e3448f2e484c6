# The one error type for bad input on the wire. Decoders raise only this, so
# a caller can count and skip a bad payload or frame with a single `except`.


class WireError(ValueError):
    # `reason` says what was wrong and where (e.g. "items[2].seq: expected
    # int >= 0"), short enough to put in a log line or a metric label-free
    # dead-letter record.
    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason

    def __str__(self):
        return self.reason
