"""Pass 4, fold: compute constant sub-expressions once, at compile time.

``10 * 1000`` becomes ``10000``; ``TRUE AND x`` becomes ``x``; a WHERE that
folds to TRUE disappears. A constant that cannot be computed (``1 / 0``)
is a compile error at its position. Functions marked impure (``now()``)
and user functions are never folded.
"""

from __future__ import annotations

from . import ir
from .catalog import Catalog
from .codegen import eval_const
from .errors import SqlError, SqlRuntimeError
from .functions import SCALARS

_FOLDABLE = (ir.Unary, ir.Bin, *ir.NEGATABLE, ir.Case, ir.Cast, ir.Call)


def _constant(n: ir.Node) -> bool:
    if not isinstance(n, _FOLDABLE):
        return False
    if isinstance(n, ir.Call):
        f = SCALARS.get(n.name)
        if f is None or not f.pure:
            return False
    return all(isinstance(c, ir.Lit) for c in n.children())


def fold_node(node: ir.Node, text: str) -> ir.Node:
    def f(n: ir.Node) -> ir.Node | None:
        if isinstance(n, ir.Bin) and n.op in ("and", "or"):
            for a, b in ((n.left, n.right), (n.right, n.left)):
                if isinstance(a, ir.Lit) and a.value is not None and isinstance(a.value, bool):
                    if n.op == "and":
                        return b if a.value else ir.Lit(False, n.pos)
                    return ir.Lit(True, n.pos) if a.value else b
        if _constant(n):
            try:
                return ir.Lit(eval_const(n, text), n.pos)
            except SqlRuntimeError as e:
                raise SqlError(f"constant expression fails: {e}", text, n.pos) from e
            except (TypeError, ValueError, ArithmeticError) as e:
                raise SqlError(f"constant expression fails: {e}", text, n.pos) from e
        return None

    return ir.transform(node, f)


def fold(q: ir.Query, cat: Catalog) -> ir.Query:
    t = q.text
    for item in q.select:
        item.expr = fold_node(item.expr, t)
    if q.where is not None:
        q.where = fold_node(q.where, t)
        if isinstance(q.where, ir.Lit) and q.where.value is True:
            q.notes.append("fold: WHERE is always true, removed")
            q.where = None
    q.group = [fold_node(g, t) for g in q.group]
    if q.having is not None:
        q.having = fold_node(q.having, t)
    q.order = [(fold_node(e, t), d) for e, d in q.order]
    for s in q.sources:
        if s.on is not None:
            s.on = fold_node(s.on, t)
    return q
