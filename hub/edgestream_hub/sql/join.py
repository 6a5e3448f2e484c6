"""Stream-stream joins inside a tumbling or hopping window.

Each stream's records (tagged with the stream's name in ``stream_field``)
are filtered by their own pushed-down WHERE conjuncts, cut to the fields
the query uses, and buffered per window. When the watermark reaches the
window's end the buffers are hash-joined on the ON equalities (other ON
conditions are checked per pair), the remaining WHERE conjuncts applied,
and the rows grouped and aggregated or projected. The buffers are then
dropped. ``JOIN`` keeps matching pairs; ``LEFT JOIN`` also keeps each
left row that matched nothing in the window, with the right side NULL.
"""

from __future__ import annotations

from typing import Any, Optional

from . import ir
from .errors import SqlRuntimeError
from .functions import check_key, key_kinds, ts_ms
from .limits import NO_LIMITS, Limits
from .plan import Plan, sql_text
from .program import BIG, Fn, Program, compiled
from .sizes import approx_bytes
from .windows import WindowBuffers

_NULLS: dict = {}  # the record of an unmatched LEFT JOIN side: every field reads NULL


class JoinProgram(Program):
    def __init__(self, plan: Plan, *, time_field: str, lateness_ms: int, processing_time: bool,
                 functions: Any, stream_field: str, limits: Limits = NO_LIMITS) -> None:
        self.stream_field = stream_field
        super().__init__(plan, time_field=time_field, lateness_ms=lateness_ms, processing_time=processing_time,
                         tables=None, functions=functions, limits=limits)

    def _build(self) -> None:
        p, q, g = self.plan, self.q, self.gen
        streams = q.streams
        self.aliases = [s.alias for s in streams]
        self.left = [s.join == "left" for s in streams]
        self.by_name: dict[str, int] = {}
        for i, s in enumerate(streams):
            self.by_name[s.name] = i
            self.by_name[s.alias] = i
        envs = ["r"] + [f"r{i}" for i in range(1, len(streams))]
        for i, s in enumerate(streams):
            g.env[s.alias] = envs[i]
        inits, updates = self._agg_layout()
        self.init_src = "[" + ", ".join(inits) + "]"
        src = []
        self.key_texts = [[f"{sql_text(a)} = {sql_text(b)}" for a, b in q.join_keys.get(s.alias) or []]
                          for s in streams]
        for i, s in enumerate(streams):
            var = envs[i]
            fl = q.filters.get(s.alias) or []
            src.append(f"def _filter{i}({var}, now):\n    return " + (g.conds(fl) or "True") + "\n")
            used = q.used_fields.get(s.alias)
            if used is None:
                src.append(f"def _prune{i}({var}):\n    return {var}\n")
            else:
                src.append(f"def _prune{i}({var}):\n    return {{"
                           + ", ".join(f"{f!r}: {var}.get({f!r})" for f in sorted(used, key=str)) + "}\n")
            keys = q.join_keys.get(s.alias) or []
            prev = ", ".join(envs[:i]) or "_"
            if i and keys:
                probe, build = g.key([a for a, _ in keys]), g.key([b for _, b in keys])
                if len(keys) == 1:  # the probe and build keys are tuples, whatever their length
                    probe, build = f"({probe},)", f"({build},)"
                src.append(f"def _probe{i}({prev}):\n    return {probe}\n")
                src.append(f"def _build{i}({var}):\n    return {build}\n")
            res = q.join_residual.get(s.alias) or []
            if i and res:
                src.append(f"def _res{i}({', '.join(envs[:i + 1])}, now):\n    return {g.conds(res)}\n")
        allenv = ", ".join(envs)
        post = q.post_filters
        src.append(f"def _post({allenv}, now):\n    return " + (g.conds(post) or "True") + "\n")
        kcode = g.key(p.keys) if p.keys else "()"
        src.append(f"def _key({allenv}, now):\n    return {kcode}\n")
        vals = self._vals()
        src.append(f"def _vals({allenv}, now):\n" + "".join(f"    {v}\n" for v in vals)
                   + "    return (" + "".join(f"v{i}, " for i in range(len(p.aggs))) + ")\n")
        src.append(f"def _init():\n    return {self.init_src}\n")
        unpack = ("    " + "".join(f"v{i}, " for i in range(len(p.aggs))) + "= vals\n") if p.aggs else ""
        src.append("def _update(s, vals):\n" + unpack + "".join(f"    {u}\n" for u in updates) + "    return s\n")
        if p.aggs or p.keys:
            src.append(self._emit_src())
        else:
            src.append(self._emit_src().replace("def _project(ws, we, now, r", "def _project(ws, we, now, r", 1))
        self.source = "\n".join(src)
        ns = g.compile(self.source, self.text)
        n = len(streams)
        self.filters: list[Fn] = [ns[f"_filter{i}"] for i in range(n)]
        self.prunes: list[Fn] = [ns[f"_prune{i}"] for i in range(n)]
        # the probe and build keys of the ON equalities of stream i (both or neither), its other ON conditions
        self.probes: list[Optional[Fn]] = [ns.get(f"_probe{i}") for i in range(n)]
        self.builds: list[Optional[Fn]] = [ns.get(f"_build{i}") for i in range(n)]
        self.residuals: list[Optional[Fn]] = [ns.get(f"_res{i}") for i in range(n)]
        self.post: Optional[Fn] = ns["_post"] if post else None
        self.key, self.vals = ns["_key"], ns["_vals"]
        self.init, self.update = ns["_init"], ns["_update"]
        self.emit, self.project = ns.get("_emit"), ns.get("_project")
        self.grouping = bool(p.aggs or p.keys)
        self.process_fn = None


