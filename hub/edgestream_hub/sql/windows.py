"""Executors: the window state each mode keeps, and when it is emitted.

Guarantees shared by every time window: the watermark is the largest
timestamp seen minus the lateness; a window is emitted once, when the
watermark reaches its end, and windows come out in order of window end
(ties: in order of creation); a record whose windows were all emitted is
late (counted, handed to ``ctx.late``); a window's state is dropped when
it is emitted. Count windows emit as soon as they are complete. With
``max_keys`` or ``max_state_bytes`` (``limits``), each executor says what
one state is (``keys``) and which is the oldest (``shed_oldest``).
"""

from __future__ import annotations

import math
from bisect import insort
from collections import deque
from heapq import heapify, heappop, heappush, heapreplace
from itertools import islice
from typing import Any, Iterable

from . import ir
from .errors import SqlError, SqlRuntimeError
from .keys import key_value
from .limits import Bounded
from .program import BIG, Program, compiled
from .sizes import CONTAINERS, approx_bytes, scaled_sum

INF = math.inf


def _reason(e: BaseException) -> str:
    if isinstance(e, SqlRuntimeError):
        return str(e)
    if isinstance(e, KeyError):
        return f"missing field {e}"
    if isinstance(e, AttributeError) and "get" in str(e):
        return "record is not an object"
    return f"{type(e).__name__}: {e}"


def _null_first(v: Any) -> tuple:
    return (v is not None, v)


class Executor(Bounded):
    """Common part: counters, dead letters, late records, emitting one window's groups, state limits."""

    def __init__(self, prog: Program, ctx: Any) -> None:
        self.prog = prog
        self.ctx = ctx
        self.limits = prog.limits
        self.bounded = self.limits.active  # read per record: a plain attribute, not the property
        self.full = False
        self.now = 0  # the batch's arrival time, for the executors that add records one at a time
        self.wm: Any = -BIG
        self.nxt: Any = BIG
        self.dead = 0
        self.late = 0
        self.emitted = 0
        self.names = prog.plan.names
        self.ident: Any = None  # (window start, end, group key) -> the row's result id (SqlProcessor sets it)
        self.id_field = ""
        self.order = prog.plan.order
        self.limit = prog.plan.limit
        # the aggregate state slots that hold values (collect, count DISTINCT, median, sliding queues)
        self.holistic = [i for i, x in enumerate(prog.init()) if isinstance(x, CONTAINERS)]

    # -- called from generated code ------------------------------------------
    def bad(self, r: Any, e: BaseException) -> None:
        self.dead += 1
        self.ctx.dead_letter(r, _reason(e))

    def late_record(self, r: Any) -> None:
        self.late += 1
        self.ctx.late(r)

    # -- lifecycle -----------------------------------------------------------
    def process(self, batch: list, now: int) -> list:
        self.now = now
        return compiled(self.prog.process_fn, "_process")(batch, now, self)

    def close(self, wm: Any, now: int) -> list:
        self.nxt = BIG
        return []

    def flush(self, now: int) -> list:
        return self.close(INF, now)

    def live_states(self) -> int:
        """Window/group states held now (tests check memory stays flat)."""
        return 0

    def held_bytes(self) -> int:
        """Approximate bytes of buffered values: holistic aggregates' values and buffered records.

        Walks the windows and a sample of each one's groups (see ``sizes``), so it stays cheap enough
        for a gauge read about once a second.
        """
        return 0

    def _window(self) -> ir.WindowSpec:
        """The query's window, which every mode but rows and fast has by definition."""
        w = self.prog.plan.window
        if w is None:
            raise AssertionError(f"{self.prog.plan.mode} mode without a window")
        return w

    def _held_in(self, state: list) -> int:
        """Approximate bytes of the values one aggregate state list holds."""
        return sum(approx_bytes(state[i]) for i in self.holistic)

    def state(self) -> dict:
        return {}

    def restore(self, st: dict) -> None:
        pass

    def summary(self) -> dict:
        """What the state holds, for ``edgestream state inspect``: ``windows`` (open windows as
        ``[start, end, groups]``, oldest first), ``keys`` (distinct group keys) and ``held`` (records
        or sessions held), each where the mode has it."""
        return {}

    # -- emitting --------------------------------------------------------------
    def _finish(self, res: list) -> list:
        if self.order:
            for i in range(len(self.order) - 1, -1, -1):
                desc = self.order[i][1]
                try:
                    res.sort(key=lambda x: _null_first(x[1][i]), reverse=desc)
                except TypeError:
                    res.sort(key=lambda x: _null_first(None if x[1][i] is None else str(x[1][i])), reverse=desc)
        if self.limit is not None:
            res = res[: self.limit]
        return res

    def rows_of(self, ws: Any, we: Any, groups: Iterable, now: int) -> list:
        emit = compiled(self.prog.emit, "_emit")
        res = []
        for k, s in groups:
            try:
                x = emit(ws, we, k, s, now)
            except Exception as e:  # one group's failure (e.g. a division by zero in SELECT)
                self.bad({"window_start": ws, "window_end": we, "key": key_value(k)}, e)
                continue
            if x is not None:
                res.append((x[0], x[1], k))
        names = self.names
        ident = self.ident
        if ident is None:
            out = [dict(zip(names, o)) for o, _, _ in self._finish(res)]
        else:
            idf = self.id_field
            out = []
            for o, _, k in self._finish(res):
                row = dict(zip(names, o))
                row[idf] = ident(ws, we, k)
                out.append(row)
        self.emitted += len(out)
        return out


