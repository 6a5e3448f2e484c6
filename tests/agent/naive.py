"""A deliberately naive float model of the agent's filter and window semantics.

Written straight from the spec (agent/README.md), with lists and
floats and no cleverness, as an independent oracle for the fixed-point,
ring-buffer implementation. Host only.
"""

from __future__ import annotations

import math
import statistics
from decimal import ROUND_HALF_EVEN, Decimal


def run_filters(filters: list[dict], samples: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """(t, v) in -> (t, v) out, heartbeat re-sends included, in time order.

    Time reaches every heartbeat with each input sample, whether or not the
    filters before it let the sample through: before a sample at t, every
    re-send due at or before t is sent (at its due time) down the rest of
    the chain.
    """
    states: list[dict] = [{} for _ in filters]
    out: list[tuple[int, float]] = []

    def down(i: int, t: int, v: float) -> None:
        for j in range(i, len(filters)):
            r = _one(filters[j], states[j], t, v)
            if r is None:
                return
            v = r
        out.append((t, v))

    for t, v in samples:
        for i, f in enumerate(filters):
            st = states[i]
            if f["type"] == "heartbeat":
                while "last" in st and t - st["last"][0] >= f["interval_ms"]:
                    st["last"] = (st["last"][0] + f["interval_ms"], st["last"][1])
                    down(i + 1, *st["last"])
        down(0, t, v)
    return out


def _one(f: dict, state: dict, t: int, v: float):
    kind = f["type"]
    if kind == "heartbeat":
        state["last"] = (t, v)
    elif kind == "range":
        if (f["min"] is not None and v < f["min"]) or (f["max"] is not None and v > f["max"]):
            return None
    elif kind == "clamp":
        if f["min"] is not None:
            v = max(v, f["min"])
        if f["max"] is not None:
            v = min(v, f["max"])
    elif kind == "calibrate":
        v = v * f["slope"] + f["offset"]
    elif kind == "delta":
        if "last" in state and abs(v - state["last"]) < f["min"] - 1e-9:
            return None
        state["last"] = v
    elif kind == "throttle":
        if "last" in state and t - state["last"] < f["interval_ms"]:
            return None
        state["last"] = t
    elif kind == "median":
        hist = state.setdefault("hist", [])
        hist.append(v)
        v = statistics.median(hist[-f["size"]:])
    elif kind == "ema":
        v = v if "y" not in state else f["alpha"] * v + (1 - f["alpha"]) * state["y"]
        state["y"] = v
    elif kind == "round":
        v = float(Decimal(repr(v)).quantize(Decimal(1).scaleb(-f["digits"]), rounding=ROUND_HALF_EVEN))
    return v


def aggregates(names: list[str], vals: list[float]) -> dict:
    m = sum(vals) / len(vals)
    table = {
        "count": len(vals), "sum": sum(vals), "avg": m, "min": min(vals), "max": max(vals),
        "stddev": math.sqrt(sum((x - m) ** 2 for x in vals) / len(vals)), "first": vals[0], "last": vals[-1],
    }
    return {n: table[n] for n in names}


def run_window(w: dict, samples: list[tuple[int, float]]) -> list[tuple[int, int, dict]]:
    """Window results (start, end, aggregates) after all samples and a final flush."""
    aggs = w["aggregates"]
    out = []
    if not samples:
        return out
    if "size" in w:
        size, every = w["size"], w.get("every")
        for k in range(1, len(samples) + 1):
            if every is None:
                if k % size == 0:
                    win = samples[k - size:k]
                    out.append((win[0][0], win[-1][0], aggregates(aggs, [v for _, v in win])))
            elif k % every == 0 and k >= size:
                win = samples[k - size:k]
                out.append((win[0][0], win[-1][0], aggregates(aggs, [v for _, v in win])))
        return out
    size, every = w["size_ms"], w.get("every_ms") or w["size_ms"]
    first_b = (samples[0][0] // every + 1) * every
    last_t = samples[-1][0]
    b = first_b
    while b - size <= last_t:
        win = [v for t, v in samples if b - size <= t < b]
        if win:
            out.append((b - size, b, aggregates(aggs, win)))
        b += every
    return out
