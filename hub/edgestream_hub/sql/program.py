"""Generated code for one query: the per-record loop, the aggregate update and the emit function.

``Program`` turns a ``Plan`` into Python source and ``compile()``s it once,
with the query as the filename. The source is kept in ``Program.source``
(EXPLAIN VERBOSE material and a debugging aid). Functions produced:

- ``_process(batch, now, S)``: the whole per-record path for the ``rows``
  and ``fast`` modes (filter, joins, window assignment and inline
  aggregate updates), or for the other modes the part up to the group key
  and the aggregate arguments, handed to ``S.add``. The usual case of two
  of those is inline too, doing exactly what the executor would: a record
  that joins its group's last session in event-time order, and a sliding
  row that is due as its record arrives (added, evicted and emitted).
- ``_init()``, ``_update(s, vals)``: aggregate state for the other modes.
- ``_emit(ws, we, k, s, now)``: final values, HAVING, output row and
  ORDER BY key of one group of one window.
"""

from __future__ import annotations

import re
from heapq import heapreplace
from typing import Any, Callable, Optional, Sequence

from . import analytic, ir
from .aggregates import NUMERIC, agg_code
from .codegen import Gen
from .errors import SqlError, SqlRuntimeError
from .functions import check_key, key_kinds
from .keys import key_value
from .limits import NO_LIMITS, Limits
from .plan import Plan, sql_text
from .sliding import slide_code

BIG = 1 << 62

#: a function compiled from the query; its parameters depend on the mode
Fn = Callable[..., Any]


def compiled(fn: Optional[Fn], name: str) -> Fn:
    """``fn``, which the caller's mode always has the compiler generate: None there is a compiler bug."""
    if fn is None:
        raise AssertionError(f"the query's mode compiled no {name}")
    return fn


class TableJoin:
    """A lookup table joined to the stream: filtered and hash-indexed when (re)loaded."""

    def __init__(self, alias: str, left: bool, loader: Any, build_key: Any, row_filter: Any, residual: Any,
                 key_texts: Optional[list[str]] = None) -> None:
        self.alias = alias
        self.left = left
        self.loader = loader
        self.build_key = build_key  # fn(row) -> key, or None for a scan
        self.row_filter = row_filter  # fn(row) -> bool, or None
        self.residual = residual  # fn(r, row) -> bool, or None
        self.key_texts = key_texts or []  # each key equality as SQL, for messages
        self.miss: list = [{}] if left else []
        self.index: dict = {}
        self.kinds: list[frozenset] = []
        self.rows: list = []
        self.load()

    def _kept(self, row: Any) -> bool:
        """A row the join-time filter keeps; a row it cannot be computed for (a string compared with a
        number) is left out, as a row whose key cannot be computed is: it can match no record."""
        if not isinstance(row, dict):
            return False
        try:
            return self.row_filter is None or bool(self.row_filter(row))
        except (SqlRuntimeError, TypeError):
            return False

    def load(self) -> None:
        rows = self.loader() if callable(self.loader) else self.loader
        if hasattr(rows, "rows") and callable(rows.rows):
            rows = rows.rows()
        rows = [r for r in rows if self._kept(r)]
        index: dict = {}
        if self.build_key is not None:
            for row in rows:
                try:
                    k = self.build_key(row)
                    if k is None or (isinstance(k, tuple) and None in k):
                        continue  # NULL never equals anything
                    index.setdefault(k, []).append(row)
                except (SqlRuntimeError, TypeError):
                    continue
        self.rows, self.index = rows, index
        n = len(self.key_texts)
        self.kinds = key_kinds(index if n > 1 else ((k,) for k in index), n) if n else []

    def probe(self, r: dict, key: Any) -> Sequence[Any]:
        cands: Sequence[Any]
        if self.build_key is None:
            cands = self.rows
        else:
            if self.kinds:
                check_key(key if len(self.kinds) > 1 else (key,), self.kinds, self.key_texts)
            try:
                cands = self.index.get(key) or ()
            except TypeError:  # an unhashable probe value matches nothing
                cands = ()
        if self.residual is not None:
            cands = [t for t in cands if self.residual(r, t)]
        return cands or self.miss


