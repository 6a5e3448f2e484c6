"""SQLite sink: one table, created from the schema, batched inserts in one transaction per batch.

Columns come from ``columns`` (name -> INTEGER, REAL, TEXT or JSON), from an
existing table, or from the first record. A record whose value has the wrong
type for its column, that has a field the table does not, or that SQLite
cannot bind (an integer beyond 64 bits, a string with a lone surrogate) goes
to the dead-letter sink with the reason; the rest of the batch is inserted. A
non-finite number (NaN, an infinity) is stored as NULL and counted in
``edgestream_sink_nonfinite_values_total``; JSON cells are written by
``jsonio`` (compact, non-finite numbers as null). The database's folder is
created.

With ``key`` (columns, e.g. ``[_id]``, the result id SQL window results carry)
the sink is idempotent: a unique index on those columns is created and every
row is an upsert (``INSERT ... ON CONFLICT (key) DO UPDATE``), so a result
written again after a restart replaces itself instead of doubling. A record
whose key column is missing or null goes to the dead-letter sink (NULLs are
never equal in a unique index). A record's ``_id`` that is not a column is left
out, not refused as an extra field.
"""

from __future__ import annotations

import os
import re
from typing import Any

from edgestream_hub import jsonio
from edgestream_hub.api import RESULT_ID
from edgestream_hub.components import ComponentContext, Sink
from edgestream_hub.errors import StartError
from edgestream_hub.registry import component
from edgestream_hub.spec import Checker, Field, Spec

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_TYPES = ("INTEGER", "REAL", "TEXT", "JSON")


def _infer(v: Any) -> str:
    if isinstance(v, (bool, int)):
        return "INTEGER"
    if isinstance(v, float):
        return "REAL"
    if isinstance(v, (dict, list)):
        return "JSON"
    return "TEXT"


_INT64 = (-(2**63), 2**63 - 1)


def _cell(col: str, t: str, v: Any) -> tuple[Any, int]:
    """``(value to bind, non-finite numbers written as NULL)``; raises TypeError/ValueError on a bad value."""
    if v is None:
        return None, 0
    if isinstance(v, float) and v - v != 0:  # NaN or an infinity, in any column: NULL, counted
        return None, 1
    if t == "INTEGER":
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"column {col!r} is INTEGER, got {type(v).__name__} {v!r}")
        if not _INT64[0] <= v <= _INT64[1]:
            raise ValueError(f"column {col!r}: {v} does not fit in SQLite's 64-bit INTEGER")
        return v, 0
    if t == "REAL":
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"column {col!r} is REAL, got {type(v).__name__} {v!r}")
        return float(v), 0  # an int too large for a float raises OverflowError
    if t == "TEXT":
        if not isinstance(v, str):
            raise TypeError(f"column {col!r} is TEXT, got {type(v).__name__} {v!r}")
        return v, 0
    return jsonio.dumps(v)


