"""Pass 4, fold: compute constant sub-expressions once, at compile time.

``10 * 1000`` becomes ``10000``; ``TRUE AND x`` becomes ``x`` when ``x`` is
known to be a boolean (else the TRUE goes and ``x`` stays checked as one);
a WHERE that folds to TRUE disappears. A constant that cannot be computed
(``1 / 0``) is a compile error at its position. Functions marked impure
(``now()``) and user functions are never folded.
"""

from __future__ import annotations

from . import ir
from .catalog import Catalog
from .codegen import eval_const
from .errors import SqlError, SqlRuntimeError
from .functions import SCALARS
from .kinds import static_kind

_FOLDABLE = (ir.Unary, ir.Bin, ir.Arith, ir.Logic, *ir.NEGATABLE, ir.Case, ir.Cast, ir.Call)


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
        if isinstance(n, ir.Logic) and not _constant(n):
            return _logic(n)
        if _constant(n):
            try:
                return ir.Lit(eval_const(n, text), n.pos)
            except SqlRuntimeError as e:
                raise SqlError(f"constant expression fails: {e}", text, n.pos) from e
            except (TypeError, ValueError, ArithmeticError) as e:
                raise SqlError(f"constant expression fails: {e}", text, n.pos) from e
        return None

    return ir.transform(node, f)


def _logic(n: ir.Logic) -> ir.Node | None:
    """``TRUE AND x`` is x, ``FALSE AND x`` is FALSE (OR alike), but only for an ``x`` known to be a boolean:
    any other x is still computed, so that a value that is not a boolean fails the record as it would
    without the constant."""
    unit = n.op == "and"  # TRUE for AND, FALSE for OR: leaves the answer alone
    rest = [a for a in n.args if not (isinstance(a, ir.Lit) and a.value is unit)]
    typed = all(static_kind(a) == "boolean" for a in rest)
    if typed and any(isinstance(a, ir.Lit) and a.value is (not unit) for a in rest):
        return ir.Lit(not unit, n.pos)
    if not rest:
        return ir.Lit(unit, n.pos)
    if len(rest) == 1 and typed:
        return rest[0]
    if len(rest) == len(n.args):
        return None
    return ir.Logic(n.op, tuple(rest), n.pos)  # a single argument is still checked to be a boolean


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
