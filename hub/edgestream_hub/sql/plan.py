"""The physical plan: what runs per record, what is kept per window and group, what runs at emit.

``build(query)`` picks the executor (``mode``), numbers the group keys and
the distinct aggregates, and rewrites SELECT, HAVING and ORDER BY to read
``KeyRef``/``AggRef`` instead of fields. ``explain()`` prints it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from . import ir
from .ir import sql_text
from .validate import has_aggregates, is_aggregated

#: holistic aggregates keep their values; every other one keeps O(1) state
HOLISTIC = {"median", "percentile", "collect"}


@dataclass
class Plan:
    query: ir.Query
    mode: str  # rows | fast | session | sliding | count | window_rows | join
    keys: list
    aggs: list  # ir.Agg, distinct
    select: list  # (name, expr rewritten)
    having: Optional[ir.Node]
    order: list  # (expr rewritten, desc)
    limit: Optional[int]
    window: Optional[ir.WindowSpec]
    analytics: list = field(default_factory=list)  # ir.Analytic call sites, evaluated per record
    star: bool = False

    @property
    def names(self) -> list:
        return [n for n, _ in self.select]


def _rewrite(node: ir.Node, keys: list, aggs: list) -> ir.Node:
    """Top-down: the largest sub-expression equal to a key becomes KeyRef; aggregates become AggRef."""
    for i, k in enumerate(keys):
        if node == k:
            return ir.KeyRef(i, node.pos)
    if isinstance(node, ir.Agg):
        if node not in aggs:
            aggs.append(node)
        return ir.AggRef(aggs.index(node), node.pos)

    # rebuild children top-down
    from dataclasses import fields, replace

    changes: dict[str, Any] = {}
    for f in fields(node):
        v = getattr(node, f.name)
        if isinstance(v, ir.Node):
            changes[f.name] = _rewrite(v, keys, aggs)
        elif isinstance(v, tuple) and v and any(isinstance(x, (ir.Node, tuple)) for x in v):
            changes[f.name] = tuple(
                _rewrite(x, keys, aggs) if isinstance(x, ir.Node)
                else tuple(_rewrite(y, keys, aggs) if isinstance(y, ir.Node) else y for y in x) if isinstance(x, tuple)
                else x
                for x in v
            )
    return replace(node, **changes) if changes else node


def build(q: ir.Query) -> Plan:
    aggregated = is_aggregated(q)
    grouping = has_aggregates(q)
    w = q.window
    if not aggregated:
        mode = "rows"
    elif len(q.streams) > 1:
        mode = "join"
    elif not grouping:
        mode = "window_rows"
    elif w is None or w.kind in ("tumbling", "hopping"):
        mode = "fast"
    else:
        mode = w.kind
    keys = list(q.group)
    aggs: list = []
    if mode in ("rows", "window_rows"):
        select = [(it.name, it.expr) for it in q.select]
        having = q.having
        order = list(q.order)
    else:
        select = [(it.name, _rewrite(it.expr, keys, aggs)) for it in q.select]
        having = _rewrite(q.having, keys, aggs) if q.having is not None else None
        order = [(_rewrite(e, keys, aggs), d) for e, d in q.order]
    analytics = []
    if mode != "join":  # analytic functions run per record, before WHERE and the window
        seen = set()
        for e in q.expressions():
            for n in e.walk():
                if isinstance(n, ir.Analytic) and id(n) not in seen:
                    seen.add(id(n))
                    analytics.append(n)
    return Plan(q, mode, keys, aggs, select, having, order, q.limit, w, analytics,
                star=any(it.star for it in q.select))


__all__ = ["Plan", "build", "explain", "sql_text"]


def explain(p: Plan, time_field: str = "ts", lateness_ms: int = 0) -> str:
    """The plan after every pass, one stage per line, in the order records flow."""
    q = p.query
    lines = [f"mode: {p.mode}"]
    first = q.sources[0]
    lines.append(f"1. scan stream {first.name} AS {first.alias}")
    step = 2
    for s in q.streams[1:]:
        lines.append(f"{step}. scan stream {s.name} AS {s.alias}")
        step += 1
    if q.window is not None and q.window.kind != "count" or p.mode in ("fast", "join"):
        lines.append(f"   event time: field {q.window.time_field if q.window and q.window.time_field else time_field}, "
                     f"watermark = max(ts) - {lateness_ms}ms")
    if p.analytics:
        lines.append(f"{step}. per record, before WHERE and the window: "
                     + ", ".join(sql_text(a) + (f" OVER (PARTITION BY {', '.join(sql_text(x) for x in a.partition)})"
                                            if a.partition else "") for a in p.analytics))
        step += 1
    for s in q.sources:
        fl = q.filters.get(s.alias) or []
        if fl and s.kind == "stream":
            lines.append(f"{step}. filter {s.alias} (pushed down): " + " AND ".join(sql_text(c) for c in fl))
            step += 1
    for s in q.tables:
        fl = q.filters.get(s.alias) or []
        keys = q.join_keys.get(s.alias) or []
        how = ("hash lookup on " + ", ".join(f"{sql_text(b)} = {sql_text(a)}" for a, b in keys) if keys
               else "scan of every row")
        lines.append(f"{step}. {'LEFT ' if s.join == 'left' else ''}JOIN table {s.name} AS {s.alias}: {how}")
        if fl:
            lines.append("   table filter at join time: " + " AND ".join(sql_text(c) for c in fl))
        if q.join_residual.get(s.alias):
            lines.append("   join condition: " + " AND ".join(sql_text(c) for c in q.join_residual[s.alias]))
        step += 1
    if p.mode == "join":
        for s in q.streams[1:]:
            keys = q.join_keys.get(s.alias) or []
            lines.append(f"{step}. {'LEFT ' if s.join == 'left' else ''}JOIN stream {s.alias} inside each window on "
                         + (", ".join(f"{sql_text(a)} = {sql_text(b)}" for a, b in keys) or "every pair"))
            if q.join_residual.get(s.alias):
                lines.append("   join condition: " + " AND ".join(sql_text(c) for c in q.join_residual[s.alias]))
            step += 1
    if q.post_filters:
        where = "after join" if len(q.sources) > 1 else "with analytic values"
        lines.append(f"{step}. filter {where}: " + " AND ".join(sql_text(c) for c in q.post_filters))
        step += 1
    if q.window is not None:
        lines.append(f"{step}. window: {q.window.describe()}")
        step += 1
    if p.mode not in ("rows", "window_rows") and (p.mode != "join" or p.keys or p.aggs):
        lines.append(f"{step}. group by: " + (", ".join(sql_text(k) for k in p.keys) or "(one group)"))
        step += 1
        for i, a in enumerate(p.aggs):
            kind = "buffers values" if a.name in HOLISTIC or a.distinct else "O(1) state"
            lines.append(f"   agg[{i}] = {sql_text(a)}  -- {kind}")
    if p.having is not None:
        lines.append(f"{step}. having: {sql_text(p.having)}")
        step += 1
    lines.append(f"{step}. project: " + ", ".join(f"{sql_text(e)} AS {n}" for n, e in p.select))
    step += 1
    if p.order or p.limit is not None:
        o = ", ".join(f"{sql_text(e)}{' DESC' if d else ''}" for e, d in p.order)
        lines.append(f"{step}. per window: " + (f"order by {o}" if o else "")
                     + (f" limit {p.limit}" if p.limit is not None else ""))
    used = "; ".join(f"{a}: {'*' if f is None else ', '.join(sorted(map(str, f))) or '-'}"
                     for a, f in q.used_fields.items())
    lines.append(f"fields used: {used}")
    for n in q.notes:
        lines.append(f"note: {n}")
    return "\n".join(lines)
