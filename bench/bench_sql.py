"""Streaming SQL throughput against hand-written Python loops doing the same work, in one run.

(a) filter + projection; one query per window kind against plain Python loops over the same
in-memory records: (b) a 1 s tumbling window per device, count/avg/min/max over 100 devices,
(c) a hopping window (10 s every 1 s) count/max, (d) a session window per device count/avg,
(e) a 10 s sliding window over one group of 100K records count/avg/min/max (incremental: the bound
is two value updates per record), (e2) a 10 s sliding window per device count/avg/max;
(f) what ``max_keys``/``max_state_bytes`` cost below the bounds and at them.

Each window kind has up to two hand-written loops, both checked against the query's rows before
anything is timed:

- *same-rule loop*: computes exactly what the query does: ``avg`` from the exact sum (the values
  held as an integer count of units of 2**-56, which every value here needs at most, so the mean is
  the correctly rounded one, as the query's), rows emitted when the watermark reaches a window's
  end, in order of window end. Checked equal (``==``, the same rows in the same order).
- *plain loop*: float sums, and a session emitted when its key's next record opens another: the
  baseline of the earlier numbers. Checked equal as a multiset of rows, floats to 1e-9.

The hopping query sums nothing, so its one loop is both. Times are CPU time (``process_time``: the
machine is shared), RUNS runs alternating query and loops; printed: the median rate and, per loop,
loop time / query time (median of the per-run ratios, min-max). Records are dicts in event-time
order, in batches of 1000. Also prints the p99 latency of a one-record batch and the peak RSS.
"""

from __future__ import annotations

import heapq
import math
import random
import resource
import statistics
import time
from collections import deque
from itertools import chain
from typing import Any, Callable, Optional

from bench.report import figure
from edgestream_hub.api import SimpleContext
from edgestream_hub.sql.processor import SqlProcessor

SECTION = "SQL vs hand-written loops (CPU time)"
N = 300_000
DEVICES = 100
RUNS = 5
BIG = 1 << 62
#: the exact loops' unit: every value make_records writes (k / 10, k <= 400) is a multiple of 2**-56
UNIT = 1 << 56
SCALE = float(UNIT)

Loop = Callable[[list], list]


def make_records(n: int) -> list:
    rnd = random.Random(1)
    ts = 1_700_000_000_000
    out = []
    for i in range(n):
        ts += rnd.randint(0, 2)  # ~1000 records per second of event time, ~10 per device
        out.append({"id": f"dev{i % DEVICES}", "ts": ts, "temp": rnd.randint(0, 400) / 10})
    return out


def sliding_records(n: int = 100_000) -> list:
    """One group, one record per ms: ~10,000 records in every 10 s range (a rescan would touch ~10^9)."""
    rnd = random.Random(2)
    return [{"ts": i, "temp": rnd.randint(0, 400) / 10} for i in range(n)]


def query_rows(query: str, recs: list, batch: int = 1000, **options: Any) -> list:
    p = SqlProcessor(query, SimpleContext(), **options)
    out: list = []
    for i in range(0, len(recs), batch):
        out += p.process(recs[i: i + batch], 0)
    return out + p.flush()


def run_sql(query: str, recs: list, batch: int = 1000, **options: Any) -> tuple[float, int]:
    """(CPU seconds, rows) of one run of the query."""
    t0 = time.process_time()
    n = len(query_rows(query, recs, batch, **options))
    return time.process_time() - t0, n


# -- hand-written loops ----------------------------------------------------------------------------------
def hand_filter(recs: list) -> list:
    out = []
    for r in recs:
        t = r.get("temp")
        if t is not None and t > 20:
            out.append({"id": r.get("id"), "f": t * 1.8 + 32})
    return out


def hand_tumbling(recs: list, size: int = 1000) -> list:
    """Plain: float sums."""
    windows: dict = {}
    out = []
    wm = -1
    nxt = BIG
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
                nxt = min(windows) + size if windows else BIG
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
    return out


