"""Lookup tables for stream-table joins, and the record readers the CLI shares.

A table is anything with ``rows() -> list[dict]`` (and ``columns``), a
list of dicts, or a callable returning one. ``load_table(spec)`` opens:

- ``devices.csv`` (header row; numbers become numbers, empty cells NULL),
- ``devices.jsonl`` / ``devices.json`` (one JSON object per line),
- ``sqlite:///path/to.db?table=devices`` or ``path/to.db#devices`` (a SQLite table).

File and SQLite tables re-read their source when ``refresh()`` is called
or, with ``auto_refresh=True``, whenever the file's mtime changes.
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
from pathlib import Path
from typing import Any, Iterator, Optional

from edgestream_hub.cells import convert_cell

from .errors import SqlError


def iter_records(path: str | Path, bad: Any = None) -> Iterator[dict]:
    """Records of a JSON-lines or CSV file (by extension). ``bad(raw, reason)`` gets unreadable lines."""
    p = Path(path)
    if p.suffix.lower() == ".csv":
        with p.open(newline="") as f:
            reader = csv.DictReader(f)
            for row in reader:
                if None in row:
                    if bad is not None:
                        bad(row, f"{p}:{reader.line_num}: more cells than header columns")
                    continue
                yield {k: convert_cell(v) if v is not None else None for k, v in row.items()}
        return
    with p.open(encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError as e:
                if bad is not None:
                    bad(line.rstrip("\n"), f"{p}:{n}: bad JSON: {e}")
                continue
            if not isinstance(rec, dict):
                if bad is not None:
                    bad(rec, f"{p}:{n}: a record must be a JSON object")
                continue
            yield rec


class FileTable:
    """A CSV or JSON-lines file as a lookup table."""

    def __init__(self, path: str | Path, auto_refresh: bool = False) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise SqlError(f"table file {self.path} does not exist")
        self.auto_refresh = auto_refresh
        self._rows: Optional[list] = None
        self._mtime = 0.0
        self.rejected = 0

    def _bad(self, raw: Any, reason: str) -> None:
        self.rejected += 1

    def refresh(self) -> None:
        self._mtime = os.stat(self.path).st_mtime
        self._rows = list(iter_records(self.path, self._bad))

    def rows(self) -> list:
        if self._rows is None or (self.auto_refresh and os.stat(self.path).st_mtime != self._mtime):
            self.refresh()
        return self._rows or []

    @property
    def columns(self) -> Optional[set]:
        cols: set = set()
        for r in self.rows():
            cols.update(r)
        return cols or None


class SqliteTable:
    """A SQLite table (read with a fresh connection on every refresh)."""

    def __init__(self, path: str | Path, table: str, auto_refresh: bool = False) -> None:
        self.path = Path(path)
        self.table = table
        if not self.path.exists():
            raise SqlError(f"SQLite file {self.path} does not exist")
        if not table.replace("_", "").isalnum():
            raise SqlError(f"bad SQLite table name {table!r}")
        self.auto_refresh = auto_refresh
        self._rows: Optional[list] = None
        self._mtime = 0.0
        self._cols: list = []

    def refresh(self) -> None:
        self._mtime = os.stat(self.path).st_mtime
        con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            cur = con.execute(f'SELECT * FROM "{self.table}"')
            self._cols = [d[0] for d in cur.description]
            self._rows = [dict(zip(self._cols, row)) for row in cur.fetchall()]
        except sqlite3.Error as e:
            raise SqlError(f"cannot read table {self.table!r} from {self.path}: {e}") from e
        finally:
            con.close()

    def rows(self) -> list:
        if self._rows is None or (self.auto_refresh and os.stat(self.path).st_mtime != self._mtime):
            self.refresh()
        return self._rows or []

    @property
    def columns(self) -> Optional[set]:
        self.rows()
        return set(self._cols) or None


def load_table(spec: str, auto_refresh: bool = False) -> Any:
    """Open a lookup table from a file path or a SQLite spec (see the module docstring)."""
    if spec.startswith("sqlite:"):
        rest = spec[len("sqlite:"):].lstrip("/") if spec.startswith("sqlite:///") is False else spec[len("sqlite://"):]
        path, _, query = rest.partition("?")
        table = dict(p.split("=", 1) for p in query.split("&") if "=" in p).get("table")
        if not table:
            raise SqlError(f"SQLite table spec needs ?table=NAME: {spec}")
        return SqliteTable(path, table, auto_refresh)
    if "#" in spec:
        path, table = spec.rsplit("#", 1)
        return SqliteTable(path, table, auto_refresh)
    return FileTable(spec, auto_refresh)
