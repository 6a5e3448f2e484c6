"""Pass 5, pushdown: split WHERE and ON into the earliest place each part can run.

A conjunct that reads only the FROM stream runs first, before any join or
window work. A conjunct that reads only one inner-joined table filters that
table when it is loaded (join time), so non-matching rows are never probed;
one on a LEFT JOIN's right side alone (table or stream) runs after the
join, where it sees the NULLs of unmatched rows.
Equalities between a table column and a stream expression become the
lookup key of a hash join. What is left runs after the join.
"""

from __future__ import annotations

from . import ir
from .catalog import Catalog


def conjuncts(n: ir.Node | None) -> list:
    if n is None:
        return []
    if isinstance(n, ir.Logic) and n.op == "and":
        return [c for a in n.args for c in conjuncts(a)]
    return [n]


def sources_of(n: ir.Node) -> set:
    return {m.source for m in n.walk() if isinstance(m, ir.Field)} | {
        m.source for m in n.walk() if isinstance(m, ir.Star) and m.source
    }


def _volatile(n: ir.Node) -> bool:
    return any(isinstance(m, (ir.Analytic, ir.WinFn)) or (isinstance(m, ir.Call) and m.name == "now") for m in n.walk())


def pushdown(q: ir.Query, cat: Catalog) -> ir.Query:
    first = q.sources[0].alias
    for s in q.sources:
        q.filters[s.alias] = []
        q.join_keys[s.alias] = []
        q.join_residual[s.alias] = []
    for c in conjuncts(q.where):
        srcs = sources_of(c)
        if len(srcs) <= 1 and not any(isinstance(m, ir.Analytic) for m in c.walk()):
            alias = next(iter(srcs), first)
            src = q.source(alias)
            if src.join == "left":
                q.post_filters.append(c)  # filtering a LEFT JOIN's right side first would change its result
                continue
            q.filters[alias].append(c)
            if alias != first:
                q.notes.append(f"pushdown: WHERE conjunct moved to {alias}")
        else:
            q.post_filters.append(c)
    for s in q.sources[1:]:
        for c in conjuncts(s.on):
            srcs = sources_of(c)
            if srcs == {s.alias} and not _volatile(c):
                q.filters[s.alias].append(c)  # ON conditions on the joined side alone filter it first
                continue
            if isinstance(c, ir.Bin) and c.op == "=":
                left, right = sources_of(c.left), sources_of(c.right)
                if left == {s.alias} and s.alias not in right and right and not _volatile(c.left):
                    q.join_keys[s.alias].append((c.right, c.left))
                    continue
                if right == {s.alias} and s.alias not in left and left and not _volatile(c.right):
                    q.join_keys[s.alias].append((c.left, c.right))
                    continue
            q.join_residual[s.alias].append(c)
    return q
