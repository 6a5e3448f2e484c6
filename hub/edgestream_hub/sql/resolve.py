"""Pass 2, resolve: decide which source each column comes from.

``s.a`` names source ``s`` (stream or table, by alias or name); ``a.b``
whose first part is not a source is the nested field ``b`` of ``a``. An
unqualified name is a table column when exactly one joined table declares
it, otherwise a field of the one stream. In ORDER BY and HAVING a bare name
equal to an output column's name means that output column.
"""

from __future__ import annotations

from typing import Callable

from . import ir
from .catalog import Catalog
from .errors import SqlError


def resolve(q: ir.Query, cat: Catalog) -> ir.Query:
    for s in q.sources:
        s.kind = "table" if s.name in cat.tables else "stream"
        if s.kind == "table":
            q.schemas[s.alias] = cat.tables[s.name]
    if q.sources[0].kind != "stream":
        raise SqlError(f"FROM must name a stream; {q.sources[0].name!r} is a table (join it to a stream)", q.text,
                       q.sources[0].pos)
    aliases = {s.alias: s for s in q.sources}
    names = {s.name: s for s in q.sources if s.name not in aliases}
    streams = q.streams

    def column(node: ir.Col) -> ir.Field:
        parts = node.parts
        if len(parts) > 1 and isinstance(parts[0], str):
            src = aliases.get(parts[0]) or names.get(parts[0])
            if src is not None:
                return ir.Field(src.alias, parts[1:], node.pos)
        head = parts[0]
        owners = [s for s in q.tables if q.schemas.get(s.alias) and head in q.schemas[s.alias]]
        if len(owners) > 1:
            raise SqlError(f"column {head!r} is in several tables ({', '.join(s.alias for s in owners)}): qualify it",
                           q.text, node.pos)
        if owners:
            return ir.Field(owners[0].alias, parts, node.pos)
        if len(streams) > 1:
            raise SqlError(f"column {head!r} is ambiguous with several streams: write <stream>.{head}", q.text,
                           node.pos)
        return ir.Field(streams[0].alias, parts, node.pos)

    def fix(node: ir.Node) -> ir.Node | None:
        if isinstance(node, ir.Col):
            return column(node)
        if isinstance(node, ir.Star) and node.source is not None:
            src = aliases.get(node.source) or names.get(node.source)
            if src is None:
                raise SqlError(f"unknown source {node.source!r} in {node.source}.*", q.text, node.pos)
            return ir.Star(src.alias, node.pos)
        return None

    out_names = {item.name: i for i, item in enumerate(q.select) if not item.star}

    def alias_ref(as_out: bool) -> Callable[[ir.Node], ir.Node | None]:
        def f(node: ir.Node) -> ir.Node | None:
            if isinstance(node, ir.Col) and len(node.parts) == 1 and node.parts[0] in out_names:
                i = out_names[node.parts[0]]
                item = q.select[i]
                # a name that is also a plain field of the same name stays that field
                if isinstance(item.expr, ir.Col) and item.expr.parts == node.parts:
                    return None
                return ir.OutRef(i, node.pos) if as_out else item.expr
            return None

        return f

    q.order = [(ir.transform(ir.transform(e, alias_ref(True)), fix), d) for e, d in q.order]
    if q.having is not None:
        q.having = ir.transform(ir.transform(q.having, alias_ref(False)), fix)
    for item in q.select:
        item.expr = ir.transform(item.expr, fix)
    if q.where is not None:
        q.where = ir.transform(q.where, fix)
    q.group = [ir.transform(g, fix) for g in q.group]
    for s in q.sources:
        if s.on is not None:
            s.on = ir.transform(s.on, fix)
    return q
