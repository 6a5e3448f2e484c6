"""Pass 6, prune: which top-level fields each source must carry past the first stage.

Records kept in window buffers (stream-stream joins, windows of rows) are
cut down to these fields; ``*`` keeps everything. EXPLAIN shows the list.
"""

from __future__ import annotations

from . import ir
from .catalog import Catalog


def prune(q: ir.Query, cat: Catalog) -> ir.Query:
    used: dict = {s.alias: set() for s in q.sources}
    for e in q.expressions():
        for n in e.walk():
            if isinstance(n, ir.Star):
                for alias in [n.source] if n.source else list(used):
                    used[alias] = None
            elif isinstance(n, ir.Agg) and n.star and n.name == "collect":
                used[q.sources[0].alias] = None
            elif isinstance(n, ir.Field) and used.get(n.source) is not None:
                used[n.source].add(n.path[0])
    tf = (q.window.time_field if q.window is not None and q.window.time_field else None) or cat.time_field
    if q.window is not None or len(q.streams) > 1:
        for s in q.streams:
            if used.get(s.alias) is not None:
                used[s.alias].add(tf)
    q.used_fields = used
    return q
