"""Expressions to Python source, with SQL NULL semantics (three-valued logic).

``Gen.expr(node)`` returns a Python expression string. Columns read
``<var>.get(name)`` from the record variable of their source; NULL-strict
operators test their operands once through walrus temporaries, so no
helper call is paid on the hot path for ``a + b`` or ``x > 3``. Values that
are not simple literals (IN lists, UDFs, analytic state) live in the
constants list ``_C`` the generated module is given.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

from . import ir
from .errors import SqlError
from .functions import SCALARS, helpers, kind

_CMP = {"=": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_ARITH = {"+": "+", "-": "-", "*": "*"}
_MATCH = {"like": "_like", "ilike": "_ilike", "regexp": "_regexp"}


class Gen:
    """Generates source for one query; shares temporaries and constants across its functions."""

    def __init__(self, text: str, functions: Optional[dict] = None) -> None:
        self.text = text
        self.functions = functions or {}
        self.consts: list[Any] = []
        self._tmp = 0
        self.env: dict[str, str] = {}  # source alias -> python variable
        self.key_code: Callable[[int], str] = lambda i: f"k[{i}]"
        self.agg_code: Callable[[int], str] = lambda i: f"a{i}"
        self.out_code: Callable[[int], str] = lambda i: f"o[{i}]"
        self.analytic_code: dict = {}  # Analytic node id -> local name

    def tmp(self) -> str:
        self._tmp += 1
        return f"_t{self._tmp}"

    def const(self, value: Any) -> str:
        for i, c in enumerate(self.consts):
            if c is value:
                return f"_C[{i}]"
        self.consts.append(value)
        return f"_C[{len(self.consts) - 1}]"

    def lit(self, v: Any) -> str:
        if v is None or isinstance(v, (bool, int, str)):
            return repr(v)
        if isinstance(v, float) and math.isfinite(v):
            return repr(v)
        return self.const(v)

    def expr(self, n: ir.Node) -> str:
        if isinstance(n, ir.Lit):
            return self.lit(n.value)
        if isinstance(n, ir.Field):
            var = self.env.get(n.source)
            if var is None:
                raise SqlError(f"source {n.source!r} is not available here", self.text, n.pos)
            code = f"{var}.get({n.path[0]!r})" if isinstance(n.path[0], str) else f"_item({var}, {n.path[0]!r})"
            for step in n.path[1:]:
                code = f"_item({code}, {step!r})"
            return code
        if isinstance(n, ir.KeyRef):
            return self.key_code(n.index)
        if isinstance(n, ir.AggRef):
            return self.agg_code(n.index)
        if isinstance(n, ir.OutRef):
            return self.out_code(n.index)
        if isinstance(n, ir.WinFn):
            return "ws" if n.which == "start" else "we"
        if isinstance(n, ir.Analytic):
            name = self.analytic_code.get(id(n))
            if name is None:
                raise SqlError(f"{n.name}() is not available here", self.text, n.pos)
            return name
        if isinstance(n, ir.Unary):
            a = self.expr(n.arg)
            if n.op == "not":
                return f"_not({a})"
            t = self.tmp()
            return f"(None if ({t} := {a}) is None else -{t})"
        if isinstance(n, ir.Bin):
            a, b = self.expr(n.left), self.expr(n.right)
            if n.op == "and":
                return f"_and({a}, {b})"
            if n.op == "or":
                return f"_or({a}, {b})"
            if n.op == "/":
                return f"_div({a}, {b})"
            if n.op == "%":
                return f"_mod({a}, {b})"
            if n.op == "||":
                return f"_cat({a}, {b})"
            if n.op in _CMP:
                return self.compare(n.op, a, b, n.left, n.right)
            op = _ARITH[n.op]
            if isinstance(n.right, ir.Lit) and n.right.value is not None:
                ta = self.tmp()
                return f"(None if ({ta} := {a}) is None else {ta} {op} {b})"
            if isinstance(n.left, ir.Lit) and n.left.value is not None:
                tb = self.tmp()
                return f"(None if ({tb} := {b}) is None else {a} {op} {tb})"
            ta, tb = self.tmp(), self.tmp()
            return f"(None if ({ta} := {a}) is None or ({tb} := {b}) is None else {ta} {op} {tb})"
        if isinstance(n, ir.IsNull):
            return f"({self.expr(n.arg)} is {'not ' if n.negate else ''}None)"
        if isinstance(n, ir.In):
            items = [self.expr(x) for x in n.items]
            if all(isinstance(x, ir.Lit) for x in n.items):
                seq = self.const(tuple(x.value for x in n.items))
            else:
                seq = "(" + ", ".join(items) + ",)"
            code = f"_in({self.expr(n.arg)}, {seq})"
            return f"_not({code})" if n.negate else code
        if isinstance(n, ir.Between):
            t = self.tmp()  # the operand, computed once and read by both comparisons
            code = (f"(({t} := {self.expr(n.arg)}), _and({self.compare('>=', t, self.expr(n.low), n.arg, n.low)}, "
                    f"{self.compare('<=', t, self.expr(n.high), n.arg, n.high)}))[1]")
            return f"_not({code})" if n.negate else code
        if isinstance(n, ir.Like):
            code = f"{_MATCH[n.op]}({self.expr(n.arg)}, {self.expr(n.pattern)})"
            return f"_not({code})" if n.negate else code
        if isinstance(n, ir.IsBool):
            # IS TRUE: a true value; IS FALSE: a false one, not NULL; the NOT forms are their complements
            t = self.tmp()
            holds = f"bool({t})" if n.value else f"not {t}"
            if n.negate:
                return f"(({t} := {self.expr(n.arg)}) is None or not {holds})"
            return f"(({t} := {self.expr(n.arg)}) is not None and {holds})"
        if isinstance(n, ir.IsDistinct):
            code = f"_distinct({self.expr(n.left)}, {self.expr(n.right)})"
            return f"(not {code})" if n.negate else code
        if isinstance(n, ir.Case):
            out = self.expr(n.default) if n.default is not None else "None"
            if n.operand is not None:
                t = self.tmp()
                op = self.expr(n.operand)
                for cond, val in reversed(n.whens):
                    tc = self.tmp()
                    out = (f"({self.expr(val)} if ({tc} := {self.expr(cond)}) is not None and {t} is not None "
                           f"and _cmp({t}, '=', {tc}) else {out})")
                return f"(({t} := {op}), {out})[1]"
            for cond, val in reversed(n.whens):
                out = f"({self.expr(val)} if {self.expr(cond)} else {out})"
            return out
        if isinstance(n, ir.Cast):
            return f"_cast({self.expr(n.arg)}, {n.to!r})"
        if isinstance(n, ir.Call):
            args = ", ".join(self.expr(a) for a in n.args)
            if n.name == "now":
                return "now"
            if n.name == "__item":
                return f"_item({args})"
            f = SCALARS.get(n.name)
            fn = f.fn if f is not None else self.functions.get(n.name)
            if fn is None:
                raise SqlError(f"unknown function {n.name!r}", self.text, n.pos)
            if f is None:
                fn = _udf(n.name, fn)
            return f"{self.const(fn)}({args})"
        if isinstance(n, ir.Agg):
            raise SqlError(f"aggregate {n.name}() is not allowed here", self.text, n.pos)
        if isinstance(n, ir.Star):
            var = self.env.get(n.source) if n.source else next(iter(self.env.values()))
            return f"dict({var})"
        raise SqlError(f"cannot compile {type(n).__name__}", self.text, getattr(n, "pos", 0))

    def compare(self, op: str, a: str, b: str, left: ir.Node, right: ir.Node) -> str:
        """``a op b`` with SQL's rules: NULL when a side is NULL; values of two kinds fail the record.

        Python's operator runs inline when both sides are numbers, or of one plain class (a literal
        side tells its kind at compile time); anything else goes through ``_cmp``, which decides or fails.
        """
        py = _CMP[op]
        lit = right if _known(right) else left if _known(left) else None
        if lit is not None:
            t = self.tmp()
            var, (x, y) = (a, (t, b)) if lit is right else (b, (a, t))
            assert isinstance(lit, ir.Lit)  # _known says so
            guard = _GUARDS[kind(lit.value)].format(t=t)
            return f"(None if ({t} := {var}) is None else {x} {py} {y} if {guard} else _cmp({x}, {op!r}, {y}))"
        ta, tb = self.tmp(), self.tmp()
        return (f"(None if ({ta} := {a}) is None or ({tb} := {b}) is None else {ta} {py} {tb} "
                f"if ({ta}.__class__ is {tb}.__class__ and {ta}.__class__ in _PLAIN) "
                f"or ({ta}.__class__ in _NUM and {tb}.__class__ in _NUM) else _cmp({ta}, {op!r}, {tb}))")

    def compile(self, source: str, filename: str) -> dict:
        """Compile generated source once; returns its namespace (helpers + ``_C``)."""
        ns = helpers()
        ns["_C"] = self.consts
        ns["dict"] = dict
        code = compile(source, filename, "exec")
        exec(code, ns)  # generated from the query tree, never from user text
        return ns


#: inline checks that a value is of a literal's kind (bool is not a number here, unlike in Python)
_GUARDS = {"number": "{t}.__class__ in _NUM", "string": "{t}.__class__ is str",
           "boolean": "{t}.__class__ is bool"}


def _known(n: ir.Node) -> bool:
    """A non-NULL literal whose kind an inline guard can check."""
    return isinstance(n, ir.Lit) and n.value is not None and kind(n.value) in _GUARDS


def _udf(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    from .errors import SqlRuntimeError

    def call(*args: Any) -> Any:
        try:
            return fn(*args)
        except SqlRuntimeError:
            raise
        except Exception as e:  # a plugin's failure is one record's failure
            raise SqlRuntimeError(f"function {name}() failed: {type(e).__name__}: {e}") from e

    return call


def eval_const(node: ir.Node, text: str) -> Any:
    """Evaluate a node made of literals only (used by constant folding)."""
    g = Gen(text)
    src = f"def _f(now):\n    return {g.expr(node)}\n"
    ns = g.compile(src, "<constant>")
    return ns["_f"](0)