class RowsExecutor(Executor):
    """No window, no aggregate: one output row per input row that passes WHERE."""

    def process(self, batch: list, now: int) -> list:
        out = compiled(self.prog.process_fn, "_process")(batch, now, self)
        self.emitted += len(out)
        return out

    def restore(self, st: dict) -> None:
        for a, s in zip(self.prog.analytics, st.get("analytic", [])):  # snapshots that kept them here
            a.state = s


class FastExecutor(Executor):
    """Tumbling, hopping or one global window, aggregates updated in place by generated code."""

    def __init__(self, prog: Program, ctx: Any) -> None:
        super().__init__(prog, ctx)
        self.W: dict = {}  # window start -> {group key: state list}
        self.W0: dict = {}  # the global window (no window in GROUP BY)
        w = prog.plan.window
        self.size = w.size if w is not None else None
        self.nkeys = 0  # groups held, counted with limits only (the generated code adds, this class subtracts)

    def close(self, wm: Any, now: int) -> list:
        out: list = []
        size = self.size
        if size is None:
            self.nxt = BIG
            return out
        W = self.W
        for w in sorted(W):
            if w + size > wm:
                break
            groups = W.pop(w)
            if self.bounded:
                self.nkeys -= len(groups)
            out.extend(self.rows_of(w, w + size, groups.items(), now))
        self.nxt = min(W) + size if W else BIG
        if self.full:
            self.recheck_full()
        return out

    def flush(self, now: int) -> list:
        if self.size is None:
            groups, self.W0 = self.W0, {}
            if self.bounded:
                self.nkeys -= len(groups)
            return self.rows_of(None, None, groups.items(), now)
        return self.close(INF, now)

    def live_states(self) -> int:
        return sum(len(g) for g in self.W.values()) + len(self.W0)

    def keys(self) -> int:
        return self.nkeys

    def shed_oldest(self, now: int) -> tuple[list, int]:
        # the groups of the window that ends first (all of them: it is the next to close anyway), or of
        # the global window. Emptied in place: the generated code may hold the window's dict.
        for w in sorted(self.W):
            groups = self.W[w]
            if groups:
                return self._shed_groups(groups, w, w + self.size, now)
        if self.W0:
            return self._shed_groups(self.W0, None, None, now)
        return [], 0

    def _shed_groups(self, groups: dict, ws: Any, we: Any, now: int) -> tuple[list, int]:
        items = list(groups.items())
        groups.clear()
        self.nkeys -= len(items)
        return self.rows_of(ws, we, items, now), len(items)

    def held_bytes(self) -> int:
        if not self.holistic:
            return 0
        return sum(scaled_sum(g.values(), self._held_in) for g in [*self.W.values(), self.W0])

    def state(self) -> dict:
        return {"W": self.W, "W0": self.W0}

    def summary(self) -> dict:
        keys = {k for g in self.W.values() for k in g} | set(self.W0)
        wins = [[w, w + self.size, len(self.W[w])] for w in sorted(self.W)] if self.size else []
        return {"windows": wins + ([[None, None, len(self.W0)]] if self.W0 else []), "keys": len(keys)}

    def restore(self, st: dict) -> None:
        self.W = st["W"]
        self.W0 = st["W0"]
        self.nxt = min(self.W) + self.size if self.W and self.size else BIG
        self.nkeys = self.live_states()


