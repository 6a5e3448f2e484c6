"""Built-in processors: ``passthrough``, ``filter``, ``map`` and ``sql``.

They follow ``edgestream_hub.api.Processor``. ``filter`` and ``map`` send a
record whose field is missing or of the wrong type to the dead-letter sink
with the reason instead of failing the batch. Input records are never
mutated (a source may feed several pipelines the same dicts).
"""

from __future__ import annotations

import operator
from typing import Any

from edgestream_hub.api import Context, Record
from edgestream_hub.registry import component
from edgestream_hub.spec import Checker, Field, Spec
from edgestream_hub.sql.keys import equal


class Passthrough:
    """Emits every record unchanged, in order."""

    def process(self, records: list[Record], now_ms: int) -> list[Record]:
        return records

    def tick(self, now_ms: int) -> list[Record]:
        return []

    def flush(self) -> list[Record]:
        return []

    def snapshot(self) -> Any:
        return None


@component(Spec("passthrough", "Emits every record unchanged (for wiring and benchmarks).", [],
                example="processors:\n  - passthrough: {}"))
def passthrough(config: dict[str, Any], ctx: Context) -> Passthrough:
    return Passthrough()


def _ne(a: Any, b: Any) -> bool:
    return not equal(a, b)


#: eq, ne and in compare as SQL's = does (``keys.equal``): a boolean is not a number, so ``eq: 1`` keeps 1
#: and 1.0 but not true; arrays and objects are equal when their contents are
_OPS = {"eq": equal, "ne": _ne, "gt": operator.gt, "ge": operator.ge, "lt": operator.lt, "le": operator.le}
_NUMERIC = ("gt", "ge", "lt", "le")


class Filter(Passthrough):
    """Keeps records whose ``field`` compares true; a missing field or a value that cannot be
    compared (a string against a number) sends the record to the dead-letter sink. Equality is the SQL
    engine's: ``eq: 1`` keeps 1 and 1.0, never ``true``."""

    def __init__(self, field: str, op: str, value: Any, ctx: Context, missing: str = "dead_letter") -> None:
        self.field, self.op, self.value, self.ctx, self.missing = field, op, value, ctx, missing
        self._fn = _OPS.get(op)
        self._numeric = op in _NUMERIC

    def process(self, records: list[Record], now_ms: int) -> list[Record]:
        f, v, fn, out = self.field, self.value, self._fn, []
        for r in records:
            try:
                x = r[f]
            except (KeyError, TypeError):
                if self.missing == "dead_letter":
                    self.ctx.dead_letter(r, f"filter: field {f!r} is missing")
                continue
            if fn is None:  # in, exists: the ops without a comparison function
                if self.op == "exists" or any(equal(x, y) for y in v):
                    out.append(r)
                continue
            if self._numeric and (type(x) not in (int, float) or x != x):
                self.ctx.dead_letter(r, f"filter: field {f!r} is {type(x).__name__} {x!r}, expected a number")
                continue
            if fn(x, v):
                out.append(r)
        return out


def _ops(cfg: dict[str, Any]) -> list[str]:
    return [k for k in (*_OPS, "in") if cfg.get(k) is not None] + (["exists"] if cfg.get("exists") else [])


def _check_filter(cfg: dict[str, Any], chk: Checker, path: str) -> None:
    ops = _ops(cfg)
    if len(ops) != 1:
        chk.issue(path, "filter needs exactly one of eq, ne, gt, ge, lt, le, in, exists "
                        f"(got {', '.join(ops) or 'none'})")
        return
    op = ops[0]
    if op in _NUMERIC and (isinstance(cfg[op], bool) or not isinstance(cfg[op], (int, float))):
        chk.issue(f"{path}.{op}", f"expected a number, got {cfg[op]!r}")
    if op == "in" and not isinstance(cfg[op], list):
        chk.issue(f"{path}.in", "expected a list of values")


FILTER_SPEC = Spec("filter", "Keeps the records whose field passes one comparison. A record without the field, or "
                   "with a non-number where a number is compared, goes to the dead-letter sink.", [
    Field("field", "str", "The field to test."),
    *(Field(op, "any", f"Keep records whose field is {word} this value.", default=None)
      for op, word in (("eq", "equal to"), ("ne", "not equal to"), ("gt", "greater than"),
                       ("ge", "greater than or equal to"), ("lt", "less than"), ("le", "less than or equal to"))),
    Field("in", "any", "Keep records whose field is one of these values (a list).", default=None),
    Field("exists", "bool", "Keep records that have the field.", default=False),
    Field("missing", "str", "What to do with a record without the field.", default="dead_letter",
          choices=("dead_letter", "drop")),
], check=_check_filter, example="processors:\n  - filter: {field: avg, gt: 4.0}")


@component(FILTER_SPEC)
def filter_processor(config: dict[str, Any], ctx: Context) -> Filter:
    op = _ops(config)[0]
    return Filter(config["field"], op, config[op], ctx, config["missing"])


