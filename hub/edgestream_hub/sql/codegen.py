"""Expressions to Python source, with SQL NULL semantics (three-valued logic).

``Gen.expr(node)`` returns a Python expression string. Columns read
``<var>.get(name)`` from the record variable of their source; NULL-strict
operators test their operands once through walrus temporaries, so no
helper call is paid on the hot path for ``a + b`` or ``x > 3``: an inline
guard checks the operands' kinds (numbers for arithmetic, as comparisons
check theirs) and only a value of another kind goes to the helper, which
fails the record. Values that are not simple literals (IN lists, UDFs,
analytic state) live in the constants list ``_C`` the generated module is
given.

Chains stay flat: ``a + b + c`` is one Python expression ``t1 + t2 + t3``
under one NULL test, ``a AND b AND c`` one call ``_and(a, b, c)``, a CASE
one run of conditional expressions, so the code nests no deeper than the
query's own nesting (``lower.MAX_DEPTH``) however long a chain is.

>>> from edgestream_hub.sql import ir
>>> Gen("").expr(ir.Arith(("+", "-"), (ir.Lit(1), ir.Lit(2), ir.Lit(3))))
'(1 + 2 - 3)'
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

from . import ir
from .errors import SqlError
from .functions import SCALARS, helpers, kind
from .ir import sql_text
from .kinds import static_kind

_CMP = {"=": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
#: operators Python computes as SQL does on two numbers (``/`` and ``%`` differ: helpers)
_INLINE = frozenset(("+", "-", "*"))
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
            if static_kind(n.arg) == "number":
                return f"(None if ({t} := {a}) is None else -{t})"
            return f"(None if ({t} := {a}) is None else -{t} if {t}.__class__ in _NUM else _neg({t}))"
        if isinstance(n, ir.Arith):
            return self.arith(n)
        if isinstance(n, ir.Logic):
            return f"{'_and' if n.op == 'and' else '_or'}({', '.join(self.expr(a) for a in n.args)})"
        if isinstance(n, ir.Bin):
            return self.compare(n.op, self.expr(n.left), self.expr(n.right), n.left, n.right)
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
            # IS TRUE: TRUE; IS FALSE: FALSE, not NULL; the NOT forms are their complements (never NULL)
            if static_kind(n.arg) == "boolean":
                return f"({self.expr(n.arg)} is {'not ' if n.negate else ''}{n.value})"
            return f"_is({self.expr(n.arg)}, {n.value}, {n.negate})"
        if isinstance(n, ir.IsDistinct):
            code = f"_distinct({self.expr(n.left)}, {self.expr(n.right)})"
            return f"(not {code})" if n.negate else code
        if isinstance(n, ir.Case):
            # one run of conditional expressions, ``v1 if c1 else v2 if c2 else d``: flat however many WHENs
            default = self.expr(n.default) if n.default is not None else "None"
            if n.operand is not None:
                t = self.tmp()
                op = self.expr(n.operand)
                parts = []
                for when, val in n.whens:
                    tc = self.tmp()
                    parts.append(f"{self.expr(val)} if ({tc} := {self.expr(when)}) is not None and {t} is not None "
                                 f"and _cmp({t}, '=', {tc}) else ")
                return f"(({t} := {op}), ({''.join(parts)}{default}))[1]"
            parts = [f"{self.expr(val)} if {self.cond(when)} else " for when, val in n.whens]
            return f"({''.join(parts)}{default})"
        if isinstance(n, ir.Cast):
            return f"{'_trycast' if n.safe else '_cast'}({self.expr(n.arg)}, {n.to!r})"
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

    def arith(self, n: ir.Arith) -> str:
        """A chain of + - (or * / %, or ||) as one flat expression.

        ``||`` is one call. Otherwise the operands are computed left to right into temporaries, the
        first NULL gives NULL; when every operand is a number (an inline guard, left out for operands
        known to be numbers) Python computes ``t1 + t2 - t3`` itself, else (or with ``/``, ``%``) the
        helper computes or fails the record naming the operator.
        """
        if n.ops[0] == "||":
            return f"_cat({', '.join(self.expr(a) for a in n.args)})"
        names, nulls, guards = [], [], []
        for a in n.args:
            if _known(a) and a.value.__class__ in (int, float):  # a number literal: no temporary, no test
                names.append(self.lit(a.value))
                continue
            t = self.tmp()
            names.append(t)
            nulls.append(f"({t} := {self.expr(a)}) is None")
            if static_kind(a) != "number":
                guards.append(f"{t}.__class__ in _NUM")
        if all(op in _INLINE for op in n.ops):
            inline = names[0] + "".join(f" {op} {x}" for op, x in zip(n.ops, names[1:]))
            helper = f"_arith({n.ops!r}, {', '.join(names)})"
            code = f"{inline} if {' and '.join(guards)} else {helper}" if guards else inline
        elif len(n.ops) == 1:
            code = f"{'_div' if n.ops[0] == '/' else '_mod'}({names[0]}, {names[1]})"
        else:
            code = f"_arith({n.ops!r}, {', '.join(names)})"
        return f"(None if {' or '.join(nulls)} else {code})" if nulls else f"({code})"

    def conds(self, ns: list) -> str:
        """Conditions that must all be TRUE, in order (a later one is not computed once one is not)."""
        return " and ".join(self.cond(n) for n in ns)

    def key(self, ns: list) -> str:
        """A key of the values of ``ns`` (one value, or a tuple for several): equal exactly where ``=`` says so
        (``keys.key``); strings and integers, the usual keys, are their own keys without a call."""
        parts = []
        for n in ns:
            t = self.tmp()
            parts.append(f"({t} if ({t} := {self.expr(n)}).__class__ is str or {t}.__class__ is int else _keyof({t}))")
        return parts[0] if len(parts) == 1 else "(" + ", ".join(parts) + ",)"

    def cond(self, n: ir.Node, text: Optional[str] = None) -> str:
        """A condition (WHERE, HAVING, ON, CASE WHEN) as a Python value that is true exactly when the SQL value
        is TRUE: FALSE and NULL are false; any other value fails the record (it is not a boolean). ``text``
        names the condition in that message (default: the node as SQL)."""
        code = self.expr(n)
        if static_kind(n) == "boolean":
            return code
        t = self.tmp()
        return (f"(({t} := {code}) is True or {t} is not False and {t} is not None and "
                f"_badcond({t}, {text or sql_text(n)!r}))")

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
        code = compile(source, filename.replace("\x00", "\\x00"), "exec")  # a name may hold no NUL
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