def hand_tumbling_exact(recs: list, size: int = 1000) -> list:
    """Same rule: the sum as an exact count of units."""
    floor = math.floor
    windows: dict = {}
    out = []
    wm = -1
    nxt = BIG
    for r in recs:
        ts = r["ts"]
        if ts > wm:
            wm = ts
            if wm >= nxt:
                for w in sorted(windows):
                    if w + size > wm:
                        break
                    for k, s in windows.pop(w).items():
                        out.append({"id": k, "n": s[0], "avg": s[1] / (s[0] * UNIT), "min": s[2], "max": s[3]})
                nxt = min(windows) + size if windows else BIG
        w = ts - ts % size
        g = windows.get(w)
        if g is None:
            g = windows[w] = {}
            nxt = min(nxt, w + size)
        k = r["id"]
        v = r["temp"]
        s = g.get(k)
        if s is None:
            g[k] = [1, floor(v * SCALE), v, v]
        else:
            s[0] += 1
            s[1] += floor(v * SCALE)
            if v < s[2]:
                s[2] = v
            if v > s[3]:
                s[3] = v
    for w in sorted(windows):
        for k, s in windows[w].items():
            out.append({"id": k, "n": s[0], "avg": s[1] / (s[0] * UNIT), "min": s[2], "max": s[3]})
    return out