class Map(Passthrough):
    """Per record, in this order: ``rename``, ``scale`` (numbers only, else dead letter),
    ``set`` constants, ``drop`` and ``keep`` fields. Emits new dicts."""

    def __init__(self, rename: dict[str, str], scale: dict[str, float], set_: dict[str, Any], drop: list[str],
                 keep: list[str] | None, ctx: Context) -> None:
        self.rename, self.scale, self.set, self.drop, self.keep, self.ctx = rename, scale, set_, drop, keep, ctx

    def process(self, records: list[Record], now_ms: int) -> list[Record]:
        out = []
        for r in records:
            n = dict(r)
            for a, b in self.rename.items():
                if a in n:
                    n[b] = n.pop(a)
            bad = None
            for f, k in self.scale.items():
                if f in n:
                    x = n[f]
                    if x is None:
                        continue
                    if type(x) not in (int, float):
                        bad = f"map: cannot scale field {f!r}: {type(x).__name__} {x!r} is not a number"
                        break
                    n[f] = x * k
            if bad:
                self.ctx.dead_letter(r, bad)
                continue
            n.update(self.set)
            for f in self.drop:
                n.pop(f, None)
            if self.keep is not None:
                n = {k: n[k] for k in self.keep if k in n}
            out.append(n)
        return out


@component(Spec("map", "Reshapes records: rename, scale, set, drop or keep fields.", [
    Field("rename", "map[str]", "Old name -> new name.", default={}),
    Field("scale", "map[float]", "Field -> factor to multiply it by (a non-number goes to the dead-letter sink).",
          default={}),
    Field("set", "map[any]", "Field -> constant value to set.", default={}),
    Field("drop", "list[str]", "Fields to remove.", default=[]),
    Field("keep", "list[str]", "Keep only these fields (after the steps above).", default=None),
], example="processors:\n  - map: {rename: {avg: temp_c}, scale: {temp_c: 1.0}, drop: [boot]}"))
def map_processor(config: dict[str, Any], ctx: Context) -> Map:
    return Map(config["rename"], config["scale"], config["set"], config["drop"], config["keep"], ctx)


# ---------------------------------------------------------------- sql

TABLE_SPEC = Spec("table", "A lookup table for SQL joins: a CSV file or a SQLite table, reloaded every `refresh`.", [
    Field("file", "str", "CSV file with a header row.", default=None),
    Field("sqlite", "object", "A table in a SQLite file.", default=None, spec=Spec("sqlite table", "", [
        Field("path", "str", "SQLite database file."),
        Field("table", "str", "Table name."),
    ])),
    Field("refresh", "duration", "How often the table is reloaded.", default="60s"),
])


def _check_table(cfg: dict[str, Any], chk: Checker, path: str) -> None:
    from edgestream_hub.config import chk_file

    if (cfg.get("file") is None) == (cfg.get("sqlite") is None):
        chk.issue(path, "a table needs exactly one of `file` or `sqlite`")
        return
    if cfg.get("file"):
        cfg["file"] = chk_file(chk, cfg["file"], f"{path}.file")
    else:
        cfg["sqlite"]["path"] = chk_file(chk, cfg["sqlite"]["path"], f"{path}.sqlite.path")


TABLE_SPEC.check = _check_table

SQL_SPEC = Spec("sql", "Streaming SQL over the pipeline's records (see the SQL docs): the stream is the "
                "query's FROM table, windows use the event time in `time_field`, lookup tables and the "
                "`edgestream.functions` plugins (UDFs) are available to the query.", [
    Field("query", "str", "The SQL query."),
    Field("time_field", "str", "Event-time field (milliseconds).", default="ts"),
    Field("lateness", "duration", "How late a record may arrive before its window closes.", default="0ms"),
    Field("idle_timeout", "duration", "Close windows by wall clock after this long without input.", default=None),
    Field("processing_time", "bool", "Window by arrival time instead of event time.", default=False),
    Field("tables", "map[object]", "Lookup tables by name, reloaded every `refresh` (on the pipeline's tick).",
          default={}, spec=TABLE_SPEC),
    Field("id_field", "str", "The field that carries each window result's stable id (16 hex digits from the "
          "pipeline, processor, window start and end, and group key; docs/hub.md, Result ids), so a sink can "
          "upsert on it; empty: no ids.", default="_id"),
    Field("max_keys", "int", "Most states held at once: groups per window (tumbling, hopping, GROUP BY without a "
          "window), sessions, sliding or count-window groups, windows of rows or of a join. Unbounded when unset.",
          default=None, min=1),
    Field("max_state_bytes", "size", "Most bytes of held values (holistic aggregates such as collect, median, "
          "count DISTINCT; buffered records of sliding and count windows, windows of rows and joins), as the "
          "state gauge estimates them, read every 4096 records. Unbounded when unset.", default=None, min=1),
    Field("on_limit", "str", "At a bound: `emit_early` closes the oldest states and emits their rows now, marked "
          "`_early: true`; `dead_letter` sends the records that would grow the state to the dead-letter sink "
          "until windows close.", default="emit_early", choices=("emit_early", "dead_letter")),
], shorthand="query", example="""
processors:
  - sql:
      query: |
        SELECT r.room, device, avg(avg) AS mean, count(*) AS n
        FROM input JOIN rooms r ON r.device = input.device
        GROUP BY r.room, device, TUMBLINGWINDOW(ss, 60)
      lateness: 2s
      tables: {rooms: {file: rooms.csv, refresh: 60s}}
""")


