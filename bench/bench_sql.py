"""Streaming SQL throughput against hand-written Python loops doing the same work, in one run.

(a) filter + projection, (b) 1 s tumbling window per device with
count/avg/min/max over 100 devices, (c) a hopping window (10 s every 1 s),
(d) a session window per device, (e) a 10 s sliding window over one group
of 100K records (incremental: the bound is two value updates per record),
(f) what ``max_keys``/``max_state_bytes`` cost below the bounds and at them.
Every pair runs on the same in-memory
records (dicts, in event-time order, batches of 1000). Also prints the
p99 latency of a one-record batch and the peak RSS of the process.
"""

from __future__ import annotations

import random
import resource
import time
from typing import Any

from edgestream_hub.api import SimpleContext
from edgestream_hub.sql.processor import SqlProcessor

N = 300_000
DEVICES = 100


def make_records(n: int) -> list:
    rnd = random.Random(1)
    ts = 1_700_000_000_000
    out = []
    for i in range(n):
        ts += rnd.randint(0, 2)  # ~1000 records per second of event time, ~10 per device
        out.append({"id": f"dev{i % DEVICES}", "ts": ts, "temp": rnd.randint(0, 400) / 10})
    return out


def run_sql(query: str, recs: list, batch: int = 1000, **options: Any) -> tuple[float, int]:
    p = SqlProcessor(query, SimpleContext(), **options)
    n = 0
    t0 = time.perf_counter()
    for i in range(0, len(recs), batch):
        n += len(p.process(recs[i: i + batch], 0))
    n += len(p.flush())
    return time.perf_counter() - t0, n


# -- hand-written loops with the same semantics -----------------------------------
def hand_filter(recs: list) -> tuple[float, int]:
    t0 = time.perf_counter()
    out = []
    for r in recs:
        t = r.get("temp")
        if t is not None and t > 20:
            out.append({"id": r.get("id"), "f": t * 1.8 + 32})
    return time.perf_counter() - t0, len(out)


def hand_tumbling(recs: list, size: int = 1000) -> tuple[float, int]:
    t0 = time.perf_counter()
    windows: dict = {}
    out = []
    wm = -1
    nxt = 1 << 62
    for r in recs:
        ts = r["ts"]
        if ts > wm:
            wm = ts
            if wm >= nxt:
                for w in sorted(windows):
                    if w + size > wm:
                        break
                    for k, s in windows.pop(w).items():
                        out.append({"id": k, "n": s[0], "avg": s[1] / s[0], "min": s[2], "max": s[3]})
                nxt = min(windows) + size if windows else 1 << 62
        w = ts - ts % size
        g = windows.get(w)
        if g is None:
            g = windows[w] = {}
            nxt = min(nxt, w + size)
        k = r["id"]
        v = r["temp"]
        s = g.get(k)
        if s is None:
            g[k] = [1, v, v, v]
        else:
            s[0] += 1
            s[1] += v
            if v < s[2]:
                s[2] = v
            if v > s[3]:
                s[3] = v
    for w in sorted(windows):
        for k, s in windows[w].items():
            out.append({"id": k, "n": s[0], "avg": s[1] / s[0], "min": s[2], "max": s[3]})
    return time.perf_counter() - t0, len(out)