class SessionExecutor(Executor):
    """One session per group; it closes when the watermark reaches min(last + timeout, first + max).

    In event-time order a record joins its group's open session when
    ts - last < timeout and ts - first < max, otherwise it opens a new one.
    Out of order (within the lateness) a record joins the not yet emitted
    session of its group that contains it, else the one before it by the
    same rule, else the one after it when first - ts < timeout and
    last - ts < max, so a session never spans max or more and never has a
    gap of timeout or more; otherwise it opens a session of its own.
    Sessions never merge. Session ends sit in a heap (re-pushed when an end
    moves), so closing costs O(log sessions) per session.
    """

    def __init__(self, prog: Program, ctx: Any) -> None:
        super().__init__(prog, ctx)
        w = self._window()
        self.timeout, self.max = w.timeout, w.size
        self.open: dict = {}  # key -> seqs of its sessions not yet emitted, ordered by first ts
        self.sessions: dict = {}  # seq -> [first, last, key, state, seq]
        # key -> its session that starts last (sessions[open[key][-1]]), the one an in-order record joins:
        # the generated code joins it inline and calls ``add`` for everything else
        self.cur: dict = {}
        self.heap: list = []  # (end when pushed, seq)
        self.seq = 0

    def _end(self, sess: list) -> int:
        return min(sess[1] + self.timeout, sess[0] + self.max)

    def _fits_after(self, sess: list, ts: int) -> bool:
        return ts - sess[1] < self.timeout and ts - sess[0] < self.max

    def _fits_before(self, sess: list, ts: int) -> bool:
        return sess[0] - ts < self.timeout and sess[1] - ts < self.max

    def add(self, ts: int, k: Any, vals: tuple, r: Any) -> Any:
        seqs = self.open.get(k)
        sessions = self.sessions
        target = None
        at = 0  # where a new session goes in seqs
        if seqs:
            last = self.cur[k]
            if ts >= last[0]:  # in order for this group (the usual case): the spec's rule
                if ts - last[1] < self.timeout and ts - last[0] < self.max:
                    if self.full and not self.admit(r, 0):
                        return None
                    self.prog.update(last[3], vals)
                    if ts > last[1]:
                        last[1] = ts  # the end can only move later: the heap corrects it lazily
                    return
                at = len(seqs)
            else:
                at = len(seqs)
                for j, sq in enumerate(seqs):
                    if sessions[sq][0] > ts:
                        at = j
                        break
                prev = sessions[seqs[at - 1]] if at else None
                nxt = sessions[seqs[at]]
                if prev is not None and (ts <= prev[1] or self._fits_after(prev, ts)):
                    target = prev
                elif self._fits_before(nxt, ts):
                    target = nxt
        if target is not None:
            if self.full and not self.admit(r, 0):
                return None
            self.prog.update(target[3], vals)
            if ts > target[1]:
                target[1] = ts
            elif ts < target[0]:
                before = self._end(target)
                target[0] = ts
                end = self._end(target)
                if end < before:  # an earlier first can bring the end forward: the heap must know
                    heappush(self.heap, (end, target[4]))
                    if end < self.nxt:
                        self.nxt = end
            return None
        if ts < self.wm:
            self.late_record(r)
            return None
        if self.bounded and not self.admit(r, 1):
            return None
        self.seq += 1
        sess = [ts, ts, k, self.prog.update(self.prog.init(), vals), self.seq]
        sessions[self.seq] = sess
        if seqs is None:
            seqs = self.open[k] = []
        seqs.insert(at, self.seq)
        if at == len(seqs) - 1:
            self.cur[k] = sess
        end = self._end(sess)
        heappush(self.heap, (end, self.seq))
        if end < self.nxt:
            self.nxt = end
        return self.make_room(self.now) if self.bounded else None

    def close(self, wm: Any, now: int, most: Any = None) -> list:
        """Emit the sessions that end by ``wm``, in order of end (at most ``most`` of them)."""
        out: list = []
        heap, sessions, timeout, most_ms = self.heap, self.sessions, self.timeout, self.max
        n = 0
        while heap and heap[0][0] <= wm:
            end, seq = heap[0]
            sess = sessions.get(seq)
            if sess is None:
                heappop(heap)
                continue  # already emitted through another entry
            real = min(sess[1] + timeout, sess[0] + most_ms)
            if real != end:
                if real > end:
                    heapreplace(heap, (real, seq))  # it grew since it was pushed
                else:
                    heappop(heap)  # (an entry with the smaller real end exists and comes first)
                continue
            heappop(heap)
            del sessions[seq]
            k = sess[2]
            seqs = self.open[k]
            seqs.remove(seq)
            if seqs:
                self.cur[k] = sessions[seqs[-1]]
            else:
                del self.open[k]
                del self.cur[k]
            out.extend(self.rows_of(sess[0], end, [(k, sess[3])], now))
            n += 1
            if n == most:
                break
        self.nxt = heap[0][0] if heap else BIG
        if self.full:
            self.recheck_full()
        return out

    def live_states(self) -> int:
        return len(self.sessions)

    def keys(self) -> int:
        return len(self.sessions)

    def shed_oldest(self, now: int) -> tuple[list, int]:
        held = len(self.sessions)
        rows = self.close(INF, now, 1)  # the session that would end first
        return rows, held - len(self.sessions)

    def held_bytes(self) -> int:
        if not self.holistic:
            return 0
        return scaled_sum(self.sessions.values(), lambda sess: self._held_in(sess[3]))

    def state(self) -> dict:
        return {"open": self.open, "sessions": self.sessions, "heap": self.heap, "seq": self.seq}

    def summary(self) -> dict:
        wins = sorted([s[0], self._end(s), 1] for s in self.sessions.values())
        return {"windows": wins, "keys": len(self.open), "held": len(self.sessions)}

    def restore(self, st: dict) -> None:
        if any(not isinstance(v, list) for v in st["open"].values()):
            raise SqlError("resume_state holds session-window state of an older format: start without it")
        self.open, self.sessions, self.seq = st["open"], st["sessions"], st["seq"]
        self.cur = {k: self.sessions[seqs[-1]] for k, seqs in self.open.items()}
        self.heap = [tuple(x) for x in st["heap"]]
        self.nxt = self.heap[0][0] if self.heap else BIG