class Program:
    """The compiled form of one query."""

    def __init__(self, plan: Plan, *, time_field: str, lateness_ms: int, processing_time: bool,
                 tables: Optional[dict], functions: Optional[dict], limits: Limits = NO_LIMITS) -> None:
        self.plan = plan
        self.limits = limits
        q = plan.query
        self.q = q
        self.text = q.text
        self.time_field = (q.window.time_field if q.window and q.window.time_field else None) or time_field
        self.lateness = int(lateness_ms)
        self.processing_time = processing_time
        self.gen = Gen(q.text, functions)
        self.gen.env = {q.sources[0].alias: "r"}
        self.tables: list[TableJoin] = []
        self.lines: list[str] = []
        tables = tables or {}
        tvars = []
        for i, s in enumerate(q.tables):
            if s.name not in tables:
                raise SqlError(f"no table {s.name!r} was given", q.text, s.pos)
            tvars.append(f"t{i}")
        self.tvars = tvars
        for i, s in enumerate(q.streams[1:], 1):
            self.gen.env[s.alias] = f"r{i}"
        for i, s in enumerate(q.tables):
            self.gen.env[s.alias] = tvars[i]
            self.tables.append(self._table(s, tables[s.name]))
        self.analytics = [analytic.make(a.name, a.args) for a in plan.analytics]
        for i, a in enumerate(plan.analytics):
            self.gen.analytic_code[id(a)] = f"_z{i}"
        self.slots: list[tuple[int, Any]] = []  # (offset, AggCode) per aggregate
        self.arg_codes: list[Optional[str]] = []  # the code of each aggregate's argument (``_vals``)
        self._build()

    # -- helpers ------------------------------------------------------------
    def _fn(self, params: str, body: str, name: str) -> Any:
        src = f"def {name}({params}):\n    return {body}\n"
        ns = self.gen.compile(src, self.text)
        self.lines.append(src)
        return ns[name]

    def _table(self, s: ir.Source, loader: Any) -> TableJoin:
        q = self.q
        g = self.gen
        saved = dict(g.env)
        g.env = {s.alias: "t"}
        filters = q.filters.get(s.alias) or []
        row_filter = self._fn("t, now=0", g.conds(filters), "_tf") if filters else None
        keys = q.join_keys.get(s.alias) or []
        build_key = None
        key_texts = []
        if keys:
            build_key = self._fn("t, now=0", g.key([b for _, b in keys]), "_tk")
            key_texts = [f"{sql_text(a)} = {sql_text(b)}" for a, b in keys]
        residual = None
        res = q.join_residual.get(s.alias) or []
        if res:
            for c in res:
                others = {m.source for m in c.walk() if isinstance(m, ir.Field)} - {s.alias, q.sources[0].alias}
                if others:
                    raise SqlError("a join condition may use the stream and this table only", q.text, c.pos)
            g.env = {q.sources[0].alias: "r", s.alias: "t"}
            residual = self._fn("r, t, now=0", g.conds(res), "_tr")
        g.env = saved
        return TableJoin(s.alias, s.join == "left", loader, build_key, row_filter, residual, key_texts)

    def _probe_key(self, i: int, s: ir.Source) -> str:
        keys = self.q.join_keys.get(s.alias) or []
        return self.gen.key([a for a, _ in keys]) if keys else "None"

    def _key_code(self) -> str:
        return self.gen.key(self.plan.keys) if self.plan.keys else "()"

    def _vals(self) -> list[str]:
        """Statements computing v0..vN, the aggregate arguments, before any state changes. An argument
        computed by the same code as an earlier one is that one's value (``max(x)`` beside ``avg(x)``:
        one read of ``x``, copied before the numeric one is made a number)."""
        out = []
        seen: dict = {}
        aggs = self.plan.aggs
        codes = [None if a.star else self.gen.expr(a.args[0]) for a in aggs]
        self.arg_codes = codes
        for i, a in enumerate(aggs):
            code = codes[i]
            if code is None:
                out.append(f"v{i} = r" if a.name == "collect" else f"v{i} = 1")
                continue
            numeric = a.name in NUMERIC
            if seen.get((code, numeric)) not in (None, f"v{i}"):
                out.append(f"v{i} = {seen[code, numeric]}")
                continue
            if (code, numeric) not in seen:  # (else copied already, below)
                seen[code, numeric] = f"v{i}"
                out.append(f"v{i} = {code}")
                j = next((j for j in range(i + 1, len(aggs))
                          if codes[j] == code and (aggs[j].name in NUMERIC) != numeric), None)
                if j is not None and (code, not numeric) not in seen:
                    seen[code, not numeric] = f"v{j}"
                    out.append(f"v{j} = v{i}")
            if numeric:
                out.append(f"if v{i} is not None and v{i}.__class__ is not int and v{i}.__class__ is not float: "
                           f"v{i} = _aggnum(v{i}, {a.name + ' argument'!r})")
        return out

    def _agg_layout(self) -> tuple[list[str], list[str]]:
        inits: list[str] = []
        pres: list[str] = []
        updates: list[str] = []
        if self.plan.mode in ("sliding", "count"):
            return self._slide_layout()
        for i, a in enumerate(self.plan.aggs):
            code = agg_code(a, f"v{i}", "s", len(inits), self.gen.const)
            self.slots.append((len(inits), code))
            inits.extend(code.inits)
            pres.extend(code.pre)
            updates.extend(code.update)
        return inits, pres + updates

    def _slide_layout(self) -> tuple[list[str], list[str]]:
        """Sliding windows: add, evict and arrival-check code (see ``sliding``)."""
        inits: list[str] = []
        adds: list[str] = []
        self.slide_remove: list[str] = []
        self.slide_check: list[list[str]] = []  # per aggregate
        self.slide_refs = 0
        for i, a in enumerate(self.plan.aggs):
            code = slide_code(a, f"v{i}", "s", len(inits), self.slide_refs, self.gen.const)
            self.slots.append((len(inits), code))
            inits.extend(code.inits)
            adds.extend(code.add)
            self.slide_remove.extend(code.remove)
            self.slide_check.append(code.check)
            self.slide_refs += code.refs
        return inits, adds

    def _slide_checks(self) -> list[str]:
        """Statements checking v0..vN on arrival against the group's refs ``c``, then updating the refs.

        ``min``/``max`` of the same argument as an earlier ``min``/``max`` (``min(x)`` beside ``max(x)``) skip
        their check: their value is the earlier one's and so is their ref (both refs are set to every value
        that passes), so the earlier check has already decided it."""
        lines: list[str] = []
        first: dict = {}  # argument code -> the first min/max over it
        for i, a in enumerate(self.plan.aggs):
            code = self.arg_codes[i] if a.name in ("min", "max") else None
            if code is not None and first.setdefault(code, i) != i:
                continue
            lines.extend(self.slide_check[i])
        ref = 0
        for i, a in enumerate(self.plan.aggs):
            if a.name in ("min", "max"):
                lines.append(f"if v{i} is not None: c[{ref}] = v{i}")
                ref += 1
        return lines

    def _slide_src(self) -> str:
        n = len(self.plan.aggs)
        unpack = ("    " + "".join(f"v{i}, " for i in range(n)) + "= vals\n") if n else ""
        src = ("\ndef _remove(s, vals, _i):\n" + unpack + "".join(f"    {u}\n" for u in self.slide_remove)
               + "    return s\n")
        src += "\ndef _check(c, vals):\n" + unpack + "".join(f"    {u}\n" for u in self._slide_checks())
        return src + "    return c\n"

    def _slide_now(self, emit: Callable[[str], None], ind: str, updates: list) -> None:
        """Sliding windows: a record whose row is due at once (its ts is the watermark) while no other row
        waits, for a group that exists, is added, evicts and is emitted inline, exactly as
        ``SlidingExecutor.add`` then ``close`` would do it (and counted as one close towards the sweep of
        idle groups); everything else goes to ``add``, under the ``else:`` this leaves open. Without state
        limits only (``add`` keeps the groups in order of use for them).

        The counters are kept in locals that ``_build`` folds into the executor's: ``_ic`` the records
        taken here (each one value added, one close and, but for ``_ef`` of them, one row), ``_tch`` the
        values evicted, ``_sw`` the ``_ic`` at which the next sweep is due."""
        p, g = self.plan, self.gen
        w = p.window
        if w is None:
            raise AssertionError("sliding mode without a window")
        vals = "(" + "".join(f"v{i}, " for i in range(len(p.aggs))) + ")"
        kv = g.const(key_value)
        emit(ind + "_g = _G.get(k)")
        emit(ind + "if ts == wm and not _T and _g is not None:")
        i2, i3 = ind + "    ", ind + "        "
        emit(i2 + "c = _g[4]")
        for u in self._slide_checks():
            emit(i2 + u)
        # the arrival number, as ``_n`` where an aggregate reads it (first_value, last_value, collect)
        emit(i2 + ("_n = _seq = _seq + 1" if any(re.search(r"\b_n\b", u) for u in updates) else "_seq += 1"))
        emit(i2 + "_a = _g[1]")
        emit(i2 + "s = _g[3]")
        emit(i2 + "_i = _g[2] + len(_a)")
        emit(i2 + f"_a.append((ts, {vals}))")
        emit(i2 + "try:")
        for u in updates:
            emit(i3 + u)
        emit(i2 + "except Exception as e:  # checked above; kept so that no value can stop the query")
        emit(i3 + f"S.bad({{'key': {kv}(k), 'ts': ts}}, e)")
        emit(i2 + f"_lo = ts - {w.size}")
        emit(i2 + "if _a[0][0] < _lo:")  # the record itself stays: the loop never empties the range
        emit(i3 + "_h = _i = _g[2]")
        emit(i3 + "while True:")  # (the first test is the one above)
        emit(i3 + "    " + "".join(f"v{i}, " for i in range(len(p.aggs))) + "= _a.popleft()[1]")
        for u in self.slide_remove:
            emit(i3 + "    " + u)
        emit(i3 + "    _i += 1")
        emit(i3 + "    if _a[0][0] >= _lo: break")
        emit(i3 + "_tch += _i - _h")
        emit(i3 + "_g[2] = _i")
        if p.order or p.limit is not None:
            emit(i2 + "out.extend(S.rows_of(_lo, ts, [(k, s)], now))")
        else:
            # _emit, inline: one row's failure (e.g. a division by zero in SELECT) dead-letters that row
            aggs, having, outs = self._emit_parts()
            emit(i2 + "try:")
            if re.search(r"\bw[se]\b", " ".join([*aggs, having or "", *outs])):
                emit(i3 + "ws, we = _lo, ts")
            for x in aggs:
                emit(i3 + x)
            i4 = i3
            if having is not None:
                emit(i3 + f"if not ({having}):")
                emit(i3 + "    _ef += 1")
                emit(i3 + "else:")
                i4 = i3 + "    "
            row = "{" + ", ".join(f"{n!r}: {x}" for n, x in zip(p.names, outs)) + "}"
            emit(i4 + "if _id is None:")
            emit(i4 + f"    out.append({row})")
            emit(i4 + "else:")
            emit(i4 + f"    _r = {row}")
            emit(i4 + "    _r[S.id_field] = _id(_lo, ts, k)")
            emit(i4 + "    out.append(_r)")
            emit(i2 + "except Exception as e:")
            emit(i3 + "_ef += 1")
            emit(i3 + f"S.bad({{'window_start': _lo, 'window_end': ts, 'key': {kv}(k)}}, e)")
        emit(i2 + "_ic += 1")
        emit(i2 + "if _ic >= _sw:")
        emit(i3 + f"S.sweep(wm - {w.size})")
        emit(i3 + "_sw = _ic + S._sweep_at")
        emit(ind + "else:")

    # -- generation ---------------------------------------------------------
    def _build(self) -> None:
        p, q, g = self.plan, self.q, self.gen
        first = q.sources[0].alias
        inits, updates = self._agg_layout()
        self.init_src = "[" + ", ".join(inits) + "]"
        L: list[str] = []
        emit = L.append
        emit("def _process(batch, now, S):")
        emit("    out = []")
        emit("    wm = S.wm")
        if p.mode == "session":
            emit("    _cur = S.cur")
            if not self.limits.active:
                emit("    _H, _SS = S.heap, S.sessions")
        if p.mode == "sliding" and not self.limits.active:
            # the arrival number and the closes counted towards the next sweep of idle groups, in locals
            # between calls to add and close
            emit("    _G, _T, _seq, _id = S.groups, S.trig, S.seq, S.ident")
            emit("    _ic = _tch = _ef = 0")
            emit("    _sw = S._sweep_at - S._closes")
        if p.mode != "rows":
            emit("    nxt = S.nxt")
        if p.mode == "fast":
            emit("    W = S.W")
            emit("    cw = g = None")
        emit("    for r in batch:")
        emit("        try:")
        ind = "            "
        # every record's timestamp is read and checked, with a window or without: one that is missing or
        # bad dead-letters the record before anything else (analytic functions included) sees it
        if self.processing_time:
            emit(ind + "ts = now")
        else:
            emit(ind + f"ts = r.get({self.time_field!r})")
            emit(ind + "if ts.__class__ is not int: ts = _ts(ts)")
        if p.mode not in ("count", "rows"):  # no window of rows, or count windows: no watermark to move
            lt = f"ts - {self.lateness}" if self.lateness else "ts"
            emit(ind + f"if {lt} > wm:")
            emit(ind + f"    wm = {lt}")
            if p.mode == "fast" and p.window is not None:
                emit(ind + "    if wm >= nxt:")
                emit(ind + "        S.nxt = nxt")
                emit(ind + "        out.extend(S.close(wm, now))")
                emit(ind + "        nxt = S.nxt")
        for i, a in enumerate(p.analytics):
            pk = g.key(list(a.partition)) if a.partition else "None"
            args = ", ".join(g.expr(x) for x in a.args)
            emit(ind + f"_z{i} = {g.const(self.analytics[i])}({pk}, {args})")
        for c in q.filters.get(first) or []:
            emit(ind + f"if not {g.cond(c)}: continue")
        w = p.window
        if p.mode == "fast" and w is not None:
            if w.kind == "tumbling":
                emit(ind + f"w = ts - ts % {w.size}")
                emit(ind + f"if w + {w.size} <= wm:")
            else:
                # the last window holding ts ends at _e; _e <= ts means ts falls in a gap between windows
                emit(ind + f"_e = ts - ts % {w.hop} + {w.size}")
                emit(ind + "if _e <= wm and _e > ts:")
            emit(ind + "    S.late_record(r)")
            emit(ind + "    continue")
        lim = self.limits
        if p.mode == "fast" and lim.max_state_bytes is not None and lim.on_limit == "dead_letter":
            emit(ind + "if S.full and not S.admit(r, 0): continue")  # the state is over its bytes
        for i, s in enumerate(q.tables):
            emit(ind + f"for {self.tvars[i]} in {g.const(self.tables[i])}.probe(r, {self._probe_key(i, s)}):")
            ind += "    "
        for c in q.post_filters:
            emit(ind + f"if not {g.cond(c)}: continue")
        if p.mode == "rows":
            emit(ind + f"out.append({self._row_dict()})")
        elif p.mode == "fast":
            emit(ind + f"k = {self._key_code()}")
            for line in self._vals():
                emit(ind + line)
            if w is None:
                emit(ind + "g = S.W0")
                self._group_update(emit, ind, inits, updates)
            elif w.kind == "tumbling":
                # consecutive records mostly share a window: skip the window lookup then
                emit(ind + "if w != cw:")
                emit(ind + "    cw = w")
                emit(ind + "    g = W.get(w)")
                emit(ind + "    if g is None:")
                emit(ind + "        g = W[w] = {}")
                emit(ind + f"        if w + {w.size} < nxt: nxt = w + {w.size}")
                self._group_update(emit, ind, inits, updates)
            else:
                windows = f"range((ts - {w.size}) // {w.hop} + 1, ts // {w.hop} + 1)"
                if lim.max_keys is not None and lim.on_limit == "dead_letter":
                    # the groups the record would create: all admitted, or the record refused; counted only
                    # when the record's windows could pass the bound
                    per = -(-w.size // w.hop)
                    emit(ind + f"if S.nkeys + {per} > {lim.max_keys}:")
                    emit(ind + "    _n = 0")
                    emit(ind + f"    for j in {windows}:")
                    emit(ind + f"        if j * {w.hop} + {w.size} > wm:")
                    emit(ind + f"            _g = W.get(j * {w.hop})")
                    emit(ind + "            if _g is None or k not in _g: _n += 1")
                    emit(ind + f"    if S.nkeys + _n > {lim.max_keys} and not S.admit(r, _n): continue")
                emit(ind + f"for j in {windows}:")
                ind2 = ind + "    "
                emit(ind2 + f"w = j * {w.hop}")
                emit(ind2 + f"if w + {w.size} <= wm: continue")
                emit(ind2 + "g = W.get(w)")
                emit(ind2 + "if g is None:")
                emit(ind2 + "    g = W[w] = {}")
                emit(ind2 + f"    if w + {w.size} < nxt: nxt = w + {w.size}")
                self._group_update(emit, ind2, inits, updates, admitted=True)
                self._make_room(emit, ind)
        elif p.mode in ("window_rows", "join"):
            envs = ["r"] + self.tvars
            if p.mode == "window_rows":
                used = q.used_fields.get(first)
                if used is not None:
                    envs[0] = "{" + ", ".join(f"{f!r}: r.get({f!r})" for f in sorted(used, key=str)) + "}"
                if p.analytics:  # their per-record values travel with the record to the window's end
                    envs.append("(" + "".join(f"_z{i}, " for i in range(len(p.analytics))) + ")")
                self._add_call(emit, ind, f"ts, None, ({', '.join(envs)},), r")
            else:
                raise AssertionError("join mode uses StreamJoin")
        else:
            emit(ind + f"k = {self._key_code()}")
            for line in self._vals():
                emit(ind + line)
            if p.mode == "session":
                self._session_join(emit, ind, updates)
                ind += "    "
            elif p.mode == "sliding" and not lim.active:
                self._slide_now(emit, ind, updates)
                ind += "    "
            self._add_call(emit, ind, "ts, k, (" + "".join(f"v{i}, " for i in range(len(p.aggs))) + "), r")
        emit("        except Exception as e:")
        emit("            S.bad(r, e)")
        if p.mode not in ("rows", "fast"):
            emit("            nxt = S.nxt")  # ``add`` may have moved it before it failed
            if p.mode == "sliding" and not lim.active:
                emit("            _seq = max(_seq, S.seq)")  # (and counted the record)
            emit("        finally:")
            emit("            if wm >= nxt:")
            ci = "                "
            if p.mode == "session" and not lim.active:
                self._session_regrow(emit, ci)
                ci += "    "
            if p.mode == "sliding" and not lim.active:
                emit(ci + "S._closes = S._sweep_at - _sw + _ic")
            emit(ci + "out.extend(S.close(wm, now))")
            emit(ci + "nxt = S.nxt")
            if p.mode == "sliding" and not lim.active:
                emit("                _sw = _ic + S._sweep_at - S._closes")
        emit("    S.wm = wm")
        if p.mode == "fast":
            emit("    S.nxt = nxt")
        if p.mode == "sliding" and not self.limits.active:
            emit("    S.seq, S._closes = _seq, S._sweep_at - _sw + _ic")
            emit("    S.touched += _ic + _tch")
            if not p.order and p.limit is None:  # (else ``rows_of`` counts the rows)
                emit("    S.emitted += _ic - _ef")
        emit("    return out")
        src = "\n".join(L) + "\n"
        # aggregate state helpers for the executors that update outside _process
        src += f"\ndef _init():\n    return {self.init_src}\n"
        src += "\ndef _update(s, vals, _i=0, _n=0):\n"
        if p.aggs:
            src += "    " + "".join(f"v{i}, " for i in range(len(p.aggs))) + "= vals\n"
        for u in updates:
            src += "    " + u + "\n"
        src += "    return s\n"
        if p.mode in ("sliding", "count"):
            src += self._slide_src()
        src += self._emit_src()
        self.source = src
        ns = g.compile(src, self.text)
        self.remove: Optional[Fn] = ns.get("_remove")
        self.check: Optional[Fn] = ns.get("_check")
        self.process_fn: Optional[Fn] = ns["_process"]
        self.init: Fn = ns["_init"]
        self.update: Fn = ns["_update"]
        self.emit: Optional[Fn] = ns.get("_emit")
        self.project: Optional[Fn] = ns.get("_project")

    def _group_update(self, emit: Callable[[str], None], ind: str, inits: list, updates: list,
                      admitted: bool = False) -> None:
        """Find or create the record's group ``k`` in ``g`` and update it. With limits, the groups are
        counted in ``S.nkeys``; under ``dead_letter`` a new group is admitted first (unless the caller
        did), under ``emit_early`` the oldest groups make room afterwards."""
        lim = self.limits
        emit(ind + "s = g.get(k)")
        emit(ind + "if s is None:")
        if lim.max_keys is not None and lim.on_limit == "dead_letter" and not admitted:
            emit(ind + f"    if S.nkeys >= {lim.max_keys} and not S.admit(r, 1): continue")
        emit(ind + f"    s = g[k] = [{', '.join(inits)}]")
        if lim.active:
            emit(ind + "    S.nkeys += 1")
        for u in updates:
            emit(ind + u)
        if not admitted:
            self._make_room(emit, ind)

    def _add_call(self, emit: Callable[[str], None], ind: str, args: str) -> None:
        """Hand the record to the executor's ``add``, which reads the watermark and may move the next
        window end: both are kept in locals between calls."""
        emit(ind + "S.wm = wm")
        seq = self.plan.mode == "sliding" and not self.limits.active  # the arrival number too
        if seq:
            emit(ind + "S.seq = _seq")
        emit(ind + f"_o = S.add({args})")
        emit(ind + "nxt = S.nxt")
        if seq:
            emit(ind + "_seq = S.seq")
        emit(ind + "if _o: out.extend(_o)")

    def _session_join(self, emit: Callable[[str], None], ind: str, updates: list) -> None:
        """Session windows: a record that joins its group's last session in event-time order (the usual
        case) updates it inline, as ``SessionExecutor.add`` would; everything else goes to ``add``, under the
        ``else:`` this leaves open."""
        w = self.plan.window
        if w is None:
            raise AssertionError("session mode without a window")
        cond = f"_c is not None and ts >= _c[0] and ts - _c[1] < {w.timeout} and ts - _c[0] < {w.size}"
        lim = self.limits
        if lim.max_state_bytes is not None and lim.on_limit == "dead_letter":
            cond += " and not S.full"  # over its bytes: ``add`` refuses the record
        emit(ind + "_c = _cur.get(k)")
        emit(ind + f"if {cond}:")
        emit(ind + "    s = _c[3]")
        for u in updates:
            emit(ind + "    " + u)
        emit(ind + "    if ts > _c[1]: _c[1] = ts")
        emit(ind + "else:")

    def _session_regrow(self, emit: Callable[[str], None], ind: str) -> None:
        """Session windows: the heap entries at its top that are stale (their session grew since they were
        pushed) are re-pushed with the real end here, exactly as ``SessionExecutor.close`` would begin, and
        ``close`` is called only when an entry is due, or gone (the usual in-order stream moves its sessions'
        ends far more often than it ends a session). Without state limits only (``close`` rechecks them)."""
        w = self.plan.window
        if w is None:
            raise AssertionError("session mode without a window")
        i2, i3 = ind + "    ", ind + "        "
        emit(ind + "while _H:")
        emit(i2 + "_e, _sq = _H[0]")
        emit(i2 + "_ss = _SS.get(_sq)")
        emit(i2 + "if _ss is None: break")
        emit(i2 + f"_re = _ss[1] + {w.timeout}")
        emit(i2 + f"if _ss[0] + {w.size} < _re: _re = _ss[0] + {w.size}")
        emit(i2 + "if _re <= _e: break")
        emit(i2 + f"{self.gen.const(heapreplace)}(_H, (_re, _sq))")
        emit(i2 + "if _H[0][0] > wm:")
        emit(i3 + "nxt = S.nxt = _H[0][0]")
        emit(i3 + "break")
        emit(ind + "if wm >= nxt:")

    def _make_room(self, emit: Callable[[str], None], ind: str) -> None:
        lim = self.limits
        if lim.max_keys is not None and lim.on_limit == "emit_early":
            emit(ind + f"if S.nkeys > {lim.max_keys}: out.extend(S.make_room(now))")

    def _row_dict(self) -> str:
        parts = []
        for (name, e), item in zip(self.plan.select, self.q.select):
            if item.star:
                parts.append(f"**{self.gen.expr(e)}")
            else:
                parts.append(f"{name!r}: {self.gen.expr(e)}")
        return "{" + ", ".join(parts) + "}"

    def _emit_parts(self) -> tuple[list[str], Optional[str], list[str]]:
        """What ``_emit(ws, we, k, s, now)`` computes: statements setting a0..aN from the state, the HAVING
        condition (None: none), the output expressions."""
        p, g = self.plan, self.gen
        # a group key is kept as a key (keys.key): its value comes back, kind and all, where it is read
        g.key_code = (lambda i: "(k.value if k.__class__ is _Key else k)") if len(p.keys) == 1 else \
            (lambda i: f"(k[{i}].value if k[{i}].__class__ is _Key else k[{i}])")
        aggs = [f"a{i} = {code.final}" for i, (_, code) in enumerate(self.slots)]
        having = None
        if p.having is not None:
            having = g.cond(p.having, sql_text(self.q.having) if self.q.having else None)
        return aggs, having, [g.expr(e) for _, e in p.select]

    def _emit_src(self) -> str:
        p, g = self.plan, self.gen
        if p.mode in ("rows",):
            return ""
        if p.mode == "window_rows" or (p.mode == "join" and not p.aggs and not p.keys):
            # rows of a window: evaluated at close with the window bounds
            envs = ", ".join(["r"] + [g.env[s.alias] for s in self.q.sources[1:]])
            if p.mode == "window_rows" and p.analytics:
                envs += ", _zs"
                for i, a in enumerate(p.analytics):
                    g.analytic_code[id(a)] = f"_zs[{i}]"
            lines = [f"\ndef _project(ws, we, now, {envs}):"]
            for c in self.q.post_filters if p.mode == "join" else []:
                lines.append(f"    if not {g.cond(c)}: return None")
            row = self._row_dict()
            if p.order:
                ok = ", ".join(g.expr(e) for e, _ in p.order)
                lines.append(f"    return ({row}, ({ok},))")
            else:
                lines.append(f"    return ({row}, None)")
            return "\n".join(lines) + "\n"
        aggs, having, outs = self._emit_parts()
        lines = ["\ndef _emit(ws, we, k, s, now):"] + [f"    {x}" for x in aggs]
        if having is not None:
            lines.append(f"    if not {having}: return None")
        lines.append("    o = (" + "".join(f"{x}, " for x in outs) + ")")
        if p.order:
            ok = ", ".join(g.expr(e) for e, _ in p.order)
            lines.append(f"    return (o, ({ok},))")
        else:
            lines.append("    return (o, None)")
        return "\n".join(lines) + "\n"
