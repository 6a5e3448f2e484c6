"""File source (CSV or JSON lines; read once or follow) and file sink (JSON lines or CSV, rotation).

The source emits one record per line (CSV: per record, read by the hub's one
CSV rule in ``edgestream_hub.cells``: quoted cells may span lines, JSON numbers
become numbers); a bad line (not UTF-8, not strict JSON, anything its
decoding raises) goes to the dead-letter sink with its line number, through
``Ingest`` like every source's refusals, and reading goes on. In ``follow``
mode it tails the file like ``tail -F``: it waits for new lines, and starts
over when the file is truncated or replaced (rotation). A half-written last
line is held back until its newline arrives.

The sink appends one line per record and rotates by size or age: the current
file is renamed to ``<stem>-<UTC time>-<n><suffix>`` and a new one is started.
``n`` counts rotations: each is one more than the largest ``n`` already in the
folder, so it goes on across restarts, and ``keep`` keeps the ``keep`` files
with the largest ``n`` (the UTC time only informs: a gateway's clock may jump
back). Only regular files named exactly so (ASCII digits) are ever deleted, never
the file just rotated; a file that cannot be deleted is logged once and writing
goes on. A sink that receives dead letters and sets no rotation
rotates at 10 MiB and keeps 5. JSON lines are encoded in one pass per batch
(``jsonio.dump_lines`` with orjson installed, else one stdlib encoder made at
construction) and written with one ``write`` per batch; a batch holding a record
that needs more (a non-finite number, written as null and counted; a type JSON
lacks or a lone surrogate, rejected) is redone record by record, so only that
record is rejected.

On a replay (a restart after a crash) the sink appends what the hub emits
again: results written after the last checkpoint may appear twice in the file
(never missing), each time with the same result id ``_id``, so a reader that
keeps the last line per ``_id`` reads every result exactly once. A CSV sink with
fixed ``columns`` that lack ``_id`` leaves it out instead of refusing the record.
"""

from __future__ import annotations

import csv
import io
import os
import re
import time
from pathlib import Path
from typing import Any, Callable

from edgestream_hub import deadletter, jsonio
from edgestream_hub.api import RESULT_ID
from edgestream_hub.cells import CsvRows
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

        def encode_pure(r: Any) -> list[str]:
            return [enc.encode(r)]

        return encode_pure, markers.clear
    strings = je.encode_basestring_ascii if ensure_ascii else je.encode_basestring
    c = make(markers, default, strings, None, ":", ",", False, False, False)

    def encode(r: Any) -> list[str]:
        return c(r, 0)

    return encode, markers.clear


def encode_finite(encode: Callable[[Any], list[str]], reset: Callable[[], None], r: Any) -> tuple[str, int]:
    """``(JSON text of r, how many non-finite numbers it wrote as null)`` with a ``json_line_encoder``;
    other faults (a type JSON lacks, a cycle) raise as ``encode`` raises them."""
    try:
        return "".join(encode(r)), 0
    except ValueError as e:
        reset()
        if not str(e).startswith("Out of range float"):
            raise
        clean, n = jsonio.finite(r)
        return "".join(encode(clean)), n


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
        from edgestream_hub.ingest import Ingest  # imported by a source that runs (`hub check` makes none)

        self.ingest = Ingest(ctx, "json")
        self._f: Any = None
        self._ino: int | None = None
        self._buf = b""
        self._skipping = False  # dropping the rest of a line already refused as too long
        self._lineno = 0
        self._csv = CsvRows(self.convert, self.max_line)
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
            if self._csv.holding:
                start = self._csv.start
                self._reject(self._csv.abandon(), f"line {start}: the file was replaced while the record's quoted "
                                                  "cell was open")
        self._f = f
        self._ino = os.fstat(f.fileno()).st_ino
        self._buf = b""
        self._skipping = False
        self._lineno = 0
        self._csv = CsvRows(self.convert, self.max_line)
        if self.start_at_end:
            self.start_at_end = False  # only the first open skips what is there
            if self.format == "csv":
                self._lines([f.readline().rstrip(b"\n")])  # the header
            f.seek(0, os.SEEK_END)
        return True

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
                out = self._lines([self._buf]) if self._buf and not self._skipping else []  # a last line
                self._buf = b""
                if self.format == "csv":
                    try:
                        self._csv.finish()
                    except ValueError as e:
                        self._reject(self._csv.refused, f"line {self._csv.start}: {e}")
                return out, (0 if out else None)
            if self._rotated():
                self.ctx.log.info("%s was rotated or truncated: reading it from the start", self.path)
                self._open()
                return [], 0
            return [], self.poll_s
        data = self._buf + chunk
        if self._skipping:  # the rest of a line refused as too long: not a line of its own
            nl = data.find(b"\n")
            if nl < 0:
                self._buf = b""
                return [], 0
            data = data[nl + 1:]
            self._skipping = False
        lines = data.split(b"\n")
        self._buf = lines.pop()
        out = self._lines(lines)
        if len(self._buf) > self.max_line:  # a line too long, its newline not here yet
            self._lineno += 1
            self._reject(self._buf, f"line {self._lineno}: longer than {self.max_line} bytes")
            self._buf = b""
            self._skipping = True
        return out, 0

    def _reject(self, raw: Any, reason: str) -> None:
        self.ingest.reject(raw, f"{self.path}: {reason}")

    def _lines(self, lines: list[bytes]) -> list[Record]:
        out: list[Record] = []
        csv_rows = self._csv if self.format == "csv" else None
        for raw in lines:
            self._lineno += 1
            if len(raw) > self.max_line:
                self._reject(raw, f"line {self._lineno}: longer than {self.max_line} bytes")
                continue
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            if csv_rows is not None:
                r = self._csv_line(csv_rows, raw)
            elif not raw.strip():
                continue
            else:
                r = self.ingest.json_object(raw, f"{self.path}: line {self._lineno}")
            if r is not None:
                out.append(r)
        return out

    def _csv_line(self, rows: CsvRows, raw: bytes) -> Record | None:
        """One CSV line -> the record it completes, if any; a refused record is dead-lettered."""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            reason = f"line {self._lineno}: not UTF-8 ({e.reason} at byte {e.start})"
            if rows.holding:  # the record this line belonged to cannot be read either
                start = rows.start
                self._reject(rows.abandon().encode() + b"\n" + raw, f"{reason}, in the record from line {start}")
            else:
                self._reject(raw, reason)
            return None
        try:
            return rows.feed(text, self._lineno)
        except Exception as e:  # one record's failure is that record's, never the source's
            from edgestream_hub.ingest import why

            self._reject(rows.refused, f"line {rows.start}: {why(e)}")
            return None

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
    Field("convert", "bool", "CSV: turn cells that are JSON numbers into numbers, true/false into booleans, "
          "empty into null (the rest stays text).", default=True),
    Field("batch", "int", "Most records emitted per read.", default=1000, min=1),
    Field("max_line", "size", "Longest accepted line.", default="1MiB"),
], check=_check_file_source, example="sources:\n  replay: {file: {path: readings.jsonl, mode: once}}"))
def file_source(config: dict[str, Any], ctx: ComponentContext) -> FileSource:
    return FileSource(config, ctx)