class SqliteSink(Sink):
    def __init__(self, config: dict[str, Any], ctx: ComponentContext) -> None:
        self.ctx = ctx
        self.path = ctx.resolve(config["path"])
        self.table = config["table"]
        self.cols: dict[str, str] | None = {k: v.upper() for k, v in config["columns"].items()} \
            if config["columns"] else None
        self.extra = config["extra"]
        self.key: list[str] = config["key"] or []
        self.con: Any = None
        self._insert = ""

    def open(self) -> None:

        try:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        except OSError as e:
            raise StartError(self.ctx.label, f"cannot create the folder of {self.path}: {e.strerror or e}") from e
        have = self._connect()
        if have:
            existing = {row[1]: (row[2] or "TEXT").upper() for row in have}
            if self.cols is None:
                self.cols = existing
            else:
                missing = [c for c in self.cols if c not in existing]
                if missing:
                    raise StartError(self.ctx.label, f"table {self.table!r} in {self.path} has no columns {missing}")
            missing = [c for c in self.key if c not in self.cols]
            if missing:
                raise StartError(self.ctx.label, f"table {self.table!r} in {self.path} has no key columns {missing}")
            self._prepare()
        elif self.cols is not None:
            self._create()

    def _connect(self) -> list[Any]:
        """Connect (WAL mode) and read the table's columns. Another process opening the same new database at
        the same moment (the workers of one hub) makes SQLite refuse the switch to WAL at once with "database
        is locked", without waiting for its busy timeout: that is tried again for up to 10 s."""
        import sqlite3
        import time

        deadline = time.monotonic() + 10.0
        pause = 0.01
        while True:
            con = None
            try:
                con = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
                con.execute("PRAGMA journal_mode=WAL")
                have: list[Any] = con.execute(f'PRAGMA table_info("{self.table}")').fetchall()
                self.con = con
                return have
            except sqlite3.OperationalError as e:
                if con is not None:
                    con.close()
                if "locked" not in str(e) and "busy" not in str(e) or time.monotonic() >= deadline:
                    raise StartError(self.ctx.label, f"cannot open SQLite database {self.path}: {e}") from e
                time.sleep(pause)
                pause = min(pause * 2, 0.2)
            except sqlite3.Error as e:
                if con is not None:
                    con.close()
                raise StartError(self.ctx.label, f"cannot open SQLite database {self.path}: {e}") from e

    def _create(self) -> None:
        assert self.cols is not None
        body = ", ".join(f'"{c}" {"TEXT" if t == "JSON" else t}' for c, t in self.cols.items())
        self.con.execute(f'CREATE TABLE IF NOT EXISTS "{self.table}" ({body})')
        self._prepare()

    def _prepare(self) -> None:
        import sqlite3

        assert self.cols is not None
        names = ", ".join(f'"{c}"' for c in self.cols)
        self._insert = f'INSERT INTO "{self.table}" ({names}) VALUES ({", ".join("?" * len(self.cols))})'
        if not self.key:
            return
        keys = ", ".join(f'"{c}"' for c in self.key)
        index = f"edgestream_key_{self.table}_{'_'.join(self.key)}"[:120]
        try:
            self.con.execute(f'CREATE UNIQUE INDEX IF NOT EXISTS "{index}" ON "{self.table}" ({keys})')
        except sqlite3.IntegrityError as e:
            raise StartError(self.ctx.label, f"cannot make key {self.key} unique in table {self.table!r} of "
                                             f"{self.path}: rows already share a key ({e}); remove the repeats or "
                                             "write to a new table") from e
        rest = [c for c in self.cols if c not in self.key]
        update = "DO UPDATE SET " + ", ".join(f'"{c}" = excluded."{c}"' for c in rest) if rest else "DO NOTHING"
        self._insert += f" ON CONFLICT ({keys}) {update}"

    def write(self, records: list[dict[str, Any]]) -> list[tuple[Any, str]]:
        if self.cols is None:
            first = next((r for r in records if isinstance(r, dict)), None)
            if first is None:
                return [(r, "sqlite sink: expected a record (mapping)") for r in records]
            bad = [k for k in first if not _IDENT.match(str(k))]
            self.cols = {k: _infer(v) for k, v in first.items() if k not in bad}
            for k in self.key:  # a key column the first record lacks is still a column
                self.cols.setdefault(k, "TEXT")
            self._create()
        cols = self.cols
        rows, sources, rejected = [], [], []
        nonfinite = 0
        for r in records:
            if not isinstance(r, dict):
                rejected.append((r, f"sqlite sink {self.ctx.label}: expected a record, got {type(r).__name__}"))
                continue
            try:
                if self.extra == "reject":
                    extra = [k for k in r if k not in cols and k != RESULT_ID]
                    if extra:
                        raise TypeError(f"fields {extra} are not columns of table {self.table!r}")
                for k in self.key:
                    if r.get(k) is None:
                        raise ValueError(f"key column {k!r} is missing or null (an upsert needs the whole key)")
                row = []
                for c, t in cols.items():
                    v, n = _cell(c, t, r.get(c))
                    row.append(v)
                    nonfinite += n
            except (TypeError, ValueError, ArithmeticError, RecursionError) as e:
                rejected.append((r, f"sqlite sink {self.ctx.label}: {e}"))
                continue
            rows.append(tuple(row))
            sources.append(r)
        if rows:
            rejected.extend(self._insert_rows(rows, sources))
        self.ctx.count(jsonio.NONFINITE_METRIC, nonfinite)
        return rejected

    def _insert_rows(self, rows: list[tuple[Any, ...]], sources: list[dict[str, Any]]) -> list[tuple[Any, str]]:
        """Insert in one transaction; if a row cannot be bound (a lone surrogate), redo the batch row by
        row and return the rows SQLite refused. Failures of the database itself raise (retried)."""
        import sqlite3

        con = self.con
        con.execute("BEGIN")
        try:
            con.executemany(self._insert, rows)
            con.execute("COMMIT")
            return []
        except (ValueError, ArithmeticError, sqlite3.InterfaceError, sqlite3.IntegrityError):
            con.execute("ROLLBACK")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        rejected = []
        con.execute("BEGIN")
        try:
            for row, r in zip(rows, sources):
                try:
                    con.execute(self._insert, row)
                except (ValueError, ArithmeticError, sqlite3.InterfaceError, sqlite3.IntegrityError) as e:
                    rejected.append((r, f"sqlite sink {self.ctx.label}: {type(e).__name__}: {e}"))
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
    key = cfg.get("key") or []
    for i, c in enumerate(key):
        if not _IDENT.match(c):
            chk.issue(f"{path}.key[{i}]", f"{c!r} is not a plain identifier")
        elif cfg.get("columns") and c not in cfg["columns"]:
            chk.issue(f"{path}.key[{i}]", f"key column {c!r} is not among `columns` (add it, e.g. {c}: TEXT)")
    if len(set(key)) != len(key):
        chk.issue(f"{path}.key", f"a column is named twice in {key}")


@component(Spec("sqlite", "Inserts records into a SQLite table (created if missing), one transaction per batch.", [
    Field("path", "str", "Database file (relative to the config file's folder)."),
    Field("table", "str", "Table name."),
    Field("columns", "map[str]", "Column -> INTEGER, REAL, TEXT or JSON (default: the existing table's, or "
          "inferred from the first record).", default=None),
    Field("extra", "str", "A record field that is not a column: `reject` it to the dead-letter sink or `ignore` "
          "the field (a result id `_id` that is not a column is always left out).", default="reject",
          choices=("reject", "ignore")),
    Field("key", "list[str]", "Columns that identify a row (e.g. `[_id]`, the result id of SQL window results): "
          "a unique index is created on them and each row is an upsert, so a result written again after a "
          "restart replaces itself. A record with a null key column goes to the dead-letter sink.", default=None,
          one_or_list=True),
], check=_check, example="""
sinks:
  db:
    sqlite: {path: hub.db, table: results, key: [_id], columns: {_id: TEXT, device: TEXT, n: INTEGER, total: REAL}}
    batch: {size: 1000, linger: 1s}
"""))
def sqlite_sink(config: dict[str, Any], ctx: ComponentContext) -> SqliteSink:
    return SqliteSink(config, ctx)
