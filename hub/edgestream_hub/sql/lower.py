"""Pass 1, lower: sqlglot's tree to the query tree (``ir``), normalising spellings.

``a->b``, ``a.b`` and ``a[0]`` become one field path; every function call
becomes a lower-case ``Call``, ``Agg`` or ``Analytic``; ``TUMBLE``/``HOP``/
``SESSION`` become the window they alias; the window leaves GROUP BY for
``Query.window``. A window anywhere but GROUP BY is an error here.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any, Callable

from sqlglot import exp

from . import ir
from .dialect import EdgeSQL
from .errors import SqlError

UNITS = {"ms": 1, "ss": 1000, "mi": 60_000, "hh": 3_600_000, "dd": 86_400_000}
INTERVAL_UNITS = {
    "MILLISECOND": 1, "MILLISECONDS": 1, "SECOND": 1000, "SECONDS": 1000, "MINUTE": 60_000,
    "MINUTES": 60_000, "HOUR": 3_600_000, "HOURS": 3_600_000, "DAY": 86_400_000, "DAYS": 86_400_000,
}
_SHORT = re.compile(r"(\d+)\s*(ms|s|m|h|d)")
_SHORT_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
WINDOW_BOUNDS = {"tumble_start": "start", "tumble_end": "end", "hop_start": "start", "hop_end": "end",
                 "session_start": "start", "session_end": "end"}
WINDOWS = {"tumblingwindow", "hoppingwindow", "slidingwindow", "sessionwindow", "countwindow", "tumble", "hop",
           "session"}
FUNCTION_ALIASES = {"pow": "power", "ceiling": "ceil", "len": "length", "char_length": "length", "substr": "substring",
                    "ifnull": "coalesce", "stddev_pop": "stddev", "stddev_samp": "stddevs", "var_pop": "var",
                    "var_samp": "vars", "variance": "vars", "current_timestamp": "now", "regexp_like": "regexp_matches"}
CAST_TYPES = {
    "INT": "int", "BIGINT": "int", "SMALLINT": "int", "TINYINT": "int", "INTEGER": "int",
    "FLOAT": "float", "DOUBLE": "float", "REAL": "float", "DECIMAL": "float",
    "VARCHAR": "string", "TEXT": "string", "CHAR": "string", "NVARCHAR": "string",
    "BOOLEAN": "bool", "BOOL": "bool",
}
_BINARY: dict[type, str] = {
    exp.Add: "+", exp.Sub: "-", exp.Mul: "*", exp.Div: "/", exp.Mod: "%", exp.DPipe: "||",
    exp.EQ: "=", exp.NEQ: "!=", exp.GT: ">", exp.GTE: ">=", exp.LT: "<", exp.LTE: "<=",
    exp.And: "and", exp.Or: "or",
}


def position(node: exp.Expression) -> int:
    """The smallest source offset sqlglot recorded anywhere in ``node``."""
    best = None
    for n in node.walk():
        meta = n.meta if n._meta else None  # reading _meta avoids creating empty meta dicts
        if meta and "start" in meta:
            s = meta["start"]
            if best is None or s < best:
                best = s
    return best or 0


class Lowerer:
    def __init__(self, text: str) -> None:
        self.text = text

    def error(self, msg: str, node: Any) -> SqlError:
        off = node if isinstance(node, int) else position(node)
        return SqlError(msg, self.text, off)

    # -- query ------------------------------------------------------------
    def query(self, tree: exp.Select, explain: bool) -> ir.Query:
        for key in ("with_", "with", "distinct", "qualify", "windows"):
            if tree.args.get(key):
                raise self.error(f"{key.rstrip('_').upper()} is not supported in streaming queries", tree.args[key])
        frm = tree.args.get("from_") or tree.args.get("from")
        if frm is None:
            raise self.error("a query needs FROM <stream>", tree)
        sources = [self.source(frm.this, "from", None)]
        for j in tree.args.get("joins") or []:
            side = (j.side or "").upper()
            kind = (j.kind or "").upper()
            if side in ("RIGHT", "FULL") or kind in ("OUTER", "CROSS", "SEMI", "ANTI") and side != "LEFT":
                raise self.error(f"{(side or kind)} JOIN is not supported (use JOIN or LEFT JOIN)", j)
            if j.args.get("using"):
                raise self.error("JOIN ... USING is not supported: write JOIN ... ON a.x = b.x", j)
            on = j.args.get("on")
            sources.append(self.source(j.this, "left" if side == "LEFT" else "inner", on))
        seen = set()
        for s in sources:
            if s.alias in seen:
                raise SqlError(f"source name {s.alias!r} is used twice: give one an alias", self.text, s.pos)
            seen.add(s.alias)
        if not tree.expressions:
            select = re.search(r"\bSELECT\b", self.text, re.I)
            raise self.error("SELECT needs at least one item: a column, an expression or *",
                             select.start() if select else 0)
        q = ir.Query(text=self.text, select=[], sources=sources, explain=explain)
        for e in tree.expressions:
            q.select.append(self.select_item(e))
        where = tree.args.get("where")
        if where is not None:
            q.where = self.expr(where.this)
        group = tree.args.get("group")
        if group is not None:
            for g in group.expressions:
                if isinstance(g, exp.Anonymous) and str(g.this).lower() in WINDOWS:
                    if q.window is not None:
                        raise self.error("at most one window per query", g)
                    q.window = self.window(g)
                else:
                    q.group.append(self.expr(g))
            for key in ("rollup", "cube", "grouping_sets", "totals"):
                if group.args.get(key):
                    raise self.error(f"GROUP BY {key.upper()} is not supported", group)
        having = tree.args.get("having")
        if having is not None:
            q.having = self.expr(having.this)
        order = tree.args.get("order")
        if order is not None:
            for o in order.expressions:
                q.order.append((self.expr(o.this), bool(o.args.get("desc"))))
        limit = tree.args.get("limit")
        if limit is not None:
            n = limit.expression
            if not (isinstance(n, exp.Literal) and not n.is_string and n.this.isdigit()):
                raise self.error("LIMIT takes a non-negative integer", limit)
            q.limit = int(n.this)
        if tree.args.get("offset"):
            raise self.error("OFFSET is not supported", tree.args["offset"])
        return q

    def source(self, node: exp.Expression, join: str, on: Any) -> ir.Source:
        if not isinstance(node, exp.Table) or not isinstance(node.this, exp.Identifier):
            raise self.error("FROM and JOIN take a stream or table name", node)
        name = node.this.this
        alias = node.alias or name
        return ir.Source(name=name, alias=alias, join=join, on=self.expr(on) if on is not None else None,
                         pos=position(node))

    def select_item(self, e: exp.Expression) -> ir.SelectItem:
        pos = position(e)
        if isinstance(e, exp.Star):
            return ir.SelectItem("*", ir.Star(pos=pos), pos, star=True)
        if isinstance(e, exp.Column) and isinstance(e.this, exp.Star):
            return ir.SelectItem("*", ir.Star(e.table, pos=pos), pos, star=True)
        if isinstance(e, exp.Alias):
            return ir.SelectItem(e.alias, self.expr(e.this), pos)
        node = self.expr(e)
        if isinstance(node, ir.Col):
            name = next((p for p in reversed(node.parts) if isinstance(p, str)), str(node.parts[-1]))
        elif isinstance(node, (ir.Call, ir.Agg, ir.Analytic)):
            name = node.name
        elif isinstance(node, ir.WinFn):
            name = "window_" + node.which
        else:
            name = e.sql(dialect=EdgeSQL)
        return ir.SelectItem(name, node, pos)

    # -- windows ----------------------------------------------------------
    def _int(self, node: exp.Expression, what: str) -> int:
        if isinstance(node, exp.Neg) or not (isinstance(node, exp.Literal) and not node.is_string):
            raise self.error(f"{what} must be a positive integer literal", node)
        try:
            v = int(node.this)
        except ValueError:
            raise self.error(f"{what} must be a positive integer literal", node) from None
        if v <= 0:
            raise self.error(f"{what} must be positive", node)
        return v

    def _unit(self, node: exp.Expression) -> int:
        name = node.name.lower() if isinstance(node, (exp.Column, exp.Var, exp.Identifier)) else ""
        if name not in UNITS:
            raise self.error("window time unit must be one of ms, ss, mi, hh, dd", node)
        return UNITS[name]

    def _interval(self, node: exp.Expression) -> int:
        if isinstance(node, exp.Literal) and node.is_string:
            m = _SHORT.fullmatch(node.this.strip())
            if m and int(m.group(1)) > 0:
                return int(m.group(1)) * _SHORT_UNITS[m.group(2)]
            raise self.error("expected a duration like '500ms', '10s', '1m', '2h', '1d'", node)
        if not isinstance(node, exp.Interval):
            raise self.error("expected INTERVAL '<n>' <unit> or a duration like '10s'", node)
        unit = (node.unit.name if node.unit is not None else "").upper()
        value = node.this
        text = value.this if isinstance(value, exp.Literal) else ""
        if unit == "" and isinstance(value, exp.Literal) and " " in str(text):
            text, unit = str(text).split(None, 1)
            unit = unit.upper()
        if unit not in INTERVAL_UNITS or not str(text).isdigit() or int(text) <= 0:
            raise self.error("expected INTERVAL '<positive n>' MILLISECOND|SECOND|MINUTE|HOUR|DAY", node)
        return int(text) * INTERVAL_UNITS[unit]

    def _session_bounds(self, max_ms: int, timeout_ms: int, at: exp.Expression, usage: str) -> None:
        """A timeout longer than the maximum duration could never end a session: most likely swapped."""
        if timeout_ms > max_ms:
            raise self.error(f"the session timeout ({timeout_ms}ms) is longer than its maximum duration "
                             f"({max_ms}ms), so it could never end a session: the arguments are {usage}", at)

    def window(self, g: exp.Anonymous) -> ir.WindowSpec:
        name = str(g.this).lower()
        a = list(g.expressions)
        pos = position(g)

        def need(lo: int, hi: int, usage: str) -> None:
            if not lo <= len(a) <= hi:
                raise self.error(f"{name.upper()} takes {usage}", g)

        if name == "tumblingwindow":
            need(2, 2, "(unit, size)")
            return ir.WindowSpec("tumbling", size=self._unit(a[0]) * self._int(a[1], "window size"), pos=pos)
        if name == "hoppingwindow":
            need(3, 3, "(unit, size, hop)")
            u = self._unit(a[0])
            return ir.WindowSpec("hopping", size=u * self._int(a[1], "window size"), hop=u * self._int(a[2], "hop"),
                                 pos=pos)
        if name == "slidingwindow":
            if len(a) == 3:
                raise self.error("SLIDINGWINDOW takes (unit, size): a trigger delay (eKuiper's third argument) is "
                                 "not supported", a[2])
            need(2, 2, "(unit, size)")
            return ir.WindowSpec("sliding", size=self._unit(a[0]) * self._int(a[1], "window size"), pos=pos)
        if name == "sessionwindow":
            need(3, 3, "(unit, maxDuration, timeout)")
            u = self._unit(a[0])
            mx, to = u * self._int(a[1], "maxDuration"), u * self._int(a[2], "timeout")
            self._session_bounds(mx, to, a[2], "SESSIONWINDOW(unit, maxDuration, timeout)")
            return ir.WindowSpec("session", size=mx, timeout=to, pos=pos)
        if name == "countwindow":
            need(1, 2, "(n [, m])")
            n = self._int(a[0], "count")
            m = self._int(a[1], "count interval") if len(a) > 1 else n
            return ir.WindowSpec("count", size=n, hop=m, pos=pos)
        # Flink-style aliases: the first argument names the event-time field
        if not a or not isinstance(a[0], exp.Column) or a[0].table:
            raise self.error(f"{name.upper()} takes the time field first, "
                             f"e.g. {name.upper()}(ts, INTERVAL '10' SECOND)", g)
        tf = a[0].name
        if name == "tumble":
            need(2, 2, "(time_field, INTERVAL size)")
            return ir.WindowSpec("tumbling", size=self._interval(a[1]), time_field=tf, pos=pos)
        if name == "hop":
            need(3, 3, "(time_field, INTERVAL hop, INTERVAL size)")
            return ir.WindowSpec("hopping", hop=self._interval(a[1]), size=self._interval(a[2]), time_field=tf, pos=pos)
        need(2, 3, "(time_field, INTERVAL gap [, INTERVAL max_duration])")
        gap = self._interval(a[1])
        mx = self._interval(a[2]) if len(a) > 2 else 1 << 62
        self._session_bounds(mx, gap, a[1], "SESSION(time_field, gap, max_duration)")
        return ir.WindowSpec("session", size=mx, timeout=gap, time_field=tf, pos=pos)

    # -- expressions ------------------------------------------------------
    def expr(self, e: exp.Expression) -> ir.Node:
        pos = position(e)
        if type(e) not in _READS_NEGATION and any(e.args.get(k) for k in _NEGATION_FLAGS):
            # sqlglot marks some NOT forms with a flag instead of a Not parent: one left unread would be
            # computed as its positive form
            raise self.error(f"unsupported negated expression: {e.sql(dialect=EdgeSQL)}", e)
        if isinstance(e, exp.Paren):
            return self.expr(e.this)
        if isinstance(e, exp.Literal):
            if e.is_string:
                return ir.Lit(e.this, pos)
            try:
                return ir.Lit(int(e.this), pos)
            except ValueError:
                return ir.Lit(float(e.this), pos)
        if isinstance(e, exp.Boolean):
            return ir.Lit(bool(e.this), pos)
        if isinstance(e, exp.Null):
            return ir.Lit(None, pos)
        if isinstance(e, exp.Column):
            if isinstance(e.this, exp.Star):
                raise self.error("'*' is only allowed as a SELECT item or in count(*)", e)
            parts = [p.name for p in reversed(e.parts)][::-1]
            return ir.Col(tuple(parts), pos)
        if isinstance(e, exp.Dot):
            base = self.expr(e.this)
            name = e.expression.name if isinstance(e.expression, (exp.Identifier, exp.Column)) else None
            if isinstance(base, ir.Col) and name:
                return ir.Col(base.parts + (name,), base.pos)
            if name:
                return ir.Call("__item", (base, ir.Lit(name)), pos)
            raise self.error("unsupported field access", e)
        if isinstance(e, exp.Bracket):
            base = self.expr(e.this)
            if len(e.expressions) != 1:
                raise self.error("an index takes one value: a[0]", e)
            idx = self.expr(e.expressions[0])
            if isinstance(base, ir.Col) and isinstance(idx, ir.Lit) and isinstance(idx.value, (int, str)):
                return ir.Col(base.parts + (idx.value,), base.pos)
            return ir.Call("__item", (base, idx), pos)
        if isinstance(e, (exp.JSONExtract, exp.JSONExtractScalar)):
            base = self.expr(e.this)
            key = e.expression
            if isinstance(key, exp.Column) and not key.table:
                step: Any = key.name
            elif isinstance(key, exp.Literal):
                step = key.this if key.is_string else int(key.this)
            elif isinstance(key, exp.JSONPath):
                segs = [s for s in key.expressions if not isinstance(s, exp.JSONPathRoot)]
                if len(segs) != 1 or not isinstance(segs[0].this, (str, int)):
                    raise self.error("'->' takes a field name or an index", e)
                step = segs[0].this
            else:
                raise self.error("'->' takes a field name or an index", e)
            if isinstance(base, ir.Col):
                return ir.Col(base.parts + (step,), base.pos)
            return ir.Call("__item", (base, ir.Lit(step)), pos)
        if isinstance(e, exp.Neg):
            inner = self.expr(e.this)
            if (isinstance(inner, ir.Lit) and isinstance(inner.value, (int, float))
                    and not isinstance(inner.value, bool)):
                return ir.Lit(-inner.value, pos)
            return ir.Unary("neg", inner, pos)
        if isinstance(e, exp.Not):
            inner = self.expr(e.this)
            if isinstance(inner, ir.NEGATABLE):
                return replace(inner, negate=not inner.negate)
            return ir.Unary("not", inner, pos)
        op = _BINARY.get(type(e))
        if op is not None:
            return ir.Bin(op, self.expr(e.this), self.expr(e.expression), pos)
        predicate = _PREDICATES.get(type(e))
        if predicate is not None:
            return predicate(self, e, pos)
        unsupported = _UNSUPPORTED.get(type(e))
        if unsupported is not None:
            raise self.error(unsupported, e)
        if isinstance(e, exp.Case):
            operand = self.expr(e.this) if e.this is not None else None
            whens = tuple((self.expr(i.this), self.expr(i.args["true"])) for i in e.args.get("ifs") or [])
            default = e.args.get("default")
            return ir.Case(operand, whens, self.expr(default) if default is not None else None, pos)
        if isinstance(e, (exp.Cast, exp.TryCast)):
            to = e.to.this.name if hasattr(e.to.this, "name") else str(e.to.this)
            kind = CAST_TYPES.get(str(to).upper())
            if kind is None:
                raise self.error(f"CAST to {to} is not supported (use INT, FLOAT, STRING, VARCHAR or BOOLEAN)", e.to)
            return ir.Cast(self.expr(e.this), kind, pos)
        if isinstance(e, exp.Count):
            arg = e.this
            if isinstance(arg, exp.Star) or arg is None:
                return ir.Agg("count", (), False, True, pos)
            if isinstance(arg, exp.Distinct):
                if len(arg.expressions) != 1:
                    raise self.error("count(DISTINCT ...) takes one expression", e)
                return ir.Agg("count", (self.expr(arg.expressions[0]),), True, False, pos)
            if e.expressions:
                raise self.error("count takes one argument", e)
            return ir.Agg("count", (self.expr(arg),), False, False, pos)
        if isinstance(e, exp.Window):
            inner = self.expr(e.this)
            if not isinstance(inner, ir.Analytic):
                raise self.error("OVER (PARTITION BY ...) applies to lag, latest, changed_col and had_changed", e)
            if e.args.get("order") or e.args.get("spec"):
                raise self.error("OVER takes only PARTITION BY", e)
            part = tuple(self.expr(p) for p in e.args.get("partition_by") or [])
            return ir.Analytic(inner.name, inner.args, part, inner.pos)
        if isinstance(e, exp.CurrentTimestamp):
            return ir.Call("now", (), pos)
        if isinstance(e, exp.Anonymous):
            return self.call(str(e.this).lower(), list(e.expressions), e, pos)
        if isinstance(e, (exp.Binary, exp.Unary)):  # an operator the tables above do not map (a ? b, a ^ b)
            raise self.error(f"unsupported operator: {e.sql(dialect=EdgeSQL)}", e)
        if isinstance(e, exp.Func):
            # the few typed functions sqlglot still builds (kept minimal in the dialect)
            args = [v for k in e.arg_types for v in (e.args[k] if isinstance(e.args.get(k), list) else [e.args.get(k)])
                    if isinstance(v, exp.Expression)]
            return self.call(e.sql_name().lower(), args, e, pos)
        if isinstance(e, exp.Star):
            raise self.error("'*' is only allowed as a SELECT item or in count(*)", e)
        if isinstance(e, exp.Interval):
            raise self.error("INTERVAL is only allowed in TUMBLE, HOP and SESSION", e)
        if isinstance(e, (exp.Subquery, exp.Select, exp.Exists)):
            raise self.error("subqueries are not supported", e)
        raise self.error(f"unsupported expression: {e.sql(dialect=EdgeSQL)}", e)

    def call(self, name: str, args: list, e: exp.Expression, pos: int) -> ir.Node:
        name = FUNCTION_ALIASES.get(name, name)
        if name in WINDOWS:
            raise self.error(f"{name.upper()} is a window: it belongs in GROUP BY", e)
        if name in WINDOW_BOUNDS:
            return ir.WinFn(WINDOW_BOUNDS[name], pos)  # Flink's TUMBLE_END(ts, ...): the arguments repeat the window
        if name in ("window_start", "window_end"):
            if args:
                raise self.error(f"{name}() takes no arguments", e)
            return ir.WinFn(name[7:], pos)
        lowered = []
        for a in args:
            if isinstance(a, exp.Distinct):
                raise self.error("DISTINCT is only supported in count(DISTINCT x)", a)
            if isinstance(a, exp.Star):
                if name == "collect":
                    return ir.Agg("collect", (), False, True, pos)
                raise self.error(f"'*' is not an argument of {name}", a)
            lowered.append(self.expr(a))
        if name in ir.AGGREGATES:
            return ir.Agg(name, tuple(lowered), False, False, pos)
        if name in ir.ANALYTIC:
            return ir.Analytic(name, tuple(lowered), (), pos)
        return ir.Call(name, tuple(lowered), pos)


# -- predicates: one function per sqlglot node; each reads the node's own negation flag ------------------
def _match(op: str) -> Callable[[Lowerer, exp.Expression, int], ir.Node]:
    """``x [NOT] LIKE|ILIKE|REGEXP p`` (sqlglot flags NOT LIKE and NOT ILIKE, wraps NOT REGEXP in Not)."""

    def lower_match(lw: Lowerer, e: exp.Expression, pos: int) -> ir.Node:
        word = op.upper()
        if e.args.get("escape"):
            raise lw.error(f"{word} ... ESCAPE is not supported", e)
        if isinstance(e.expression, (exp.Any, exp.All)):
            raise lw.error(f"{word} ANY/ALL is not supported: combine {word} conditions with OR/AND", e)
        if e.args.get("flag") is not None or e.args.get("full_match"):
            raise lw.error(f"{word} takes no flags here: write the pattern with (?i) for case-insensitive", e)
        return ir.Like(lw.expr(e.this), lw.expr(e.expression), bool(e.args.get("negate")), pos, op)

    return lower_match


def _escape(lw: Lowerer, e: exp.Expression, pos: int) -> ir.Node:
    word = "ILIKE" if isinstance(e.this, exp.ILike) else "LIKE"
    raise lw.error(f"{word} ... ESCAPE is not supported", e)


def _in(lw: Lowerer, e: exp.Expression, pos: int) -> ir.Node:
    if e.args.get("query") or e.args.get("unnest") or e.args.get("field"):
        raise lw.error("IN takes a list of values, not a subquery", e)
    if not e.expressions:
        raise lw.error("IN needs at least one value: x IN (a, b, ...)", e)
    return ir.In(lw.expr(e.this), tuple(lw.expr(x) for x in e.expressions), False, pos)


def _between(lw: Lowerer, e: exp.Expression, pos: int) -> ir.Node:
    if e.args.get("symmetric"):
        raise lw.error("BETWEEN SYMMETRIC is not supported", e)
    return ir.Between(lw.expr(e.this), lw.expr(e.args["low"]), lw.expr(e.args["high"]), False, pos)


def _is(lw: Lowerer, e: exp.Expression, pos: int) -> ir.Node:
    negate = bool(e.args.get("negate"))
    rhs = e.expression
    if isinstance(rhs, exp.Null):
        return ir.IsNull(lw.expr(e.this), negate, pos)
    if isinstance(rhs, exp.Boolean):
        return ir.IsBool(lw.expr(e.this), bool(rhs.this), negate, pos)
    raise lw.error("IS takes NULL, TRUE or FALSE (to compare two values with NULL equal to NULL, "
                   "write a IS [NOT] DISTINCT FROM b)", e)


def _distinct(negate: bool) -> Callable[[Lowerer, exp.Expression, int], ir.Node]:
    def lower_distinct(lw: Lowerer, e: exp.Expression, pos: int) -> ir.Node:
        return ir.IsDistinct(lw.expr(e.this), lw.expr(e.expression), negate, pos)

    return lower_distinct


_PREDICATES: dict[type, Callable[[Lowerer, exp.Expression, int], ir.Node]] = {
    exp.Like: _match("like"),
    exp.ILike: _match("ilike"),
    exp.RegexpLike: _match("regexp"),
    exp.Escape: _escape,
    exp.In: _in,
    exp.Between: _between,
    exp.Is: _is,
    exp.NullSafeNEQ: _distinct(False),  # a IS DISTINCT FROM b
    exp.NullSafeEQ: _distinct(True),  # a IS NOT DISTINCT FROM b, a <=> b
}
#: the nodes whose lowering reads sqlglot's negation flag; any other node carrying one is refused
_READS_NEGATION = (exp.Like, exp.ILike, exp.Is)
_NEGATION_FLAGS = ("negate", "not", "negated")
_UNSUPPORTED: dict[type, str] = {
    exp.SimilarTo: "SIMILAR TO is not supported (use LIKE or REGEXP)",
    exp.Glob: "GLOB is not supported (use LIKE or REGEXP)",
    exp.Any: "ANY/ALL is not supported (use IN or combine conditions with OR/AND)",
    exp.All: "ANY/ALL is not supported (use IN or combine conditions with OR/AND)",
}


def lower(tree: exp.Select, text: str, explain: bool = False) -> ir.Query:
    """Lower a parsed SELECT into ``ir.Query``."""
    return Lowerer(text).query(tree, explain)
