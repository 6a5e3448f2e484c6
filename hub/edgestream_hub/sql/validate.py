"""Pass 3, validate: refuse at compile time what could not run.

Unknown functions and wrong argument counts; aggregates where no group
exists (WHERE, GROUP BY, ON) or nested in each other; columns that are
neither grouped nor aggregated; ``window_start()`` without a window;
unknown columns of tables whose columns are known; stream-stream joins
outside a time window; ORDER BY or LIMIT with nothing to order per window;
analytic functions where no per-record value exists (outside aggregates
in SELECT, HAVING or ORDER BY of an aggregate query; in ON; in
stream-stream joins); a literal regular expression that does not compile;
an operand known to be of the wrong kind (``v + 'a'``, ``NOT 1``, ``WHERE
v * 2``: see ``kinds``); an expression larger than ``MAX_SIZE``.
"""

from __future__ import annotations

from typing import Callable

from . import ir
from .catalog import Catalog
from .errors import SqlError, SqlRuntimeError
from .functions import REGEX_ARGS, SCALARS, check_regex
from .ir import sql_text
from .kinds import a_or_an, static_kind

#: the most terms of chains and CASE branches along one path down an expression: each term of a chain (or
#: branch of a CASE) is one level of the generated code, which Python compiles up to about 3000 levels
MAX_SIZE = 2000


def _kinds(n: ir.Node, err: Callable[[str, object], SqlError]) -> None:
    """Refuse an operand whose kind is known at compile time and is not what its operator takes."""

    def need(arg: ir.Node, want: str, who: str) -> None:
        k = static_kind(arg)
        if k is not None and k != want:
            takes = "numbers" if want == "number" else "a boolean"
            raise err(f"{who} takes {takes}: {sql_text(arg)} is {a_or_an(k)}", arg)

    if isinstance(n, ir.Arith) and n.ops[0] != "||":
        for i, a in enumerate(n.args):
            need(a, "number", n.ops[max(0, i - 1)])
    elif isinstance(n, ir.Unary):
        need(n.arg, "number" if n.op == "neg" else "boolean", "-" if n.op == "neg" else "NOT")
    elif isinstance(n, ir.Logic):
        for a in n.args:
            need(a, "boolean", n.op.upper())
    elif isinstance(n, ir.IsBool):
        need(n.arg, "boolean", f"IS {'NOT ' if n.negate else ''}{'TRUE' if n.value else 'FALSE'}")
    elif isinstance(n, ir.Case) and n.operand is None:
        for when, _ in n.whens:
            need(when, "boolean", "CASE WHEN")
    elif isinstance(n, ir.Call):
        f = SCALARS.get(n.name)
        if f is not None and f.numeric:
            for a in n.args:
                need(a, "number", f"{n.name}()")


def _size(n: ir.Node, err: Callable[[str, object], SqlError]) -> int:
    """Terms along the longest path down ``n`` (see MAX_SIZE); refuses the smallest expression beyond it."""
    own = len(n.args) if isinstance(n, ir.Arith) else len(n.whens) if isinstance(n, ir.Case) else 1
    size = own + max((_size(c, err) for c in n.children()), default=0)
    if size > MAX_SIZE:
        raise err(f"expression too large: it nests {size} terms of operator chains and CASE branches "
                  f"inside each other (at most {MAX_SIZE}): split it", n)
    return size


def is_aggregated(q: ir.Query) -> bool:
    """True when the query groups rows (a window, GROUP BY keys or an aggregate)."""
    if q.window is not None or q.group:
        return True
    return any(isinstance(n, ir.Agg) for item in q.select for n in item.expr.walk()) or q.having is not None


def has_aggregates(q: ir.Query) -> bool:
    nodes = [item.expr for item in q.select] + ([q.having] if q.having is not None else []) + [e for e, _ in q.order]
    return bool(q.group) or any(isinstance(n, ir.Agg) for e in nodes for n in e.walk())