def hand_hopping(recs: list, size: int = 10_000, hop: int = 1000) -> list:
    """Each record updates the size / hop windows holding it; windows close in order of end."""
    windows: dict = {}
    out = []
    wm = -1
    nxt = BIG
    for r in recs:
        ts = r["ts"]
        if ts > wm:
            wm = ts
            if wm >= nxt:
                for w in sorted(windows):
                    if w + size > wm:
                        break
                    for k, s in windows.pop(w).items():
                        out.append({"id": k, "n": s[0], "max": s[1]})
                nxt = min(windows) + size if windows else BIG
        k, v = r["id"], r["temp"]
        for j in range((ts - size) // hop + 1, ts // hop + 1):
            w = j * hop
            g = windows.get(w)
            if g is None:
                g = windows[w] = {}
                nxt = min(nxt, w + size)
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
    return out


def hand_session(recs: list, timeout: int = 500, maxd: int = 60_000) -> list:
    """Plain: float sums; a session is emitted when its key's next record opens another."""
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
    return out


def hand_session_exact(recs: list, timeout: int = 500, maxd: int = 60_000) -> list:
    """Same rule: exact sums; sessions emitted when the watermark reaches their end, in order of end (ties:
    in order of creation), from a heap of ends re-pushed when a session grew since its entry was pushed."""
    floor = math.floor
    open_: dict = {}  # key -> [first, last, n, exact sum, seq]
    heap: list = []  # (end when pushed, seq, key)
    out = []
    wm: float = -1
    nxt: float = BIG
    seq = 0
    for r in chain(recs, (None,)):
        ts = r["ts"] if r is not None else math.inf
        if ts > wm:
            wm = ts
            if wm >= nxt:
                while heap and heap[0][0] <= wm:
                    end, sq, k = heapq.heappop(heap)
                    s = open_[k]
                    real = min(s[1] + timeout, s[0] + maxd)
                    if real > end:
                        heapq.heappush(heap, (real, sq, k))
                        continue
                    del open_[k]
                    out.append({"id": k, "n": s[2], "avg": s[3] / (s[2] * UNIT)})
                nxt = heap[0][0] if heap else BIG
        if r is None:
            break
        k, v = r["id"], r["temp"]
        s = open_.get(k)
        if s is not None:  # in event-time order a session the record cannot join has ended: emitted above
            s[1] = ts
            s[2] += 1
            s[3] += floor(v * SCALE)
            continue
        seq += 1
        open_[k] = [ts, ts, 1, floor(v * SCALE), seq]
        end = min(ts + timeout, ts + maxd)
        heapq.heappush(heap, (end, seq, k))
        nxt = min(nxt, end)
    return out


def hand_sliding(recs: list, size: int = 10_000) -> list:
    """Plain, one group: a deque of the window, running count and float sum, monotonic deques for min and max."""
    win: deque = deque()
    lo_q: deque = deque()
    hi_q: deque = deque()
    n = 0
    total = 0.0
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
    return out


def hand_sliding_exact(recs: list, size: int = 10_000) -> list:
    """Same rule, one group: as ``hand_sliding`` with the exact sum."""
    floor = math.floor
    win: deque = deque()
    lo_q: deque = deque()
    hi_q: deque = deque()
    n = total = head = 0
    out = []
    for i, r in enumerate(recs):
        ts, v = r["ts"], r["temp"]
        x = floor(v * SCALE)
        win.append((ts, x))
        n += 1
        total += x
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
        out.append({"n": n, "avg": total / (n * UNIT), "min": lo_q[0][1], "max": hi_q[0][1]})
    return out


def hand_sliding_keyed(recs: list, size: int = 10_000) -> list:
    """Plain, per device: count, float avg and max over each device's last ``size`` ms."""
    groups: dict = {}  # key -> [window deque, max deque, count, sum, index of window[0], records seen]
    out = []
    for r in recs:
        ts, k, v = r["ts"], r["id"], r["temp"]
        g = groups.get(k)
        if g is None:
            g = groups[k] = [deque(), deque(), 0, 0.0, 0, 0]
        win, hi_q = g[0], g[1]
        win.append((ts, v))
        g[2] += 1
        g[3] += v
        while hi_q and hi_q[-1][1] < v:
            hi_q.pop()
        hi_q.append((g[5], v))
        g[5] += 1
        if win[0][0] < ts - size:
            head = g[4]
            while win[0][0] < ts - size:
                g[2] -= 1
                g[3] -= win.popleft()[1]
                if hi_q[0][0] == head:
                    hi_q.popleft()
                head += 1
            g[4] = head
        out.append({"id": k, "n": g[2], "avg": g[3] / g[2], "max": hi_q[0][1]})
    return out


def hand_sliding_keyed_exact(recs: list, size: int = 10_000) -> list:
    """Same rule, per device: as ``hand_sliding_keyed`` with the exact sum."""
    floor = math.floor
    groups: dict = {}
    out = []
    for r in recs:
        ts, k, v = r["ts"], r["id"], r["temp"]
        g = groups.get(k)
        if g is None:
            g = groups[k] = [deque(), deque(), 0, 0, 0, 0]
        win, hi_q = g[0], g[1]
        x = floor(v * SCALE)
        win.append((ts, x))
        g[2] += 1
        g[3] += x
        while hi_q and hi_q[-1][1] < v:
            hi_q.pop()
        hi_q.append((g[5], v))
        g[5] += 1
        if win[0][0] < ts - size:
            head = g[4]
            while win[0][0] < ts - size:
                g[2] -= 1
                g[3] -= win.popleft()[1]
                if hi_q[0][0] == head:
                    hi_q.popleft()
                head += 1
            g[4] = head
        out.append({"id": k, "n": g[2], "avg": g[3] / (g[2] * UNIT), "max": hi_q[0][1]})
    return out


# -- comparing and timing ---------------------------------------------------------------------------------
def _same_multiset(want: list, got: list) -> bool:
    """The same rows in any order, floats equal to 1e-9 (the plain loops' float sums round differently)."""
    def norm(rows: list) -> list:
        return sorted(rows, key=lambda r: [(0, round(v, 6)) if isinstance(v, float) else (1, repr(v))
                                           for v in r.values()])
    if len(want) != len(got):
        return False
    for a, b in zip(norm(want), norm(got)):
        if list(a) != list(b):
            return False
        for k, v in a.items():
            w = b[k]
            if not (math.isclose(v, w, rel_tol=1e-9) if isinstance(v, float) else v == w):
                return False
    return True


def _cpu(fn: Callable[..., Any], *args: Any) -> float:
    t0 = time.process_time()
    fn(*args)
    return time.process_time() - t0


def _spread(xs: list, fmt: str) -> str:
    return f"{format(statistics.median(xs), fmt)} ({format(min(xs), fmt)}-{format(max(xs), fmt)})"


def compare(name: str, query: str, recs: list, loops: list[tuple[str, Loop, bool]]) -> dict[str, float]:
    """Check each loop against the query's rows, then time them RUNS times, alternating. Prints one line per
    case; returns each loop's median ratio (loop time / query time)."""
    want = query_rows(query, recs)
    for label, loop, same in loops:
        got = loop(recs)
        ok = got == want if same else _same_multiset(want, got)
        assert ok, f"{name}: the {label} loop's rows differ from the query's"
    sql: list[float] = []
    hand: dict[str, list[float]] = {label: [] for label, _, _ in loops}
    for _ in range(RUNS):
        sql.append(_cpu(query_rows, query, recs))
        for label, loop, _ in loops:
            hand[label].append(_cpu(loop, recs))
    n = len(recs)
    parts = [f"sql {_spread([n / t / 1e3 for t in sql], ',.0f')}K rec/s"]
    ratios = {}
    for label, ts in hand.items():
        rs = [h / s for h, s in zip(ts, sql)]
        ratios[label] = statistics.median(rs)
        parts.append(f"{label} loop {statistics.median(n / t for t in ts) / 1e3:,.0f}K rec/s, "
                     f"ratio {_spread(rs, '.2f')}")
    print(f"{name} ({len(want):,} rows): " + "; ".join(parts), flush=True)
    figure(SECTION, f"{name}: SQL", [n / t for t in sql], "records/s", echo=False)
    for label, ts in hand.items():
        figure(SECTION, f"{name}: SQL / {label} hand loop", [h / s for h, s in zip(ts, sql)], "ratio", echo=False)
    return ratios


def sliding_touched(query: str, recs: list) -> float:
    """Value updates per record of an incremental sliding window (the bound is two)."""
    p = SqlProcessor(query, SimpleContext())
    for i in range(0, len(recs), 1000):
        p.process(recs[i: i + 1000], 0)
    p.flush()
    touched: int = p.executor.touched
    assert touched <= 2 * len(recs), touched
    return touched / len(recs)


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
        print(f"(f) {kind} with bounds, rec/s (CPU): " + "; ".join(rates))


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


TUMBLING = ("SELECT id, count(*) AS n, avg(temp) AS avg, min(temp) AS min, max(temp) AS max FROM s "
            "GROUP BY id, TUMBLINGWINDOW(ss, 1)")
SLIDING = ("SELECT count(*) AS n, avg(temp) AS avg, min(temp) AS min, max(temp) AS max FROM s "
           "GROUP BY SLIDINGWINDOW(ss, 10)")
SLIDING_KEYED = "SELECT id, count(*) AS n, avg(temp) AS avg, max(temp) AS max FROM s GROUP BY id, SLIDINGWINDOW(ss, 10)"


def main(only: Optional[list[str]] = None) -> None:
    recs = make_records(N)
    srecs = sliding_records()
    assert all((r["temp"] * SCALE).is_integer() for r in recs + srecs)  # what the exact loops' unit needs
    cases: list[tuple[str, str, list, list[tuple[str, Loop, bool]]]] = [
        ("(a) filter + projection", "SELECT id, temp * 1.8 + 32 AS f FROM s WHERE temp > 20", recs,
         [("same-rule", hand_filter, True)]),
        ("(b) tumbling 1s count/avg/min/max x100 devices", TUMBLING, recs,
         [("same-rule", hand_tumbling_exact, True), ("plain", hand_tumbling, False)]),
        ("(c) hopping 10s every 1s count/max x100 devices",
         "SELECT id, count(*) AS n, max(temp) AS max FROM s GROUP BY id, HOPPINGWINDOW(ss, 10, 1)", recs,
         [("same-rule (= plain: no sum)", hand_hopping, True)]),
        ("(d) session timeout 500ms count/avg x100 devices",
         "SELECT id, count(*) AS n, avg(temp) AS avg FROM s GROUP BY id, SESSIONWINDOW(ms, 60000, 500)", recs,
         [("same-rule", hand_session_exact, True), ("plain", hand_session, False)]),
        ("(e) sliding 10s count/avg/min/max, one group, ~10,000 records per row", SLIDING, srecs,
         [("same-rule", hand_sliding_exact, True), ("plain", hand_sliding, False)]),
        ("(e2) sliding 10s count/avg/max x100 devices", SLIDING_KEYED, recs,
         [("same-rule", hand_sliding_keyed_exact, True), ("plain", hand_sliding_keyed, False)]),
    ]
    print(f"{N:,} records ((e): {len(srecs):,}), {DEVICES} devices, CPython, one core, batches of 1000, "
          f"CPU time, median of {RUNS} runs (min-max)")
    for name, query, data, loops in cases:
        if not only or name.split()[0].strip("()") in only:
            compare(name, query, data, loops)
    if only:
        return
    print(f"(e) value updates per record: {sliding_touched(SLIDING, srecs):.2f} (bound 2)")
    state_stats_cost()
    limits_cost(recs)
    print(f"p99 latency of a one-record batch, query (b): {p99_latency_us(TUMBLING, recs[:50_000]):.1f} us")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:] or None)
