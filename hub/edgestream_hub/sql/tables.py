"""Lookup tables for stream-table joins, and the record readers the CLI shares.

A table is anything with ``rows() -> list[dict]`` (and ``columns``), a
list of dicts, or a callable returning one. ``load_table(spec)`` opens:

- ``devices.csv`` (header row; read by the hub's one CSV rule, ``edgestream_hub.cells``),
- ``devices.jsonl`` / ``devices.json`` (one JSON object per line),
- ``sqlite:///path/to.db?table=devices`` or ``path/to.db#devices`` (a SQLite table).

File and SQLite tables re-read their source when ``refresh()`` is called
or, with ``auto_refresh=True``, whenever the file's mtime changes.
"""

from __future__ import annotations

import os
import select
import sqlite3
import sys
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Optional

from edgestream_hub.cells import CsvRows
from edgestream_hub.jsonio import loads_lines
from edgestream_hub.progress import byte_position, byte_size

from .errors import SqlError


class InputError(SqlError):
    """An input that cannot be read as text at all: names the file and the line."""

    def __init__(self, path: str, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}")
        self.path, self.line_number, self.reason = path, line, reason


class RecordReader:
    """The records of one input, read a chunk at a time (never the whole file).

    JSON lines (one object per line, strict JSON: ``edgestream_hub.jsonio``), or
    CSV when the path ends in ``.csv``; ``-`` is stdin, read as JSON lines. Text
    must be UTF-8 (a leading byte-order mark is dropped): anything else raises
    :class:`InputError` naming the file and the line, since nothing after it
    can be trusted. A line that is not a record goes to ``bad(raw, reason)``
    (the reason starts with ``file:line:``) and reading goes on.
    """

    #: bytes asked of the input at a time (one read; a pipe returns what it holds)
    CHUNK = 1 << 16

    def __init__(self, path: str | Path, bad: Optional[Callable[[Any, str], None]] = None) -> None:
        self.path = str(path)
        self.stdin = self.path == "-"
        self.name = "<stdin>" if self.stdin else self.path
        self.csv = not self.stdin and Path(self.path).suffix.lower() == ".csv"
        self.bad = bad
        self._f: Optional[BinaryIO] = None
        self._left = 0  # records (or CSV lines) read and not handed on yet

    def open(self) -> "RecordReader":
        """Open now (errors surface here, as ``OSError``), before any record is read."""
        self._file()
        return self

    def _file(self) -> BinaryIO:
        """The input, opened on first use."""
        if self._f is None:
            # unbuffered: this reader keeps the only buffer, so ready() can tell what is waiting
            self._f = open(sys.stdin.fileno() if self.stdin else self.path, "rb", buffering=0,
                           closefd=not self.stdin)
        return self._f

    @property
    def size(self) -> Optional[int]:
        """Bytes in the file when that is known (a regular file), else None."""
        return byte_size(self._file())

    def position(self) -> Optional[int]:
        """Bytes read so far (None when the input cannot tell, like a pipe)."""
        return byte_position(self._f)

    def ready(self) -> bool:
        """Whether the next line is there without waiting (always, for a file; a pipe may be idle)."""
        if self._left or self._f is None or self._f.closed:
            return True
        try:
            return bool(select.select([self._f], [], [], 0)[0])
        except (OSError, ValueError):
            return True

    def close(self) -> None:
        if self._f is not None:
            self._f.close()

    def _chunks(self) -> Iterator[list[bytes]]:
        """The complete lines each read brought (without their newline), a read at a time; the last line
        once the input ends."""
        f, rest = self._file(), b""
        while True:
            chunk = f.read(self.CHUNK)
            if not chunk:
                if rest:
                    yield [rest]
                return
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            if lines:
                yield lines

    def _raw_lines(self) -> Iterator[bytes]:
        for lines in self._chunks():
            self._left = len(lines)
            for line in lines:
                self._left -= 1
                yield line

    def _lines(self) -> Iterator[str]:
        """Text lines without their newline; bad UTF-8 raises InputError naming the file and the line."""
        for n, raw in enumerate(self._raw_lines(), 1):
            yield self._text(raw, n)

    def _text(self, raw: bytes, n: int) -> str:
        """Line ``n`` as text (a byte-order mark dropped from the first); bad UTF-8 raises InputError."""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(self.name, n, f"not UTF-8 text ({e.reason} at byte {e.start} of the line)") from e
        if n == 1 and text[:1] == "\ufeff":
            text = text[1:]
        return text

    def __iter__(self) -> Iterator[dict]:
        if self.csv:
            try:
                yield from self._csv()
            finally:
                self.close()
            return
        for batch in self.batches():
            self._left = len(batch)
            for rec in batch:
                self._left -= 1
                yield rec

    def batches(self) -> Iterator[list[dict]]:
        """The records a read at a time (a list per read of the input; JSON lines are parsed together)."""
        try:
            if self.csv:
                for rec in self._csv():
                    yield [rec]
            else:
                yield from self._jsonl()
        finally:
            self.close()

    def _csv(self) -> Iterator[dict]:
        """Records by the hub's one CSV rule (``edgestream_hub.cells``); a refused one goes to ``bad``."""
        rows = CsvRows()
        for n, line in enumerate(self._lines(), 1):
            try:
                rec = rows.feed(line, n)
            except ValueError as e:
                if self.bad is not None:
                    self.bad(rows.refused, f"{self.name}:{rows.start}: {e}")
                continue
            if rec is not None:
                yield rec
        try:
            rows.finish()
        except ValueError as e:
            if self.bad is not None:
                self.bad(rows.refused, f"{self.name}:{rows.start}: {e}")

    def _jsonl(self) -> Iterator[list[dict]]:
        """One list of records per chunk: its lines parsed together (``jsonio.loads_lines``), each line as
        ``loads`` would read it. A blank line is skipped; a line that is not UTF-8 raises InputError; one
        that is not a JSON object goes to ``bad``."""
        bad, name, first = self.bad, self.name, 1  # first: the number of the chunk's first line
        for lines in self._chunks():
            values = loads_lines(lines)
            out = [v for v in values if v.__class__ is dict]
            if len(out) < len(values):  # a refused line, a blank one or a value that is not an object
                out = []
                for i, value in enumerate(values):
                    if value.__class__ is dict:
                        out.append(value)
                        continue
                    n = first + i
                    if isinstance(value, ValueError):
                        line = self._text(lines[i], n)
                        if line.strip() and bad is not None:
                            bad(line.rstrip("\r"), f"{name}:{n}: bad JSON: {value}")
                    elif bad is not None:
                        bad(value, f"{name}:{n}: a record must be a JSON object")
            first += len(lines)
            yield out


def iter_records(path: str | Path, bad: Optional[Callable[[Any, str], None]] = None) -> Iterator[dict]:
    """Records of a JSON-lines or CSV file (see :class:`RecordReader`); ``bad(raw, reason)`` gets unreadable lines."""
    return iter(RecordReader(path, bad))


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