class FileSink(Sink):
    """Appends records as JSON lines or CSV rows, rotating by size or age."""

    def __init__(self, config: dict[str, Any], ctx: ComponentContext) -> None:
        self.ctx = ctx
        share = getattr(ctx, "share", None)
        self.path = Path(ctx.resolve(config["path"].replace("{worker}", str(share.index if share is not None else 0))))
        self.format = _format_of(str(self.path), config["format"])
        self.rotate_size = config["rotate_size"]
        self.rotate_ms = config["rotate_interval"]
        self.keep = config["keep"]
        if ctx.dead_letter_target and self.rotate_size is None and self.rotate_ms is None:
            # dead letters come from outside: bound them unless the config chose its own rotation
            self.rotate_size, self.keep = deadletter.DEFAULT_ROTATE_SIZE, self.keep or deadletter.DEFAULT_KEEP
        self.fsync = config["fsync"]
        # exactly the names _rotate() gives: <stem>-<UTC time>-<n><suffix> (ASCII digits: \d takes any script's)
        self._rotated_name = re.compile(re.escape(self.path.stem) + r"-([0-9]{8}T[0-9]{6})-([0-9]+)"
                                        + re.escape(self.path.suffix) + r"\Z")
        self._undeletable: set[Path] = set()  # rotations a prune could not delete (logged once each)
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
        """Rename the current file to the next rotation and start a new one, then prune to ``keep``.

        The new file is opened whatever happens to the rename; a prune failure is logged, never raised."""
        self._f.close()
        mine = self._mine()
        try:
            self._seq = max(self._seq, max((n for n, _, _ in mine), default=0))
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
            for _ in range(1_000_000):  # never replace an earlier rotation
                self._seq += 1
                target = self.path.with_name(f"{self.path.stem}-{stamp}-{self._seq}{self.path.suffix}")
                if not target.exists():
                    break
            os.replace(self.path, target)
        finally:
            self._open()
        if self.keep:
            older = [p for _, _, p in sorted(mine) if p != target]
            self._prune(older[:max(0, len(older) - (self.keep - 1))])

    def _prune(self, paths: list[Path]) -> None:
        for p in paths:
            try:
                p.unlink(missing_ok=True)
            except OSError as e:
                if p not in self._undeletable:
                    self._undeletable.add(p)
                    self.ctx.log.error("cannot delete the old rotation %s (keep: %d): %s; writing goes on", p,
                                       self.keep, e.strerror or e)

    def _mine(self) -> list[tuple[int, str, Path]]:
        """``(n, UTC time, path)`` of the files this sink's rotation made: regular files named like one."""
        mine = []
        for p in self.path.parent.iterdir():
            m = self._rotated_name.match(p.name)
            if m and p.is_file():
                mine.append((int(m.group(2)), m.group(1), p))
        return mine

    def rotated(self) -> list[Path]:
        """The files this sink's rotation made (and only those), oldest first (in the order they were made)."""
        return [p for _, _, p in sorted(self._mine())]

    def write(self, records: list[Record]) -> list[tuple[Any, str]]:
        if self._f is None:
            self._open()
        if self.rotate_ms and self._size and (time.monotonic() - self._opened_at) * 1000 >= self.rotate_ms:
            self._rotate()
        if self.format == "jsonl":
            data, nonfinite = self._jsonl_batch(records)
            if data is not None and not (self.rotate_size and self._size + len(data) >= self.rotate_size):
                self._f.write(data)  # the common case: one encoder pass, one write
                self._size += len(data)
                self._sync()
                if nonfinite:
                    self.ctx.count(jsonio.NONFINITE_METRIC, nonfinite)
                return []
        rejected: list[tuple[Any, str]] = []
        parts: list[bytes] = []
        nonfinite = 0
        for r in records:
            try:
                text, n = self._line(r)
                line = text.encode("utf-8")
            except (TypeError, ValueError, RecursionError) as e:  # UnicodeEncodeError is a ValueError
                self._reset()
                rejected.append((r, f"file sink {self.ctx.label}: {e}"))
                continue
            nonfinite += n
            parts.append(line)
            self._size += len(line)
            if self.rotate_size and self._size >= self.rotate_size:
                self._f.write(b"".join(parts))
                parts = []
                self._rotate()
        if parts:
            self._f.write(b"".join(parts))
        self._sync()
        self.ctx.count(jsonio.NONFINITE_METRIC, nonfinite)
        return rejected

    def _jsonl_batch(self, records: list[Record]) -> tuple[bytes | None, int]:
        """The whole batch as JSON lines and how many non-finite numbers it wrote as null (``jsonio``'s fast
        engine writes them so); ``(None, 0)`` if some record needs the record-by-record path."""
        fast = jsonio.dump_lines(records)
        if fast is not None:
            return fast
        enc = self._encode
        chunks: list[str] = []
        extend, append = chunks.extend, chunks.append
        try:
            for r in records:
                if not isinstance(r, dict):
                    return None, 0
                extend(enc(r))
                append("\n")
            return "".join(chunks).encode("utf-8"), 0
        except (TypeError, ValueError, RecursionError):
            self._reset()
            return None, 0

    def _sync(self) -> None:
        self._f.flush()
        if self.fsync:
            os.fsync(self._f.fileno())

    def _line(self, r: Record) -> tuple[str, int]:
        """The record's line, and how many non-finite numbers it wrote as null."""
        if not isinstance(r, dict):
            raise TypeError(f"expected a record (mapping), got {type(r).__name__}")
        if self.format == "jsonl":
            text, n = encode_finite(self._encode, self._reset, r)
            return text + "\n", n
        if self._cols is None:
            self._cols = list(r)
        extra = [k for k in r if k not in self._cols and k != RESULT_ID]
        if extra:
            raise ValueError(f"fields {extra} are not among the CSV columns {self._cols}")
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        if self._size == 0 and not buf.tell():
            w.writerow(self._cols)
        nonfinite = 0
        row = []
        for c in self._cols:
            v = r.get(c)
            if isinstance(v, (dict, list)):
                v, n = jsonio.dumps(v)
                nonfinite += n
            elif isinstance(v, float) and v - v != 0:  # NaN or an infinity: an empty cell, like null
                v = None
                nonfinite += 1
            row.append("" if v is None else v)
        w.writerow(row)
        return buf.getvalue(), nonfinite

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
    Field("path", "str", "The file (relative to the config file's folder); its folder is created. `{worker}` in "
          "it is the number of the hub's worker process (0 in a one-process hub): with it, each worker of a hub "
          "with `hub.workers` writes a file of its own (docs/hub.md, Workers)."),
    Field("format", "str", "`auto` picks csv for `.csv` files, jsonl otherwise.", default="auto",
          choices=("auto", "jsonl", "csv")),
    Field("columns", "list[str]", "CSV columns (default: the first record's fields).", default=None),
    Field("rotate_size", "size", "Rotate when the file reaches this size. A sink that receives dead letters and "
          "sets no rotation rotates at 10MiB and keeps 5.", default=None),
    Field("rotate_interval", "duration", "Rotate when the file is this old.", default=None, max=366 * 86_400_000),
    Field("keep", "int", "Rotated files to keep (0: all): the newest by rotation count `n`, whatever their UTC "
          "time says; only regular files named like its rotations (`<stem>-<UTC time>-<n><suffix>`) are ever "
          "deleted.", default=0, min=0),
    Field("fsync", "bool", "fsync after every batch (slower, survives power loss).", default=False),
], check=_check_file_sink, example="sinks:\n  archive: {file: {path: out/results.jsonl, rotate_size: 10MB, keep: 5}}"))
def file_sink(config: dict[str, Any], ctx: ComponentContext) -> FileSink:
    return FileSink(config, ctx)