class SlidingExecutor(Executor):
    """Each record triggers one row for its group over [ts - size, ts], emitted when the watermark reaches ts.

    Incremental: per group, the records not yet reached by a trigger wait in
    ``pending`` (sorted by ts, arrival); the ones inside the current range
    sit in ``active`` (a deque in ts order) and are folded into running
    aggregate state as they enter and as they are evicted (see
    ``sliding``). A trigger moves pending records with ts <= T in, evicts
    records with ts < T - size, and emits: O(1) amortised per record for
    every non-holistic aggregate, never a rescan of the range.
    ``touched`` counts the values added and evicted (tests check it stays
    about two per record).
    """

    _P, _A, _H, _S, _C, _PH = range(6)  # group list: pending, active, index of active[0], state, refs, pending head

    def __init__(self, prog: Program, ctx: Any) -> None:
        super().__init__(prog, ctx)
        self.size = self._window().size
        self.refs = prog.slide_refs
        self._check = compiled(prog.check, "_check")
        self._remove = compiled(prog.remove, "_remove")
        self.groups: dict = {}  # key -> [pending, active, head index, state, check refs, pending head]
        self.trig: list = []  # heap of (ts, seq, key)
        self.seq = 0
        self.touched = 0
        self._closes = 0
        self._sweep_at = 64

    def add(self, ts: int, k: Any, vals: tuple, r: Any) -> Any:
        if ts < self.wm:
            self.late_record(r)
            return None
        groups = self.groups
        g = groups.get(k)
        new = g is None
        if g is None:
            g = [[], deque(), 0, self.prog.init(), [None] * self.refs, 0]
            self._check(g[4], vals)  # raises for a value this group could not aggregate
            if self.bounded and not self.admit(r, 1):
                return None
            groups[k] = g
        else:
            self._check(g[4], vals)
            if self.bounded:
                if self.full and not self.admit(r, 0):
                    return None
                del groups[k]  # the groups in order of last use: the least recently used is shed first
                groups[k] = g
        self.seq += 1
        pend = g[0]
        item = (ts, self.seq, vals)
        if len(pend) == g[5] or pend[-1][0] <= ts:
            pend.append(item)
        else:
            insort(pend, item, g[5])
        heappush(self.trig, (ts, self.seq, k))
        if ts < self.nxt:
            self.nxt = ts
        return self.make_room(self.now) if new and self.bounded else None

    def _evict(self, g: list, lo: Any) -> None:
        act = g[1]
        if act and act[0][0] < lo:
            s, rem = g[3], self._remove
            h = g[2]
            while act and act[0][0] < lo:
                rem(s, act.popleft()[1], h)
                h += 1
                self.touched += 1
            g[2] = h

    def close(self, wm: Any, now: int) -> list:
        out: list = []
        trig, size, groups = self.trig, self.size, self.groups
        plain = not self.order and self.limit is None  # one row per trigger: emit without sorting
        emit, names = compiled(self.prog.emit, "_emit"), self.names
        touched = set()
        while trig and trig[0][0] <= wm:
            T, _, k = heappop(trig)
            g = groups[k]
            pend, ph = g[0], g[5]
            if ph < len(pend) and pend[ph][0] <= T:
                self._enter(k, g, T)
            lo = T - size
            self._evict(g, lo)
            s = g[3]
            if plain:
                try:
                    x = emit(lo, T, k, s, now)
                except Exception as e:  # one row's failure (e.g. a division by zero in SELECT)
                    self.bad({"window_start": lo, "window_end": T, "key": key_value(k)}, e)
                    x = None
                if x is not None:
                    row = dict(zip(names, x[0]))
                    if self.ident is not None:
                        row[self.id_field] = self.ident(lo, T, k)
                    out.append(row)
                    self.emitted += 1
            else:
                out.extend(self.rows_of(lo, T, [(k, s)], now))
            touched.add(k)
        if wm == INF:
            self.groups.clear()
        else:
            # records older than wm - size are in no future window (future triggers are >= wm)
            lo = wm - size
            for k in touched:
                g = groups[k]
                if g[5] == len(g[0]) and g[1][-1][0] < lo:  # nothing pending, every record out of range
                    del groups[k]
            self._closes += 1
            if self._closes >= self._sweep_at:
                self._closes = 0
                self.sweep(lo)
        self.nxt = trig[0][0] if trig else BIG
        if self.full:
            self.recheck_full()
        return out

    def sweep(self, lo: Any) -> None:
        """Drop the groups that went quiet (nothing pending, every record before ``lo``): run every
        ``_sweep_at`` closes, which the generated code's in-order path counts as ``close`` does. It only
        reads the groups still in use: their next row evicts what has left their range."""
        groups = self.groups
        idle = [k for k, g in groups.items() if g[5] == len(g[0]) and (not g[1] or g[1][-1][0] < lo)]
        for k in idle:
            del groups[k]
        self._sweep_at = 64 + 2 * len(groups)

    def _enter(self, k: Any, g: list, T: Any) -> None:
        """Move the group's pending records with ts <= T into its range and its aggregate state."""
        pend, act, s, add = g[0], g[1], g[3], self.prog.update
        ph, n = g[5], len(pend)
        i = g[2] + len(act)
        while ph < n and pend[ph][0] <= T:
            ts, seq, vals = pend[ph]
            ph += 1
            act.append((ts, vals))
            try:
                add(s, vals, i, seq)
            except Exception as e:  # checked on arrival; kept so that no value can stop the query
                self.bad({"key": key_value(k), "ts": ts}, e)
            i += 1
            self.touched += 1
        if ph == n:
            pend.clear()
            ph = 0
        elif ph > 64 and ph * 2 > n:
            del pend[:ph]
            ph = 0
        g[5] = ph

    def keys(self) -> int:
        return len(self.groups)

    def shed_oldest(self, now: int) -> tuple[list, int]:
        # The least recently used tenth of the groups (at least one), so that the triggers of the
        # records they still wait for leave the heap in one rebuild: each such record's row is emitted
        # now, over the records its group holds, and the group starts over if its key comes back.
        groups = self.groups
        if not groups:
            return [], 0
        shed = list(islice(groups, max(1, len(groups) // 10)))
        out: list = []
        for k in shed:
            g = groups.pop(k)
            for T, _, _ in g[0][g[5]:]:
                self._enter(k, g, T)
                self._evict(g, T - self.size)
                out.extend(self.rows_of(T - self.size, T, [(k, g[3])], now))
        gone = set(shed)
        self.trig = [t for t in self.trig if t[2] not in gone]
        heapify(self.trig)
        self.nxt = self.trig[0][0] if self.trig else BIG
        return out, len(shed)

    def live_states(self) -> int:
        return sum(len(g[1]) + len(g[0]) - g[5] for g in self.groups.values())

    def held_bytes(self) -> int:
        # the records waiting for their trigger and those in range, and the aggregates' queues
        return scaled_sum(self.groups.values(),
                          lambda g: approx_bytes(g[0]) + approx_bytes(g[1]) + self._held_in(g[3]))

    def state(self) -> dict:
        return {"groups": self.groups, "trig": self.trig, "seq": self.seq}

    def summary(self) -> dict:
        return {"keys": len(self.groups), "held": self.live_states()}

    def restore(self, st: dict) -> None:
        if "groups" not in st:
            raise SqlError("resume_state holds sliding-window state of an older format: start without it")
        self.groups, self.trig, self.seq = st["groups"], st["trig"], st["seq"]
        self.nxt = self.trig[0][0] if self.trig else BIG


class CountExecutor(Executor):
    """COUNTWINDOW(n, m): per group, after every m-th record once there are n, a window over the last n.

    Incremental like sliding windows: each record is folded into the
    group's running state on arrival, and the record n back is evicted from
    it, so a window costs O(1) amortised however large n is (holistic
    aggregates read their buffered values at emit).
    """

    def __init__(self, prog: Program, ctx: Any) -> None:
        super().__init__(prog, ctx)
        w = self._window()
        self.n, self.m = w.size, w.hop
        self.refs = prog.slide_refs
        self._check = compiled(prog.check, "_check")
        self._remove = compiled(prog.remove, "_remove")
        self.bufs: dict = {}  # key -> [deque of (ts, vals), records seen, index of deque[0], state, check refs]
        self.now = 0

    def add(self, ts: Any, k: Any, vals: tuple, r: Any) -> list:
        bufs = self.bufs
        b = bufs.get(k)
        prog = self.prog
        new = b is None
        if b is None:
            b = [deque(), 0, 0, prog.init(), [None] * self.refs]
            self._check(b[4], vals)  # raises for a value this group could not aggregate
            if self.bounded and not self.admit(r, 1):
                return []
            bufs[k] = b
        else:
            self._check(b[4], vals)
            if self.bounded:
                if self.full and not self.admit(r, 0):
                    return []
                del bufs[k]  # the groups in order of last use: the least recently used is shed first
                bufs[k] = b
        q, s = b[0], b[3]
        q.append((ts, vals))
        i = b[2] + len(q) - 1
        prog.update(s, vals, i, i)  # a group's records arrive in queue order
        if len(q) > self.n:
            self._remove(s, q.popleft()[1], b[2])
            b[2] += 1
        b[1] += 1
        out = self.rows_of(q[0][0], q[-1][0], [(k, s)], self.now) if b[1] >= self.n and b[1] % self.m == 0 else []
        if new and self.bounded:
            out.extend(self.make_room(self.now))
        return out

    def flush(self, now: int) -> list:
        return []  # incomplete count windows are never emitted

    def live_states(self) -> int:
        return sum(len(b[0]) for b in self.bufs.values())

    def keys(self) -> int:
        return len(self.bufs)

    def shed_oldest(self, now: int) -> tuple[list, int]:
        # The least recently used group goes; what has arrived of its next window is emitted: that
        # window ends at the first multiple of m that is >= n and past the records seen, and holds
        # the n records before it, of which the seen ones are the last ``arrived`` in the queue.
        if not self.bufs:
            return [], 0
        k = next(iter(self.bufs))
        q, seen, _, s, _ = b = self.bufs.pop(k)
        end = -(-max(self.n, seen + 1) // self.m) * self.m
        arrived = seen - (end - self.n)
        if arrived <= 0:
            return [], 1
        while len(q) > arrived:
            self._remove(s, q.popleft()[1], b[2])
            b[2] += 1
        return self.rows_of(q[0][0], q[-1][0], [(k, s)], now), 1

    def held_bytes(self) -> int:
        return scaled_sum(self.bufs.values(), lambda b: approx_bytes(b[0]) + self._held_in(b[3]))

    def state(self) -> dict:
        return {"bufs": self.bufs}

    def summary(self) -> dict:
        return {"keys": len(self.bufs), "held": self.live_states()}

    def restore(self, st: dict) -> None:
        if any(len(b) != 5 for b in st["bufs"].values()):
            raise SqlError("resume_state holds count-window state of an older format: start without it")
        self.bufs = st["bufs"]


class WindowBuffers(Executor):
    """An executor that buffers records per window in ``W`` (start -> buffer) and turns a window's buffer
    into its rows with ``_rows`` at its end: each window is one state for the limits."""

    W: dict

    def _rows(self, w: int, buffer: Any, now: int) -> list:
        raise NotImplementedError

    def keys(self) -> int:
        return len(self.W)

    def shed_oldest(self, now: int) -> tuple[list, int]:
        # the oldest window, over what it holds now; its later records start a buffer of their own
        if not self.W:
            return [], 0
        w = min(self.W)
        return self._rows(w, self.W.pop(w), now), 1


class WindowRowsExecutor(WindowBuffers):
    """A tumbling or hopping window without aggregates: emits the window's rows, pruned to used fields."""

    def __init__(self, prog: Program, ctx: Any) -> None:
        super().__init__(prog, ctx)
        w = self._window()
        self.size = w.size
        self.hop = w.hop if w.kind == "hopping" else w.size
        self.W: dict = {}
        self._project = compiled(prog.project, "_project")

    def starts(self, ts: int) -> range:
        return range(((ts - self.size) // self.hop + 1) * self.hop, ts + 1, self.hop)

    def add(self, ts: int, k: Any, env: tuple, r: Any) -> Any:
        size, wm, W = self.size, self.wm, self.W
        starts = [w for w in self.starts(ts) if w + size > wm]
        if not starts:
            if not self.starts(ts):  # a record in a gap between hopping windows is in no window, not late
                return None
            self.late_record(r)
            return None
        new = 0
        if self.bounded:
            new = sum(w not in W for w in starts)
            if not self.admit(r, new):
                return None
        for w in starts:
            W.setdefault(w, []).append(env)
            if w + size < self.nxt:
                self.nxt = w + size
        return self.make_room(self.now) if new else None

    def _rows(self, w: int, envs: list, now: int) -> list:
        """The rows of window ``w``, in the query's order."""
        res = []
        for env in envs:
            try:
                x = self._project(w, w + self.size, now, *env)
            except Exception as e:
                self.bad(env[0], e)
                continue
            if x is not None:
                res.append((x[0], x[1]))
        rows = [row for row, _ in self._finish(res)]
        self.emitted += len(rows)
        return rows

    def close(self, wm: Any, now: int) -> list:
        out: list = []
        W = self.W
        for w in sorted(W):
            if w + self.size > wm:
                break
            out.extend(self._rows(w, W.pop(w), now))
        self.nxt = min(W) + self.size if W else BIG
        if self.full:
            self.recheck_full()
        return out

    def live_states(self) -> int:
        return sum(len(v) for v in self.W.values())


    def held_bytes(self) -> int:
        return sum(approx_bytes(rows) for rows in self.W.values())

    def state(self) -> dict:
        return {"W": self.W}

    def summary(self) -> dict:
        return {"windows": [[w, w + self.size, len(self.W[w])] for w in sorted(self.W)], "held": self.live_states()}

    def restore(self, st: dict) -> None:
        self.W = st["W"]
        self.nxt = min(self.W) + self.size if self.W else BIG


EXECUTORS = {
    "rows": RowsExecutor, "fast": FastExecutor, "session": SessionExecutor, "sliding": SlidingExecutor,
    "count": CountExecutor, "window_rows": WindowRowsExecutor,
}
