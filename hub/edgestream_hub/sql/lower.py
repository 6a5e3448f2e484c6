"""Pass 1, lower: sqlglot's tree to the query tree (``ir``), normalising spellings.

``a->b``, ``a.b`` and ``a[0]`` become one field path; every function call
becomes a lower-case ``Call``, ``Agg`` or ``Analytic``; ``TUMBLE``/``HOP``/
``SESSION`` become the window they alias; the window leaves GROUP BY for
``Query.window``. A window anywhere but GROUP BY is an error here.

Chains of one operator family (``a + b - c``, ``a AND b AND c``, ``a || b``),
which sqlglot nests one level per operator, become one ``Arith`` or
``Logic`` node, so a chain of ``MAX_TERMS`` terms compiles as flat code; an
expression may nest ``MAX_DEPTH`` levels. Anything sqlglot parsed that the
lowering does not read (an argument of a node outside ``_ARGS``, such as a
TABLESAMPLE on a table or a PIVOT) is refused where it is written, never
dropped.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from typing import Any, Callable, Optional

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
_BINARY: dict[type, str] = {exp.EQ: "=", exp.NEQ: "!=", exp.GT: ">", exp.GTE: ">=", exp.LT: "<", exp.LTE: "<="}
#: operators that chain: the node class -> (its family, its symbol); a chain is one family down the left operands
_CHAINS: dict[type, tuple[str, str]] = {
    exp.Add: ("arith+", "+"), exp.Sub: ("arith+", "-"), exp.Mul: ("arith*", "*"), exp.Div: ("arith*", "/"),
    exp.Mod: ("arith*", "%"), exp.DPipe: ("concat", "||"), exp.And: ("and", "and"), exp.Or: ("or", "or"),
}
#: the most terms in one chain of operators (a + b + ..., a OR b OR ...) or WHEN branches in one CASE
MAX_TERMS = 1000
#: the most levels an expression may nest (parentheses, function calls, operators of different families)
MAX_DEPTH = 32


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


#: quoted text and comments, blanked out of the query text before searching it for a keyword
_QUOTED = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|`[^`]*`|--[^\n]*|/\*.*?\*/", re.S)


class Lowerer:
    def __init__(self, text: str) -> None:
        self.text = text
        self._bare = _QUOTED.sub(lambda m: " " * len(m.group()), text)
        self.depth = 0
        self.cursor = 0  # the furthest position lowered so far: where a keyword literal is looked for

    def error(self, msg: str, node: Any) -> SqlError:
        if isinstance(node, list):
            node = node[0] if node else 0
        off = node if isinstance(node, int) else position(node)
        return SqlError(msg, self.text, off)

    def keyword(self, pattern: str, start: int = 0) -> Optional[re.Match]:
        """Where the query text has the keyword ``pattern`` (a regex), at or after ``start``, outside quotes."""
        return re.compile(rf"\b(?:{pattern})\b", re.I).search(self._bare, start)

    def refuse_unread(self, e: exp.Expression, start: int = 0) -> None:
        """Refuse any argument of ``e`` that its lowering does not read: it would be dropped, and the query
        would run as something else than what was written."""
        if type(e) not in _READS_NEGATION and any(e.args.get(k) for k in _NEGATION_FLAGS):
            # sqlglot marks some NOT forms with a flag instead of a Not parent: one left unread would be
            # computed as its positive form
            raise self.error(f"unsupported negated expression: {_sql(e)}", e)
        reads = _ARGS.get(type(e))
        if reads is None:
            return
        for k, v in e.args.items():
            if k in reads or k in _HARMLESS or v is None or v is False or (isinstance(v, list) and not v):
                continue
            label, pattern = _UNREAD.get(k, (k.strip("_").replace("_", " ").upper(), ""))
            found = self.keyword(pattern, start) if pattern else None
            if found is not None and "{}" in label:
                label = label.format(" ".join(found.group().upper().split()))
            at: Any = found.start() if found is not None else v if isinstance(v, (exp.Expression, list)) else e
            if isinstance(at, list) and not at:
                at = e
            raise self.error(f"{label} is not supported", at)

    # -- query ------------------------------------------------------------
    def query(self, tree: exp.Select, explain: bool) -> ir.Query:
        for key, word in (("with_", "WITH"), ("with", "WITH"), ("distinct", "DISTINCT"), ("qualify", "QUALIFY"),
                          ("windows", "WINDOW")):
            if tree.args.get(key):
                found = self.keyword(word)
                raise self.error(f"{word} is not supported in streaming queries",
                                 found.start() if found else tree.args[key])
        self.refuse_unread(tree)
        frm = tree.args.get("from_") or tree.args.get("from")
        if frm is None:
            raise self.error("a query needs FROM <stream>", tree)
        sources = [self.source(frm.this, "from", None)]
        for j in tree.args.get("joins") or []:
            side = (j.side or "").upper()
            kind = (j.kind or "").upper()
            if side in ("RIGHT", "FULL") or kind not in ("", "INNER", "OUTER") or kind == "OUTER" and side != "LEFT":
                raise self.error(f"{(side or kind)} JOIN is not supported (use JOIN or LEFT JOIN)", j)
            if j.args.get("using"):
                raise self.error("JOIN ... USING is not supported: write JOIN ... ON a.x = b.x", j)
            self.refuse_unread(j)
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
            self.refuse_unread(order)
            for o in order.expressions:
                desc = bool(o.args.get("desc"))
                self.refuse_unread(o, position(o.this))
                if o.args.get("nulls_first") is not None and bool(o.args["nulls_first"]) == desc:
                    found = self.keyword(r"NULLS\s+(?:FIRST|LAST)", position(o.this))
                    raise self.error(f"{' '.join(found.group().upper().split()) if found else 'NULLS FIRST/LAST'} "
                                     "is not supported: NULLs sort first in ascending order and last in descending "
                                     "order", found.start() if found else o)
                q.order.append((self.expr(o.this), desc))
        limit = tree.args.get("limit")
        if limit is not None:
            self.refuse_unread(limit)
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
        if node.args.get("db") or node.args.get("catalog"):
            raise self.error(f"a source is one name, without a schema or catalog: {_sql(node)}", node)
        alias_node = node.args.get("alias")
        if isinstance(alias_node, exp.TableAlias) and alias_node.args.get("columns"):
            raise self.error("column aliases on a source are not supported: name the columns in SELECT",
                             alias_node.args["columns"])
        self.refuse_unread(node, position(node))
        name = node.this.this
        alias = node.alias or name
        return ir.Source(name=name, alias=alias, join=join, on=self.expr(on) if on is not None else None,
                         pos=position(node))

    def select_item(self, e: exp.Expression) -> ir.SelectItem:
        pos = position(e)
        if isinstance(e, exp.Star):
            self.refuse_unread(e, pos)
            return ir.SelectItem("*", ir.Star(pos=pos), pos, star=True)
        if isinstance(e, exp.Column) and isinstance(e.this, exp.Star):
            self.refuse_unread(e.this, pos)
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
            name = _sql(e)
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
        """``e`` lowered; an expression nesting deeper than MAX_DEPTH is refused at the level that crosses it."""
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise self.error(f"expression too deep: more than {MAX_DEPTH} levels of nesting (parentheses, "
                                 "function calls, operators): split it into simpler expressions", e)
            return self._expr(e)
        finally:
            self.depth -= 1

    def chain(self, e: exp.Expression) -> ir.Node:
        """A chain of one operator family (``a + b - c``, ``a OR b OR c``) as one node, lowered without
        recursing down the chain: each term is one level deeper than the chain, whatever its length."""
        family = _CHAINS[type(e)][0]
        links = []
        node = e
        while _CHAINS.get(type(node), ("",))[0] == family:
            self.refuse_unread(node)
            links.append(node)
            node = node.this
        terms = [node] + [link.expression for link in reversed(links)]
        if len(terms) > MAX_TERMS:
            raise self.error(f"expression too large: more than {MAX_TERMS} terms in one chain of "
                             f"{_CHAINS[type(e)][1].upper()} (split it, or use IN for a list of values)",
                             terms[MAX_TERMS])
        args = tuple(self.expr(t) for t in terms)
        pos = min((a.pos for a in args if a.pos), default=position(e))
        if family in ("and", "or"):
            return ir.logic(family, list(args), pos)
        return ir.Arith(tuple(_CHAINS[type(link)][1] for link in reversed(links)), args, pos)

    def _expr(self, e: exp.Expression) -> ir.Node:
        if type(e) in _CHAINS:
            return self.chain(e)
        pos = position(e)
        if pos:
            self.cursor = max(self.cursor, pos)
        elif isinstance(e, (exp.Boolean, exp.Null)):  # sqlglot keeps no position for TRUE, FALSE and NULL
            found = self.keyword("NULL" if isinstance(e, exp.Null) else "TRUE" if e.this else "FALSE", self.cursor)
            if found is not None:
                pos, self.cursor = found.start(), found.end()
        self.refuse_unread(e, pos)
        if isinstance(e, exp.Paren):
            return self.expr(e.this)
        if isinstance(e, exp.Literal):
            if e.is_string:
                return ir.Lit(e.this, pos)
            return ir.Lit(self.number(e.this, pos), pos)
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
            ifs = e.args.get("ifs") or []
            if len(ifs) > MAX_TERMS:
                raise self.error(f"expression too large: more than {MAX_TERMS} WHEN branches in one CASE",
                                 ifs[MAX_TERMS])
            for i in ifs:
                self.refuse_unread(i)
            whens = tuple((self.expr(i.this), self.expr(i.args["true"])) for i in ifs)
            default = e.args.get("default")
            return ir.Case(operand, whens, self.expr(default) if default is not None else None, pos)
        if isinstance(e, (exp.Cast, exp.TryCast)):
            to = e.to.this.name if hasattr(e.to.this, "name") else str(e.to.this)
            kind = CAST_TYPES.get(str(to).upper())
            if kind is None:
                raise self.error(f"CAST to {to} is not supported (use INT, FLOAT, STRING, VARCHAR or BOOLEAN)", e.to)
            return ir.Cast(self.expr(e.this), kind, pos, safe=bool(e.args.get("safe")))
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
            if e.args.get("order") or e.args.get("spec") or e.args.get("alias"):
                raise self.error("OVER takes only PARTITION BY", e)
            part = tuple(self.expr(p) for p in e.args.get("partition_by") or [])
            return ir.Analytic(inner.name, inner.args, part, inner.pos)
        if isinstance(e, exp.CurrentTimestamp):
            return ir.Call("now", (), pos)
        if isinstance(e, exp.Anonymous):
            return self.call(str(e.this).lower(), list(e.expressions), e, pos)
        if isinstance(e, (exp.Binary, exp.Unary)):  # an operator the tables above do not map (a ? b, a ^ b)
            raise self.error(f"unsupported operator: {_sql(e)}", e)
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
        raise self.error(f"unsupported expression: {_sql(e)}", e)

    def number(self, text: str, pos: int) -> Any:
        """A numeric literal: an int when it is one, else a float, which must be finite."""
        try:
            return int(text)
        except ValueError:
            pass
        try:
            v = float(text)
        except ValueError:
            raise self.error(f"bad number {text!r}", pos) from None
        if not math.isfinite(v):
            raise self.error(f"number out of range: {text[:40]}", pos)
        return v

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
#: per node class the lowering reads selectively, the arguments it reads (or refuses by name itself); any
#: other argument set on such a node is refused (``Lowerer.refuse_unread``)
_ARGS: dict[type, frozenset[str]] = {k: frozenset(v.split()) for k, v in {
    exp.Select: "expressions from_ from joins where group having order limit offset with_ with distinct qualify "
                "windows",
    exp.Table: "this alias db catalog",
    exp.Join: "this on side kind using",
    exp.Order: "expressions",
    exp.Ordered: "this desc nulls_first",
    exp.Limit: "expression",
    exp.Star: "",
    exp.Alias: "this alias",
    exp.Column: "this table db catalog",
    exp.Literal: "this is_string",
    exp.Cast: "this to",
    exp.TryCast: "this to safe",
    exp.Case: "this ifs default",
    exp.If: "this true",
    exp.Window: "this partition_by order spec alias over",
    exp.Count: "this expressions big_int",
    exp.In: "this expressions query unnest field",
    exp.Between: "this low high symmetric",
    exp.Is: "this expression negate",
    exp.Like: "this expression negate escape",
    exp.ILike: "this expression negate escape",
    exp.RegexpLike: "this expression flag full_match",
    exp.Bracket: "this expressions",
    exp.Dot: "this expression",
    exp.Paren: "this",
    exp.Neg: "this",
    exp.Not: "this",
    exp.Anonymous: "this expressions",
    exp.NullSafeEQ: "this expression",
    exp.NullSafeNEQ: "this expression",
    exp.DPipe: "this expression safe",
    **{c: "this expression" for c in (*_BINARY, *_CHAINS) if c is not exp.DPipe},
}.items()}
#: set by sqlglot on nodes it parsed, read by nobody: never a change of meaning
_HARMLESS = frozenset(("_type",))
#: an unread argument: how to name it, and the keyword to point at (a regex; "{}" in the name takes its text)
_UNREAD: dict[str, tuple[str, str]] = {
    "sample": ("{}", r"TABLESAMPLE|USING\s+SAMPLE"),
    "pivots": ("{}", r"UNPIVOT|PIVOT"),
    "laterals": ("LATERAL", r"LATERAL"),
    "joins": ("a join inside a source", r"JOIN"),
    "locks": ("FOR UPDATE/SHARE", r"FOR"),
    "into": ("SELECT INTO", r"INTO"),
    "hint": ("a query hint", ""),
    "hints": ("a table hint", r"WITH"),
    "except_": ("SELECT * {}", r"EXCEPT|EXCLUDE"),
    "replace": ("SELECT * {}", r"REPLACE"),
    "rename": ("SELECT * {}", r"RENAME"),
    "ilike": ("SELECT * {}", r"ILIKE"),
    "connect": ("CONNECT BY", r"CONNECT|START"),
    "prewhere": ("PREWHERE", r"PREWHERE"),
    "distribute": ("DISTRIBUTE BY", r"DISTRIBUTE"),
    "sort": ("SORT BY", r"SORT"),
    "cluster": ("CLUSTER BY", r"CLUSTER"),
    "settings": ("SETTINGS", r"SETTINGS"),
    "format": ("FORMAT", r"FORMAT"),
    "method": ("{} JOIN", r"NATURAL|ASOF|POSITIONAL|LATERAL"),
    "expressions": ("LIMIT ... BY", r"LIMIT"),
    "offset": ("OFFSET", r"OFFSET|LIMIT"),
    "limit_options": ("LIMIT ... WITH TIES/PERCENT", r"LIMIT"),
    "with_fill": ("ORDER BY ... WITH FILL", r"WITH"),
    "siblings": ("ORDER SIBLINGS BY", r"ORDER"),
    "kind": ("SELECT AS STRUCT/VALUE", r"AS"),
    "match": ("MATCH_RECOGNIZE", r"MATCH_RECOGNIZE"),
    "match_condition": ("ASOF JOIN ... MATCH_CONDITION", r"MATCH_CONDITION"),
    "global_": ("GLOBAL", r"GLOBAL"),
    "is_global": ("GLOBAL IN", r"GLOBAL"),
    "version": ("a time-travel clause", r"FOR|AT|BEFORE"),
    "system_time": ("FOR SYSTEM_TIME", r"FOR"),
    "partition": ("PARTITION", r"PARTITION"),
    "ordinality": ("WITH ORDINALITY", r"WITH"),
    "only": ("ONLY", r"ONLY"),
    "format_": ("FORMAT", r"FORMAT"),
    "safe": ("SAFE", ""),
    "action": ("a CAST action", ""),
    "default": ("CAST ... DEFAULT ... ON CONVERSION ERROR", r"DEFAULT"),
    "first": ("FIRST", ""),
}


def _sql(e: exp.Expression) -> str:
    """``e`` as SQL text for a message (clipped; a tree too deep to print is shown as '...')."""
    try:
        text = e.sql(dialect=EdgeSQL)
    except RecursionError:
        return "..."
    return text if len(text) <= 200 else text[:197] + "..."


_UNSUPPORTED: dict[type, str] = {
    exp.SimilarTo: "SIMILAR TO is not supported (use LIKE or REGEXP)",
    exp.Glob: "GLOB is not supported (use LIKE or REGEXP)",
    exp.Any: "ANY/ALL is not supported (use IN or combine conditions with OR/AND)",
    exp.All: "ANY/ALL is not supported (use IN or combine conditions with OR/AND)",
}


def lower(tree: exp.Select, text: str, explain: bool = False) -> ir.Query:
    """Lower a parsed SELECT into ``ir.Query``."""
    return Lowerer(text).query(tree, explain)