class StreamJoinExecutor(WindowBuffers):
    prog: JoinProgram

    def __init__(self, prog: JoinProgram, ctx: Any) -> None:
        super().__init__(prog, ctx)
        w = self._window()
        self.size = w.size
        self.hop = w.hop if w.kind == "hopping" else w.size
        self.n = len(prog.aliases)
        self.W: dict = {}  # window start -> [rows of stream 0, rows of stream 1, ...]

    def process(self, batch: list, now: int) -> list:
        prog = self.prog
        out: list = []
        L, size, hop = prog.lateness, self.size, self.hop
        tf, sf = prog.time_field, prog.stream_field
        limited = self.bounded
        for r in batch:
            try:
                i = prog.by_name.get(r.get(sf))
                if i is None:
                    raise SqlRuntimeError(f"record has no {sf!r} naming one of the streams {', '.join(prog.aliases)}")
                ts = now if prog.processing_time else ts_ms(r.get(tf))
                if ts - L > self.wm:
                    self.wm = ts - L
                if not prog.filters[i](r, now):
                    continue
                pr = prog.prunes[i](r)
                starts = [w for w in range(((ts - size) // hop + 1) * hop, ts + 1, hop) if w + size > self.wm]
                if not starts:
                    if ts - ts % hop + size > ts:  # not in a gap between windows (dropped there, not late)
                        self.late_record(r)
                    continue
                new = 0
                if limited:
                    new = sum(w not in self.W for w in starts)
                    if not self.admit(r, new):
                        continue
                for w in starts:
                    bufs = self.W.get(w)
                    if bufs is None:
                        bufs = self.W[w] = [[] for _ in range(self.n)]
                    bufs[i].append(pr)
                    if w + size < self.nxt:
                        self.nxt = w + size
                if new:
                    out.extend(self.make_room(now))
            except Exception as e:
                self.bad(r, e)
            finally:
                if self.wm >= self.nxt:
                    out.extend(self.close(self.wm, now))
        return out

    def _join(self, bufs: list, now: int) -> list:
        prog = self.prog
        envs: list[tuple] = [(x,) for x in bufs[0]]
        for i in range(1, self.n):
            rows = bufs[i]
            nxt: list[tuple] = []
            probe, build, res = prog.probes[i], prog.builds[i], prog.residuals[i]
            if probe is not None:
                build = compiled(build, f"_build{i}")
                idx: dict = {}
                for row in rows:
                    try:
                        k = build(row)
                        if None in k:
                            continue
                        idx.setdefault(k, []).append(row)
                    except Exception as e:
                        self.bad(row, e)
                kinds = key_kinds(idx, len(prog.key_texts[i]))
            left = prog.left[i]
            for env in envs:
                try:
                    if probe is not None:
                        key = probe(*env)
                        check_key(key, kinds, prog.key_texts[i])
                        cands = idx.get(key, ())
                    else:
                        cands = rows
                    matched = False
                    for m in cands:
                        e2 = env + (m,)
                        if res is None or res(*e2, now):
                            nxt.append(e2)
                            matched = True
                    if left and not matched:
                        nxt.append(env + (_NULLS,))  # LEFT JOIN: the right side's fields are NULL
                except Exception as e:
                    self.bad(env[0], e)
            envs = nxt
        if prog.post is not None:
            kept = []
            for env in envs:
                try:
                    if prog.post(*env, now):
                        kept.append(env)
                except Exception as e:
                    self.bad(env[0], e)
            envs = kept
        return envs

    def _rows(self, w: int, bufs: list, now: int) -> list:
        """Window ``w``'s rows: its buffers joined, then grouped and aggregated or projected."""
        prog = self.prog
        envs = self._join(bufs, now)
        if prog.grouping:
            groups: dict = {}
            for env in envs:
                try:
                    k = prog.key(*env, now)
                    vals = prog.vals(*env, now)
                except Exception as e:
                    self.bad(env[0], e)
                    continue
                s = groups.get(k)
                if s is None:
                    s = groups[k] = prog.init()
                prog.update(s, vals)
            return self.rows_of(w, w + self.size, groups.items(), now)
        project = compiled(prog.project, "_project")
        res = []
        for env in envs:
            try:
                x = project(w, w + self.size, now, *env)
            except Exception as e:
                self.bad(env[0], e)
                continue
            if x is not None:
                res.append(x)
        rows = [row for row, _ in self._finish(res)]
        self.emitted += len(rows)
        return rows

    def close(self, wm: Any, now: int) -> list:
        out: list = []
        for w in sorted(self.W):
            if w + self.size > wm:
                break
            out.extend(self._rows(w, self.W.pop(w), now))
        self.nxt = min(self.W) + self.size if self.W else BIG
        if self.full:
            self.recheck_full()
        return out

    def live_states(self) -> int:
        return sum(len(b) for bufs in self.W.values() for b in bufs)


    def held_bytes(self) -> int:
        return sum(approx_bytes(b) for bufs in self.W.values() for b in bufs)

    def state(self) -> dict:
        return {"W": self.W}

    def summary(self) -> dict:
        return {"windows": [[w, w + self.size, sum(len(b) for b in self.W[w])] for w in sorted(self.W)],
                "held": self.live_states()}

    def restore(self, st: dict) -> None:
        self.W = st["W"]
        self.nxt = min(self.W) + self.size if self.W else BIG


__all__ = ["JoinProgram", "StreamJoinExecutor", "ir"]
