"""What the compiler knows of a value's kind before any record: ``static_kind(node)``.

A comparison is always a boolean (or NULL), arithmetic a number, ``||`` a
string; a column could be anything (None: unknown). The checks that use it:
``validate`` refuses an operand known to be of the wrong kind (``v + 'a'``,
``WHERE v + 1``) at compile time, and code generation leaves out the run-time
kind check of an operand already known to be right.

>>> from edgestream_hub.sql import ir
>>> static_kind(ir.Arith(("+",), (ir.Field("s", ("v",)), ir.Lit(1))))
'number'
>>> static_kind(ir.Field("s", ("v",))) is None
True
"""

from __future__ import annotations

from typing import Optional

from . import ir
from .functions import SCALARS, a_or_an, kind

__all__ = ["static_kind", "a_or_an"]

_CAST = {"int": "number", "float": "number", "string": "string", "bool": "boolean"}
_PREDICATES = (ir.Bin, ir.Logic, *ir.NEGATABLE)
_AGGS = {"count": "number", "sum": "number", "avg": "number", "stddev": "number", "stddevs": "number",
         "var": "number", "vars": "number", "median": "number", "percentile": "number"}


def static_kind(n: ir.Node) -> Optional[str]:
    """``number``, ``string`` or ``boolean`` when every non-NULL value of ``n`` is of that kind; else None."""
    if isinstance(n, ir.Lit):
        return None if n.value is None else kind(n.value)
    if isinstance(n, ir.Arith):
        return "string" if n.ops[0] == "||" else "number"
    if isinstance(n, _PREDICATES):
        return "boolean"
    if isinstance(n, ir.Unary):
        return "number" if n.op == "neg" else "boolean"
    if isinstance(n, ir.Cast):
        return _CAST.get(n.to)
    if isinstance(n, ir.Call):
        f = SCALARS.get(n.name)
        return f.kind if f is not None else None
    if isinstance(n, ir.Agg):
        return _AGGS.get(n.name)
    if isinstance(n, ir.WinFn):
        return "number"
    if isinstance(n, ir.Case):
        values = [v for _, v in n.whens] + ([n.default] if n.default is not None else [])
        kinds = {static_kind(v) for v in values if not (isinstance(v, ir.Lit) and v.value is None)}
        return kinds.pop() if len(kinds) == 1 else None
    return None