def hand_hopping(recs: list, size: int = 10_000, hop: int = 1000) -> tuple[float, int]:
    t0 = time.perf_counter()
    windows: dict = {}
    out = []
    wm = -1
    for r in recs:
        ts = r["ts"]
        if ts > wm:
            wm = ts
            for w in sorted(windows):
                if w + size > wm:
                    break
                for k, s in windows.pop(w).items():
                    out.append({"id": k, "n": s[0], "max": s[1]})
        k, v = r["id"], r["temp"]
        for j in range((ts - size) // hop + 1, ts // hop + 1):
            g = windows.setdefault(j * hop, {})
            s = g.get(k)
            if s is None:
                g[k] = [1, v]
            else:
                s[0] += 1
                if v > s[1]:
                    s[1] = v
    for w in sorted(windows):
        for k, s in windows[w].items():
            out.append({"id": k, "n": s[0], "max": s[1]})
    return time.perf_counter() - t0, len(out)


def hand_session(recs: list, timeout: int = 500, maxd: int = 60_000) -> tuple[float, int]:
    t0 = time.perf_counter()
    open_: dict = {}
    out = []
    for r in recs:
        ts, k, v = r["ts"], r["id"], r["temp"]
        s = open_.get(k)
        if s is not None and ts - s[1] < timeout and ts - s[0] < maxd:
            s[1] = ts
            s[2] += 1
            s[3] += v
            continue
        if s is not None:
            out.append({"id": k, "n": s[2], "avg": s[3] / s[2]})
        open_[k] = [ts, ts, 1, v]
    out.extend({"id": k, "n": s[2], "avg": s[3] / s[2]} for k, s in open_.items())
    return time.perf_counter() - t0, len(out)


def hand_sliding(recs: list, size: int = 10_000) -> tuple[float, int]:
    """Incremental by hand: a deque of the window, running count/sum, monotonic deques for min and max."""
    from collections import deque

    t0 = time.perf_counter()
    win: deque = deque()
    lo_q: deque = deque()
    hi_q: deque = deque()
    n = total = 0
    head = 0
    out = []
    for i, r in enumerate(recs):
        ts, v = r["ts"], r["temp"]
        win.append((ts, v))
        n += 1
        total += v
        while lo_q and lo_q[-1][1] > v:
            lo_q.pop()
        lo_q.append((i, v))
        while hi_q and hi_q[-1][1] < v:
            hi_q.pop()
        hi_q.append((i, v))
        while win[0][0] < ts - size:
            _, old = win.popleft()
            n -= 1
            total -= old
            if lo_q[0][0] == head:
                lo_q.popleft()
            if hi_q[0][0] == head:
                hi_q.popleft()
            head += 1
        out.append({"n": n, "avg": total / n, "min": lo_q[0][1], "max": hi_q[0][1]})
    return time.perf_counter() - t0, len(out)


def sliding_single_group(n: int = 100_000, size_s: int = 10) -> None:
    """(e): one group, ~10,000 records in every 10 s range; a rescan would touch ~10^9 values."""
    rnd = random.Random(2)
    recs = [{"ts": i, "temp": rnd.randint(0, 400) / 10} for i in range(n)]
    query = (f"SELECT count(*) AS n, avg(temp) AS avg, min(temp) AS min, max(temp) AS max FROM s "
             f"GROUP BY SLIDINGWINDOW(ss, {size_s})")
    hs, hn = min((hand_sliding(recs, size_s * 1000) for _ in range(2)), key=lambda x: x[0])
    best = None
    for _ in range(2):
        p = SqlProcessor(query, SimpleContext())
        t0 = time.perf_counter()
        rows = 0
        for i in range(0, n, 1000):
            rows += len(p.process(recs[i: i + 1000], 0))
        rows += len(p.flush())
        dt = time.perf_counter() - t0
        if best is None or dt < best[0]:
            best = (dt, rows, p.executor.touched)
    assert best is not None
    ss, sn, touched = best
    assert sn == hn == n, (sn, hn)
    # the bound: incremental means about two value updates per record, whatever the window holds
    assert touched <= 2 * n, touched
    print(f"(e) sliding 10s, one group, ~10,000 records per row: sql {n / ss:,.0f} rec/s, "
          f"hand-written {n / hs:,.0f} rec/s, ratio {hs / ss:.2f}; {touched / n:.2f} value updates per record")


def state_stats_cost() -> None:
    """state_stats() (the state gauges, read about once a second) on a large holistic state."""
    p = SqlProcessor("SELECT id, collect(v) AS c, count(DISTINCT v) AS d, median(v) AS m FROM s "
                     "GROUP BY id, TUMBLINGWINDOW(ss, 60)", SimpleContext())
    keys, per_key = 10_000, 20
    p.process([{"ts": i % 50_000, "id": i % keys, "v": i} for i in range(keys * per_key)], 0)
    t0 = time.perf_counter()
    stats = p.state_stats()
    dt = time.perf_counter() - t0
    print(f"state_stats() over {stats['live_states']:,} groups holding {keys * per_key * 3:,} values: "
          f"{dt * 1e3:.2f} ms (held_bytes ~{stats['held_bytes'] / 1e6:.1f} MB)")


def limits_cost(recs: list) -> None:
    """Records/s of three window kinds: no bounds, bounds never reached, bounds reached (both policies)."""
    kinds = [("tumbling", "SELECT id, count(*) AS n, avg(temp) AS a FROM s GROUP BY id, TUMBLINGWINDOW(ss, 1)"),
             ("session", "SELECT id, count(*) AS n FROM s GROUP BY id, SESSIONWINDOW(ms, 60000, 500)"),
             ("count", "SELECT id, count(*) AS n, collect(temp) AS c FROM s GROUP BY id, COUNTWINDOW(100, 10)")]
    runs: list[tuple[str, dict[str, Any]]] = [
        ("none", {}), ("not reached", {"max_keys": 10**6, "max_state_bytes": 1 << 40}),
        ("max_keys 50, emit_early", {"max_keys": 50}),
        ("max_keys 50, dead_letter", {"max_keys": 50, "on_limit": "dead_letter"})]
    for kind, query in kinds:
        rates = []
        for label, options in runs:
            ss, _ = min((run_sql(query, recs, **options) for _ in range(2)), key=lambda x: x[0])
            rates.append(f"{label} {len(recs) / ss:,.0f}")
        print(f"(f) {kind} with bounds, rec/s: " + "; ".join(rates))


def p99_latency_us(query: str, recs: list) -> float:
    p = SqlProcessor(query, SimpleContext())
    lat = []
    pc = time.perf_counter_ns
    for r in recs:
        t0 = pc()
        p.process([r], 0)
        lat.append(pc() - t0)
    lat.sort()
    return lat[int(len(lat) * 0.99)] / 1000


def main() -> None:
    recs = make_records(N)
    cases = [
        ("(a) filter + projection", "SELECT id, temp * 1.8 + 32 AS f FROM s WHERE temp > 20", hand_filter),
        ("(b) tumbling 1s count/avg/min/max x100 devices",
         "SELECT id, count(*) AS n, avg(temp) AS avg, min(temp) AS min, max(temp) AS max FROM s "
         "GROUP BY id, TUMBLINGWINDOW(ss, 1)", hand_tumbling),
        ("(c) hopping 10s every 1s count/max",
         "SELECT id, count(*) AS n, max(temp) AS max FROM s GROUP BY id, HOPPINGWINDOW(ss, 10, 1)", hand_hopping),
        ("(d) session timeout 500ms count/avg",
         "SELECT id, count(*) AS n, avg(temp) AS avg FROM s GROUP BY id, SESSIONWINDOW(ms, 60000, 500)", hand_session),
    ]
    print(f"{N:,} records, {DEVICES} devices, CPython, one core, batches of 1000")
    for name, query, hand in cases:
        hs, hn = min((hand(recs) for _ in range(2)), key=lambda x: x[0])
        ss, sn = min((run_sql(query, recs) for _ in range(2)), key=lambda x: x[0])
        assert hn == sn, (name, hn, sn)  # same rows out
        print(f"{name}: sql {N / ss:,.0f} rec/s, hand-written {N / hs:,.0f} rec/s, "
              f"ratio {hs / ss:.2f} ({sn:,} rows)")
    sliding_single_group()
    state_stats_cost()
    limits_cost(recs)
    q = cases[1][1]
    print(f"p99 latency of a one-record batch, query (b): {p99_latency_us(q, recs[:50_000]):.1f} us")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
