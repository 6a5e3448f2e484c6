"""SQLite sink: one table, created from the schema, batched inserts in one transaction per batch.

Columns come from ``columns`` (name -> INTEGER, REAL, TEXT or JSON), from an
existing table, or from the first record. A record whose value has the wrong
type for its column, or that has a field the table does not, goes to the
dead-letter sink with the reason; the rest of the batch is inserted.
"""

from __future__ import annotations

import json
import re
from typing import Any

from edgestream_hub.components import ComponentContext, Sink
from edgestream_hub.errors import StartError
from edgestream_hub.registry import component
from edgestream_hub.spec import Checker, Field, Spec

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_TYPES = ("INTEGER", "REAL", "TEXT", "JSON")


def _infer(v: Any) -> str:
    if isinstance(v, bool) or isinstance(v, int):
        return "INTEGER"
    if isinstance(v, float):
        return "REAL"
    if isinstance(v, (dict, list)):
        return "JSON"
    return "TEXT"


def _cell(col: str, t: str, v: Any) -> Any:
    if v is None:
        return None
    if t == "INTEGER":
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"column {col!r} is INTEGER, got {type(v).__name__} {v!r}")
        return v
    if t == "REAL":
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v in (float("inf"), float("-inf")):
            raise TypeError(f"column {col!r} is REAL, got {type(v).__name__} {v!r}")
        return v
    if t == "TEXT":
        if not isinstance(v, str):
            raise TypeError(f"column {col!r} is TEXT, got {type(v).__name__} {v!r}")
        return v
    return json.dumps(v, allow_nan=False)


class SqliteSink(Sink):
    def __init__(self, config: dict[str, Any], ctx: ComponentContext) -> None:
        self.ctx = ctx
        self.path = ctx.resolve(config["path"])
        self.table = config["table"]
        self.cols: dict[str, str] | None = {k: v.upper() for k, v in config["columns"].items()} \
            if config["columns"] else None
        self.extra = config["extra"]
        self.con: Any = None
        self._insert = ""

    def open(self) -> None:
        import sqlite3

        try:
            self.con = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self.con.execute("PRAGMA journal_mode=WAL")
            have = self.con.execute(f'PRAGMA table_info("{self.table}")').fetchall()
        except sqlite3.Error as e:
            raise StartError(self.ctx.label, f"cannot open SQLite database {self.path}: {e}") from e
        if have:
            existing = {row[1]: (row[2] or "TEXT").upper() for row in have}
            if self.cols is None:
                self.cols = existing
            else:
                missing = [c for c in self.cols if c not in existing]
                if missing:
                    raise StartError(self.ctx.label, f"table {self.table!r} in {self.path} has no columns {missing}")
            self._prepare()
        elif self.cols is not None:
            self._create()

    def _create(self) -> None:
        assert self.cols is not None
        body = ", ".join(f'"{c}" {"TEXT" if t == "JSON" else t}' for c, t in self.cols.items())
        self.con.execute(f'CREATE TABLE IF NOT EXISTS "{self.table}" ({body})')
        self._prepare()

    def _prepare(self) -> None:
        assert self.cols is not None
        names = ", ".join(f'"{c}"' for c in self.cols)
        self._insert = f'INSERT INTO "{self.table}" ({names}) VALUES ({", ".join("?" * len(self.cols))})'

    def write(self, records: list[dict[str, Any]]) -> list[tuple[Any, str]]:
        if self.cols is None:
            first = next((r for r in records if isinstance(r, dict)), None)
            if first is None:
                return [(r, "sqlite sink: expected a record (mapping)") for r in records]
            bad = [k for k in first if not _IDENT.match(str(k))]
            self.cols = {k: _infer(v) for k, v in first.items() if k not in bad}
            self._create()
        cols = self.cols
        rows, rejected = [], []
        for r in records:
            if not isinstance(r, dict):
                rejected.append((r, f"sqlite sink {self.ctx.label}: expected a record, got {type(r).__name__}"))
                continue
            try:
                if self.extra == "reject":
                    extra = [k for k in r if k not in cols]
                    if extra:
                        raise TypeError(f"fields {extra} are not columns of table {self.table!r}")
                rows.append(tuple(_cell(c, t, r.get(c)) for c, t in cols.items()))
            except (TypeError, ValueError) as e:
                rejected.append((r, f"sqlite sink {self.ctx.label}: {e}"))
        if rows:
            con = self.con
            con.execute("BEGIN")
            try:
                con.executemany(self._insert, rows)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return rejected

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None


def _check(cfg: dict[str, Any], chk: Checker, path: str) -> None:
    from edgestream_hub.config import chk_output

    chk_output(chk, cfg["path"], f"{path}.path")
    if not _IDENT.match(cfg["table"]):
        chk.issue(f"{path}.table", f"{cfg['table']!r} is not a plain identifier ([A-Za-z_][A-Za-z0-9_]*)")
    for c, t in (cfg.get("columns") or {}).items():
        if not _IDENT.match(c):
            chk.issue(f"{path}.columns.{c}", f"{c!r} is not a plain identifier")
        if str(t).upper() not in _TYPES:
            chk.issue(f"{path}.columns.{c}", f"type {t!r} is not one of {', '.join(_TYPES)}")


@component(Spec("sqlite", "Inserts records into a SQLite table (created if missing), one transaction per batch.", [
    Field("path", "str", "Database file (relative to the config file's folder)."),
    Field("table", "str", "Table name."),
    Field("columns", "map[str]", "Column -> INTEGER, REAL, TEXT or JSON (default: the existing table's, or "
          "inferred from the first record).", default=None),
    Field("extra", "str", "A record field that is not a column: `reject` it to the dead-letter sink or `ignore` "
          "the field.", default="reject", choices=("reject", "ignore")),
], check=_check, example="""
sinks:
  db:
    sqlite: {path: hub.db, table: results, columns: {device: TEXT, sensor: TEXT, avg: REAL, ts: INTEGER}, extra: ignore}
    batch: {size: 1000, linger: 1s}
"""))
def sqlite_sink(config: dict[str, Any], ctx: ComponentContext) -> SqliteSink:
    return SqliteSink(config, ctx)