def _check_sql(cfg: dict[str, Any], chk: Checker, path: str) -> None:
    """Build the processor exactly as ``hub run`` will (compiling the query against its tables, options
    and the registry's functions) and throw it away: a query ``run`` refuses is a config error here. A query
    that compiled before under the same key (``edgestream_hub.checkcache``) is not compiled again."""
    if not str(cfg.get("query") or "").strip():
        chk.issue(f"{path}.query", "the SQL query is empty")
        return
    from edgestream_hub import checkcache

    key = checkcache.key(cfg, chk.registry)
    if checkcache.known(key):
        return
    from edgestream_hub.components import ComponentContext
    from edgestream_hub.errors import EdgeStreamError
    from edgestream_hub.sql.errors import SqlError

    ctx = ComponentContext("processor", path, path, base_dir=chk.base_dir, registry=chk.registry)
    try:
        sql_processor(cfg, ctx)
        checkcache.remember(key)
    except SqlError as e:
        if e.offset is None:
            chk.issue(path, str(e))
        else:
            excerpt = "\n".join("    " + part for part in e.excerpt.split("\n"))
            chk.issue(f"{path}.query", f"{e.message} (query line {e.line}, column {e.column})\n{excerpt}")
    except EdgeStreamError as e:
        chk.issue(path, str(e))


SQL_SPEC.check = _check_sql


class RefreshingSql:
    """The SQL processor plus its lookup tables' refresh: ``tick`` reloads them every ``refresh``
    (a table that fails to load keeps its old rows and the error is logged)."""

    def __init__(self, proc: Any, refresh_ms: int | None, ctx: Any) -> None:
        self.proc, self.refresh_ms, self.ctx = proc, refresh_ms, ctx
        self._last: int | None = None
        if hasattr(proc, "state_stats"):  # the engine exports it when the processor has it
            self.state_stats = proc.state_stats
        if hasattr(proc, "state_summary"):
            self.state_summary = proc.state_summary

    def process(self, records: list[Record], now_ms: int) -> list[Record]:
        return self.proc.process(records, now_ms)

    def tick(self, now_ms: int) -> list[Record]:
        if self.refresh_ms is not None:
            if self._last is None:
                self._last = now_ms
            elif now_ms - self._last >= self.refresh_ms:
                self._last = now_ms
                try:
                    self.proc.refresh_tables()
                except Exception as e:
                    log = getattr(self.ctx, "log", None)
                    if log is not None:
                        log.error("lookup table refresh failed (keeping the old rows): %s", e)
        return self.proc.tick(now_ms)

    def flush(self) -> list[Record]:
        return self.proc.flush()

    def snapshot(self) -> Any:
        return self.proc.snapshot()

    def checkpoint_snapshot(self) -> Any:
        return self.proc.checkpoint_snapshot()


@component(SQL_SPEC)
def sql_processor(config: dict[str, Any], ctx: Any) -> Any:
    from edgestream_hub.sql.processor import SqlProcessor

    tables: dict[str, Any] = {}
    if config["tables"]:
        from edgestream_hub.sql.tables import FileTable, SqliteTable

        for name, t in config["tables"].items():
            tables[name] = FileTable(t["file"]) if t.get("file") else SqliteTable(t["sqlite"]["path"],
                                                                                   t["sqlite"]["table"])
    functions = dict(ctx.registry.functions) if getattr(ctx, "registry", None) is not None else {}
    proc = SqlProcessor(config["query"], ctx, time_field=config["time_field"], lateness_ms=config["lateness"],
                        idle_timeout_ms=config["idle_timeout"], processing_time=config["processing_time"],
                        tables=tables or None, functions=functions or None,
                        resume_state=getattr(ctx, "resume_state", None), id_field=config["id_field"],
                        id_scope=f"{getattr(ctx, 'pipeline', None) or ''}/{ctx.label}", max_keys=config["max_keys"],
                        max_state_bytes=config["max_state_bytes"], on_limit=config["on_limit"])
    refresh = min((t["refresh"] for t in config["tables"].values()), default=None)
    return RefreshingSql(proc, refresh, ctx) if refresh is not None else proc
