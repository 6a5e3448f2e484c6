# Shared helper for window tests (both interpreters): one sensor, one window,
# results collected as (start, end, {aggregate: value}).
from edgestream_agent.config import validate
from edgestream_agent.pipeline import Pipeline

ALL = ["count", "sum", "avg", "min", "max", "stddev", "first", "last"]


def pipeline(window, decimals=3, period_ms=100, filters=(), elastic=False):
    cfg = validate({"sensors": [{"name": "s", "period_ms": period_ms, "decimals": decimals,
                                 "filters": list(filters), "windows": [window]}]})
    got = []

    def on(pipe, w, start, end):
        d = {}
        names = w.agg.names
        vals = w.agg.values()
        for i in range(len(names)):
            d[names[i].decode()] = vals[i]
        got.append((start, end, d))

    return Pipeline(cfg["sensors"][0], on, elastic), got


def feed(p, samples):
    for t, v in samples:
        p.feed(t, v)
