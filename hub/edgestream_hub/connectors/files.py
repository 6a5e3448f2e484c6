"""File source (CSV or JSON lines; read once or follow) and file sink (JSON lines or CSV, rotation).

The source emits one record per line (CSV: per row, values that look like
numbers become numbers); a bad line goes to the dead-letter sink with its
line number and reading goes on. In ``follow`` mode it tails the file like
``tail -F``: it waits for new lines, and starts over when the file is
truncated or replaced (rotation). A half-written last line is held back until
its newline arrives.

The sink appends one line per record and rotates by size or age: the current
file is renamed to ``<stem>-<UTC time>-<n><suffix>`` and a new one is started;
``keep`` bounds how many rotated files are kept. JSON lines are encoded by one
encoder made at construction and written with one ``write`` per batch; a batch
holding a record that cannot be encoded (NaN, a type JSON lacks, a lone
surrogate) is redone record by record, so only that record is rejected.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

from edgestream_hub.cells import convert_cell
from edgestream_hub.components import ComponentContext, PollingSource, Sink
from edgestream_hub.errors import StartError
from edgestream_hub.registry import component
from edgestream_hub.spec import Checker, Field, Spec

Record = dict[str, Any]


def _format_of(path: str, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    return "csv" if path.lower().endswith(".csv") else "jsonl"


def json_line_encoder(ensure_ascii: bool = False) -> tuple[Callable[[Any], list[str]], Callable[[], None]]:
    """``(encode, reset)``: ``encode(record)`` gives the chunks of one compact JSON text
    (NaN and infinities refused with ValueError, unknown types with TypeError, cycles with
    ValueError), exactly what ``json.dumps(r, separators=(",", ":"), allow_nan=False,
    ensure_ascii=ensure_ascii)`` gives. ``reset()`` must be called after an encode raised
    (it clears the cycle markers the failed call left behind).

    Built once: ``json.dumps`` builds a new encoder for every call, which is half of
    its cost on small records.
    """
    from json import encoder as je

    default = je.JSONEncoder().default  # raises TypeError naming the type
    markers: dict[int, Any] = {}
    make = getattr(je, "c_make_encoder", None)
    if make is None:  # no C accelerator (another interpreter): the pure-Python encoder
        enc = je.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=ensure_ascii)

        def encode(r: Any) -> list[str]:
            return [enc.encode(r)]

        return encode, markers.clear
    strings = je.encode_basestring_ascii if ensure_ascii else je.encode_basestring
    c = make(markers, default, strings, None, ":", ",", False, False, False)

    def encode(r: Any) -> list[str]:
        return c(r, 0)

    return encode, markers.clear


class FileSource(PollingSource):
    """Reads a CSV or JSON-lines file once, or follows it as it grows."""

    def __init__(self, config: dict[str, Any], ctx: ComponentContext) -> None:
        super().__init__(ctx)
        self.path = ctx.resolve(config["path"])
        self.format = _format_of(self.path, config["format"])
        self.follow = config["mode"] == "follow"
        self.finite = not self.follow
        self.poll_s = config["poll_interval"] / 1000
        self.batch = config["batch"]
        self.convert = config["convert"]
        self.max_line = config["max_line"]
        self.start_at_end = config["start"] == "end"
        self._f: Any = None
        self._ino: int | None = None
        self._buf = b""
        self._lineno = 0
        self._header: list[str] | None = None
        self._missing_logged = False

    def open(self) -> None:
        if not self.follow:
            if not os.path.exists(self.path):
                raise StartError(self.ctx.label, f"file not found: {self.path}")
            self._open()

    def _open(self) -> bool:
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            if not self._missing_logged:
                self.ctx.log.warning("waiting for %s to appear", self.path)
                self._missing_logged = True
            return False
        except OSError as e:
            raise StartError(self.ctx.label, f"cannot open {self.path}: {e.strerror or e}") from e
        self._missing_logged = False
        if self._f is not None:
            self._f.close()
        self._f = f
        self._ino = os.fstat(f.fileno()).st_ino
        self._buf = b""
        self._lineno = 0
        self._header = None
        if self.start_at_end:
            self.start_at_end = False  # only the first open skips what is there
            if self.format == "csv":
                self._header_from(f.readline())
            f.seek(0, os.SEEK_END)
        return True

    def _header_from(self, line: bytes) -> None:
        self._lineno += 1
        row = next(csv.reader([line.decode("utf-8", "replace")]), [])
        self._header = [c.strip() for c in row]

    def _rotated(self) -> bool:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        return st.st_ino != self._ino or st.st_size < self._f.tell()

    def poll(self) -> tuple[list[Record], float | None]:
        if self._f is None and not self._open():
            return [], self.poll_s
        chunk = self._f.read(1 << 16)
        if not chunk:
            if not self.follow:
                if self._buf:  # a last line without newline
                    out = self._lines([self._buf])
                    self._buf = b""
                    return out, 0
                return [], None
            if self._rotated():
                self.ctx.log.info("%s was rotated or truncated: reading it from the start", self.path)
                self._open()
                return [], 0
            return [], self.poll_s
        data = self._buf + chunk
        lines = data.split(b"\n")
        self._buf = lines.pop()
        if len(self._buf) > self.max_line:
            self._lineno += 1
            self._reject(self._buf[:200], f"line {self._lineno}: longer than {self.max_line} bytes")
            self._buf = b""
        return self._lines(lines), 0

    def _reject(self, raw: Any, reason: str) -> None:
        self.ctx.count("edgestream_source_decode_errors_total")
        self.ctx.dead_letter(raw, f"{self.path}: {reason}")

    def _lines(self, lines: list[bytes]) -> list[Record]:
        out: list[Record] = []
        for raw in lines:
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            if self.format == "csv" and self._header is None:
                self._header_from(raw)
                continue
            self._lineno += 1
            if not raw.strip():
                continue
            if len(raw) > self.max_line:
                self._reject(raw[:200], f"line {self._lineno}: longer than {self.max_line} bytes")
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                self._reject(raw, f"line {self._lineno}: not UTF-8")
                continue
            if self.format == "jsonl":
                try:
                    r = json.loads(text)
                except ValueError as e:
                    self._reject(text, f"line {self._lineno}: not JSON ({e})")
                    continue
                if not isinstance(r, dict):
                    self._reject(text, f"line {self._lineno}: expected a JSON object, got {type(r).__name__}")
                    continue
            else:
                row = next(csv.reader([text]), [])
                hdr = self._header or []
                if len(row) != len(hdr):
                    self._reject(text, f"line {self._lineno}: {len(row)} columns, the header has {len(hdr)}")
                    continue
                r = {k: (convert_cell(v) if self.convert else v) for k, v in zip(hdr, row)}
            out.append(r)
        return out

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def _check_file_source(cfg: dict[str, Any], chk: Checker, path: str) -> None:
    from edgestream_hub.config import chk_file

    chk_file(chk, cfg["path"], f"{path}.path", must_exist=cfg["mode"] == "once")


@component(Spec("file", "Reads records from a CSV (header row first) or JSON-lines file.", [
    Field("path", "str", "The file (relative to the config file's folder)."),
    Field("format", "str", "`auto` picks csv for `.csv` files, jsonl otherwise.", default="auto",
          choices=("auto", "jsonl", "csv")),
    Field("mode", "str", "`once` reads to the end (the hub stops when every source is done); `follow` keeps "
          "reading new lines and survives rotation.", default="once", choices=("once", "follow")),
    Field("start", "str", "Where `follow` starts in an existing file.", default="beginning",
          choices=("beginning", "end")),
    Field("poll_interval", "duration", "How often `follow` checks for new lines.", default="200ms", min=1),
    Field("convert", "bool", "CSV: turn values that look like numbers into numbers, true/false into booleans, "
          "empty into null.",
          default=True),
    Field("batch", "int", "Most records emitted per read.", default=1000, min=1),
    Field("max_line", "size", "Longest accepted line.", default="1MiB"),
], check=_check_file_source, example="sources:\n  replay: {file: {path: readings.jsonl, mode: once}}"))
def file_source(config: dict[str, Any], ctx: ComponentContext) -> FileSource:
    return FileSource(config, ctx)


class FileSink(Sink):
    """Appends records as JSON lines or CSV rows, rotating by size or age."""

    def __init__(self, config: dict[str, Any], ctx: ComponentContext) -> None:
        self.ctx = ctx
        self.path = Path(ctx.resolve(config["path"]))
        self.format = _format_of(str(self.path), config["format"])
        self.rotate_size = config["rotate_size"]
        self.rotate_ms = config["rotate_interval"]
        self.keep = config["keep"]
        self.fsync = config["fsync"]
        self.columns: list[str] | None = config["columns"]
        self._cols: list[str] | None = None
        self._f: Any = None
        self._opened_at = 0.0
        self._size = 0  # bytes in the current file
        self._seq = 0
        self._encode, self._reset = json_line_encoder()

    def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._open()
        except OSError as e:
            raise StartError(self.ctx.label, f"cannot open {self.path}: {e.strerror or e}") from e

    def _open(self) -> None:
        self._f = open(self.path, "ab")
        self._size = self._f.tell()
        self._opened_at = time.monotonic()
        self._cols = self.columns
        if self.format == "csv" and self._size and self._cols is None:
            with open(self.path, newline="", encoding="utf-8") as f:
                self._cols = next(csv.reader(f), None)

    def _rotate(self) -> None:
        self._f.close()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        self._seq += 1
        target = self.path.with_name(f"{self.path.stem}-{stamp}-{self._seq}{self.path.suffix}")
        os.replace(self.path, target)
        if self.keep:
            old = sorted(self.path.parent.glob(f"{self.path.stem}-*{self.path.suffix}"), key=lambda p: p.stat().st_mtime)
            for p in old[:-self.keep]:
                p.unlink(missing_ok=True)
        self._open()

    def write(self, records: list[Record]) -> list[tuple[Any, str]]:
        if self._f is None:
            self._open()
        if self.rotate_ms and self._size and (time.monotonic() - self._opened_at) * 1000 >= self.rotate_ms:
            self._rotate()
        if self.format == "jsonl":
            data = self._jsonl_batch(records)
            if data is not None and not (self.rotate_size and self._size + len(data) >= self.rotate_size):
                self._f.write(data)  # the common case: one encoder pass, one write
                self._size += len(data)
                self._sync()
                return []
        rejected: list[tuple[Any, str]] = []
        parts: list[bytes] = []
        for r in records:
            try:
                line = self._line(r).encode("utf-8")
            except (TypeError, ValueError, RecursionError) as e:  # UnicodeEncodeError is a ValueError
                self._reset()
                rejected.append((r, f"file sink {self.ctx.label}: {e}"))
                continue
            parts.append(line)
            self._size += len(line)
            if self.rotate_size and self._size >= self.rotate_size:
                self._f.write(b"".join(parts))
                parts = []
                self._rotate()
        if parts:
            self._f.write(b"".join(parts))
        self._sync()
        return rejected

    def _jsonl_batch(self, records: list[Record]) -> bytes | None:
        """The whole batch as JSON lines, or None if some record cannot be written."""
        enc = self._encode
        chunks: list[str] = []
        extend, append = chunks.extend, chunks.append
        try:
            for r in records:
                if not isinstance(r, dict):
                    return None
                extend(enc(r))
                append("\n")
            return "".join(chunks).encode("utf-8")
        except (TypeError, ValueError, RecursionError):
            self._reset()
            return None

    def _sync(self) -> None:
        self._f.flush()
        if self.fsync:
            os.fsync(self._f.fileno())

    def _line(self, r: Record) -> str:
        if not isinstance(r, dict):
            raise TypeError(f"expected a record (mapping), got {type(r).__name__}")
        if self.format == "jsonl":
            return "".join(self._encode(r)) + "\n"
        if self._cols is None:
            self._cols = list(r)
        extra = [k for k in r if k not in self._cols]
        if extra:
            raise ValueError(f"fields {extra} are not among the CSV columns {self._cols}")
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        if self._size == 0 and not buf.tell():
            w.writerow(self._cols)
        w.writerow(["" if r.get(c) is None else (json.dumps(r[c], allow_nan=False)
                                                  if isinstance(r[c], (dict, list)) else r[c]) for c in self._cols])
        return buf.getvalue()

    def flush(self) -> None:
        if self._f is not None:
            self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def _check_file_sink(cfg: dict[str, Any], chk: Checker, path: str) -> None:
    from edgestream_hub.config import chk_output

    chk_output(chk, cfg["path"], f"{path}.path")


@component(Spec("file", "Appends records to a JSON-lines or CSV file, with size- or time-based rotation. A record "
                "that cannot be written (NaN, a CSV row with unknown fields) goes to the dead-letter sink.", [
    Field("path", "str", "The file (relative to the config file's folder); its folder is created."),
    Field("format", "str", "`auto` picks csv for `.csv` files, jsonl otherwise.", default="auto",
          choices=("auto", "jsonl", "csv")),
    Field("columns", "list[str]", "CSV columns (default: the first record's fields).", default=None),
    Field("rotate_size", "size", "Rotate when the file reaches this size.", default=None),
    Field("rotate_interval", "duration", "Rotate when the file is this old.", default=None),
    Field("keep", "int", "Rotated files to keep (0: all).", default=0, min=0),
    Field("fsync", "bool", "fsync after every batch (slower, survives power loss).", default=False),
], check=_check_file_sink, example="sinks:\n  archive: {file: {path: out/results.jsonl, rotate_size: 10MB, keep: 5}}"))
def file_sink(config: dict[str, Any], ctx: ComponentContext) -> FileSink:
    return FileSink(config, ctx)