def validate(q: ir.Query, cat: Catalog) -> ir.Query:
    text = q.text

    def err(msg: str, node: object) -> SqlError:
        return SqlError(msg, text, getattr(node, "pos", 0))

    def regex(pattern: ir.Node, replacement: ir.Node | None) -> None:
        """A literal pattern (and literal replacement) compiles now, so a bad one never reaches a record."""
        if not isinstance(pattern, ir.Lit) or pattern.value is None:
            return
        try:
            check_regex(pattern.value)
        except SqlRuntimeError as e:
            raise err(str(e), pattern) from None
        if isinstance(replacement, ir.Lit) and replacement.value is not None:
            try:
                check_regex(pattern.value, replacement.value)
            except SqlRuntimeError as e:
                raise err(str(e), replacement) from None

    def check(node: ir.Node, where: str, agg_ok: bool, analytic_ok: bool) -> None:
        _size(node, err)
        if where in ("WHERE", "HAVING", "ON"):
            k = static_kind(node)
            if k is not None and k != "boolean":
                raise err(f"{where} takes a boolean: {sql_text(node)} is {a_or_an(k)}", node)
        for n in node.walk():
            _kinds(n, err)
            if isinstance(n, ir.Call):
                f = SCALARS.get(n.name)
                if f is None:
                    if n.name in cat.functions:
                        continue
                    raise err(f"unknown function {n.name!r}", n)
                if not f.lo <= len(n.args) <= f.hi:
                    want = f"{f.lo}" if f.lo == f.hi else f"{f.lo} to {f.hi}"
                    raise err(f"{n.name}() takes {want} argument{'s' if f.hi != 1 else ''}, got {len(n.args)}", n)
                if n.name in REGEX_ARGS:
                    i = REGEX_ARGS[n.name]
                    regex(n.args[i], n.args[i + 1] if n.name == "regexp_replace" else None)
            elif isinstance(n, ir.Like) and n.op == "regexp":
                regex(n.pattern, None)
            elif isinstance(n, ir.Agg):
                if not agg_ok:
                    raise err(f"aggregate {n.name}() is not allowed in {where}", n)
                lo, hi = ir.AGGREGATES[n.name]
                nargs = len(n.args) + (1 if n.star else 0)
                if not lo <= nargs <= hi:
                    count = lo if lo == hi else f"{lo} to {hi}"
                    raise err(f"{n.name}() takes {count} argument{'s' if hi > 1 else ''}", n)
                if n.star and n.name not in ("count", "collect"):
                    raise err(f"{n.name}(*) is not allowed", n)
                for a in n.args:
                    for m in a.walk():
                        if isinstance(m, ir.Agg) or (isinstance(m, ir.Analytic) and not per_record):
                            raise err(f"{m.name}() cannot be nested inside aggregate {n.name}()"
                                      + (" in a stream-stream join" if isinstance(m, ir.Analytic) else ""), m)
                        if isinstance(m, ir.WinFn):
                            raise err(f"window_{m.which}() cannot be used inside an aggregate", m)
                if n.name == "percentile":
                    p = n.args[1]
                    if not (isinstance(p, ir.Lit) and isinstance(p.value, (int, float))
                            and not isinstance(p.value, bool) and 0 <= p.value <= 1):
                        raise err("percentile(x, p) needs a constant p between 0 and 1", p)
            elif isinstance(n, ir.Analytic):
                if not (analytic_ok or (per_record and id(n) in per_record_sites)):
                    raise err(analytic_msg(n, where), n)
                lo, hi = ir.ANALYTIC[n.name]
                if not lo <= len(n.args) <= hi:
                    raise err(f"{n.name}() takes {lo} to {hi} arguments", n)
                if n.name == "lag" and len(n.args) > 1:
                    k = n.args[1]
                    if not (isinstance(k, ir.Lit) and isinstance(k.value, int) and not isinstance(k.value, bool)
                            and k.value > 0):
                        raise err("lag(x, n): n must be a positive integer constant", k)
                for a in n.args + n.partition:
                    for m in a.walk():
                        if isinstance(m, (ir.Agg, ir.Analytic)):
                            raise err(f"{m.name}() cannot be nested inside {n.name}()", m)
            elif isinstance(n, ir.WinFn):
                if q.window is None:
                    raise err(f"window_{n.which}() needs a window in GROUP BY", n)
                if where in ("WHERE", "ON", "GROUP BY"):
                    raise err(f"window_{n.which}() is not allowed in {where}", n)
            elif isinstance(n, ir.Field):
                schema = q.schemas.get(n.source)
                if schema is not None and n.path and n.path[0] not in schema:
                    raise err(f"table {n.source!r} has no column {n.path[0]!r} "
                              f"(columns: {', '.join(sorted(schema))})", n)
            elif isinstance(n, ir.Star) and where != "SELECT":
                raise err("'*' is only allowed as a SELECT item", n)

    aggregated = is_aggregated(q)
    grouping = has_aggregates(q)
    # analytic functions run per record, before WHERE and the window (as in eKuiper): in WHERE, GROUP BY keys,
    # aggregate arguments, and SELECT of queries that emit records (no aggregates); not in stream-stream joins
    per_record = len(q.streams) == 1
    per_record_sites = {id(m) for e in q.expressions() for n in e.walk() if isinstance(n, ir.Agg)
               for a in n.args for m in a.walk() if isinstance(m, ir.Analytic)}

    def under_keys(node: ir.Node) -> None:  # an expression equal to a GROUP BY key reads the key
        if node in q.group:
            per_record_sites.update(id(m) for m in node.walk() if isinstance(m, ir.Analytic))
            return
        for c in node.children():
            under_keys(c)

    for e in [item.expr for item in q.select] + [q.having] * (q.having is not None) + [e for e, _ in q.order]:
        under_keys(e)

    def analytic_msg(n: ir.Analytic, where: str) -> str:
        if not per_record:
            return f"{n.name}() is not supported in a stream-stream join"
        if where not in ("SELECT", "HAVING", "ORDER BY"):
            return f"{n.name}() is not allowed in {where}"
        return (f"{n.name}() is evaluated per record, before the window: in {where} of a query with aggregates "
                f"use it inside an aggregate (e.g. sum({n.name}(...))), in WHERE or in GROUP BY")

    for item in q.select:
        check(item.expr, "SELECT", grouping, per_record and not grouping)
    if q.where is not None:
        check(q.where, "WHERE", False, per_record)
    for g in q.group:
        check(g, "GROUP BY", False, per_record)
    for s in q.sources:
        if s.on is not None:
            check(s.on, "ON", False, False)
    if q.having is not None:
        if not grouping:
            raise err("HAVING needs GROUP BY keys or aggregates", q.having)
        check(q.having, "HAVING", True, False)
    for e, _ in q.order:
        check(e, "ORDER BY", grouping, False)
    if (q.order or q.limit is not None) and not aggregated:
        node = q.order[0][0] if q.order else None
        raise SqlError("ORDER BY and LIMIT apply to each window's rows: the query needs a window or GROUP BY", text,
                       node.pos if node is not None else len(text.rstrip()))

    if grouping:
        for item in q.select:
            if item.star:
                raise err("SELECT * cannot be combined with GROUP BY keys or aggregates", item)
        keys = q.group

        def grouped(node: ir.Node, where: str) -> None:
            if node in keys or isinstance(node, (ir.Agg, ir.Lit, ir.WinFn, ir.OutRef)):
                return
            if isinstance(node, ir.Field):
                raise err(f"column {'.'.join(map(str, node.path))!r} must be in GROUP BY or inside an aggregate "
                          f"({where})", node)
            for c in node.children():
                grouped(c, where)

        for item in q.select:
            grouped(item.expr, "SELECT")
        if q.having is not None:
            grouped(q.having, "HAVING")
        for e, _ in q.order:
            grouped(e, "ORDER BY")
    elif q.window is not None and q.window.kind in ("sliding", "session", "count"):
        # a window without aggregates emits the window's rows: these windows have none to emit
        raise SqlError(f"a {q.window.kind} window needs aggregates in SELECT", text, q.window.pos)

    if len(q.streams) > 1:
        if q.window is None or q.window.kind not in ("tumbling", "hopping"):
            # the other side is not a known table, so it is read as a stream: the user may have meant either
            other = q.streams[1].name
            raise SqlError(
                f"{other!r} is used as a stream, and joining two streams needs a TUMBLINGWINDOW or HOPPINGWINDOW "
                f"in GROUP BY. To join a lookup table, pass it as a table: --table {other}=PATH on the command "
                f"line, tables: {{{other}: {{file: PATH}}}} in the sql processor's config. To join two streams, "
                f"group by a window, e.g. GROUP BY TUMBLINGWINDOW(ss, 10)", text, q.streams[1].pos)
        if q.tables:
            raise SqlError("a query joins either streams or tables, not both", text, q.tables[0].pos)
    for s in q.sources[1:]:
        if s.on is None:
            raise SqlError(f"JOIN {s.alias} needs ON <condition>", text, s.pos)
    return q
