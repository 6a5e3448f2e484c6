"""``edgestream sql``: run a query over files, the way the hub would run it.

Reads JSON lines (or CSV, by extension; ``-`` is stdin) for each
``--input NAME=PATH`` a chunk at a time (the lines of a chunk parsed together,
with orjson when it is installed), so memory stays flat whatever the size of
the input. Runs the query in event time, flushes every
open window at the end of input and prints one strict-JSON object per result
row. ``EXPLAIN <query>`` prints the plan instead.

Several inputs are merged the way a hub receives them: each file keeps its
own order, and at each step the head record with the smallest event time goes
next (:func:`merge_by_time`), so a record late within its own file is late
here too. With ``--processing-time`` records are timed by the wall clock when
they are read (one time per batch), several inputs are read in turn
(:func:`interleave`), and every window still open is flushed at the end.
Exit codes: 0 done (dead-lettered and late records included), 2 a
bad query, bad arguments, streams and inputs that do not match, or an
unreadable input (named, with its line); ``edgestream`` itself adds 130 and
141 (stdout closed early).
"""

from __future__ import annotations

import argparse
import difflib
import heapq
import sys
import time
from itertools import islice
from typing import Any, Iterable, Iterator, Optional, TextIO

from edgestream_hub.jsonio import dump_lines, dumps

from .functions import MISSING_TIMESTAMP

#: records handed to the processor at a time: the memory the CLI holds, whatever the input size
BATCH = 1000


def _pair(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, path


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {n}")
    return n


def _size(text: str) -> int:
    from edgestream_hub.spec import parse_size

    try:
        n = parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a size >= 1 byte, got {text!r}")
    return n


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("query", help='the query, e.g. "SELECT ... FROM s GROUP BY TUMBLINGWINDOW(ss, 10)"; '
                                      "prefix EXPLAIN for the plan")
    parser.add_argument("--input", action="append", type=_pair, default=[], metavar="NAME=PATH",
                        help='a stream: JSON lines, or CSV by extension; "-" reads JSON lines from stdin (repeatable)')
    parser.add_argument("--table", action="append", type=_pair, default=[], metavar="NAME=PATH",
                        help="a lookup table: .csv, .jsonl, PATH.db#TABLE or sqlite:///PATH?table=T (repeatable)")
    parser.add_argument("--time-field", default=None, metavar="NAME",
                        help="event-time field, epoch milliseconds or ISO-8601 (default ts)")
    parser.add_argument("--processing-time", action="store_true",
                        help="time records by the wall clock when they are read, for inputs without a time field")
    parser.add_argument("--lateness", type=int, default=0, metavar="MS", help="allowed lateness in ms (default 0)")
    parser.add_argument("--max-keys", type=_positive, default=None, metavar="N",
                        help="most window/group states held at once (default: unbounded)")
    parser.add_argument("--max-state-bytes", type=_size, default=None, metavar="SIZE",
                        help="most bytes of held values, e.g. 64MiB (default: unbounded)")
    parser.add_argument("--on-limit", choices=("emit_early", "dead_letter"), default="emit_early",
                        help="at a bound: emit the oldest states early (marked _early) or dead-letter the records "
                             "that would grow the state (default emit_early)")
    parser.add_argument("--dead-letters", metavar="PATH", help="write dead-lettered records here as JSON lines")
    parser.add_argument("--late-records", metavar="PATH", help="write late records here as JSON lines")


def merge_by_time(inputs: list[tuple[str, Iterable[dict]]], time_field: str,
                  stream_field: str = "_stream") -> Iterator[dict]:
    """Interleave several streams by event time, incrementally (a k-way merge).

    Each stream keeps its own order; at each step the head record with the
    smallest event time goes next (ties: the stream given first), tagged with
    its stream's name in ``stream_field``. A record whose time cannot be read
    goes out at once, so the processor dead-letters it. Holds one record per
    stream.

    >>> a = [{"ts": 1}, {"ts": 5}, {"ts": 2}]
    >>> b = [{"ts": 3}, {"ts": "1970-01-01T00:00:00.004Z"}]
    >>> [(r["_stream"], r["ts"]) for r in merge_by_time([("a", a), ("b", b)], "ts")]
    [('a', 1), ('b', 3), ('b', '1970-01-01T00:00:00.004Z'), ('a', 5), ('a', 2)]
    """
    from .errors import SqlRuntimeError
    from .functions import ts_ms

    names = [name for name, _ in inputs]
    iters = [iter(recs) for _, recs in inputs]
    heap: list[tuple[int, int, dict]] = []

    def advance(i: int) -> Iterator[dict]:
        # push stream i's next timed record; records without a usable time go out on the way
        for rec in iters[i]:
            rec[stream_field] = names[i]
            try:
                t = ts_ms(rec.get(time_field))
            except SqlRuntimeError:
                yield rec
                continue
            heapq.heappush(heap, (t, i, rec))
            return

    for i in range(len(iters)):
        yield from advance(i)
    while heap:
        _, i, rec = heapq.heappop(heap)
        yield rec
        yield from advance(i)


def interleave(inputs: list[tuple[str, Iterable[dict]]], stream_field: str = "_stream") -> Iterator[dict]:
    """Several streams in processing time: one record of each in turn (in the order given), tagged with
    its stream's name, until every stream ends.

    >>> [(r["_stream"], r["v"]) for r in interleave([("a", [{"v": 1}, {"v": 2}, {"v": 3}]), ("b", [{"v": 9}])])]
    [('a', 1), ('b', 9), ('a', 2), ('a', 3)]
    """
    live = [(name, iter(recs)) for name, recs in inputs]
    while live:
        still = []
        for name, it in live:
            rec = next(it, None)
            if rec is None:
                continue
            rec[stream_field] = name
            yield rec
            still.append((name, it))
        live = still


def _batches(records: Iterable[dict], pipes: list[Any]) -> Iterator[tuple[list[dict], bool]]:
    """``(batch, idle)``: up to BATCH records at a time.

    With inputs that are pipes (``ready()`` says whether a line is waiting), a
    batch also ends when one of them has nothing waiting (``idle``), so the
    results of a live stream come out as its records arrive.
    """
    it = iter(records)
    if not pipes:
        while batch := list(islice(it, BATCH)):
            yield batch, False
        return
    batch = []
    for rec in it:
        batch.append(rec)
        if len(batch) >= BATCH:
            yield batch, False
            batch = []
        elif not all(p.ready() for p in pipes):
            yield batch, True
            batch = []
    if batch:
        yield batch, False


def _reader_batches(reader: Any, pipes: list[Any]) -> Iterator[tuple[list[dict], bool]]:
    """``(batch, idle)`` from one reader's own batches (a read of its input each), split to at most BATCH
    records; ``idle`` as in ``_batches``: after the last part of a read, when a pipe has nothing waiting."""
    for records in reader.batches():
        for i in range(0, len(records), BATCH):
            part = records[i:i + BATCH] if i or len(records) > BATCH else records
            yield part, bool(pipes) and i + BATCH >= len(records) and not all(p.ready() for p in pipes)


def _check_streams(streams: list[str], given: list[str]) -> None:
    """Refuse a query and inputs that do not name the same streams, suggesting the closest name."""
    from .errors import SqlError

    missing = [s for s in streams if s not in given]
    extra = [g for g in given if g not in streams]
    if missing:
        m = missing[0]
        near = difflib.get_close_matches(m, extra, n=1, cutoff=0.6)
        if not near and len(missing) == len(extra) == 1:
            near = extra  # one stream without input, one input without stream: surely meant for each other
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise SqlError(f"the query reads stream {m!r} but no --input gives it "
                       f"(given: {', '.join(given) or 'none'}){hint}")
    if extra:
        raise SqlError(f"--input {extra[0]} is not a stream of the query (it reads: {', '.join(streams)})")


class _Outputs:
    """The CLI's Context: dead letters and late records go to their files as they come.

    Keeps counts and the first few dead letters (for the summary), never the
    records themselves; counts non-finite numbers written as ``null``.
    """

    KEEP = 5

    def __init__(self, dead_path: Optional[str], late_path: Optional[str]) -> None:
        self.label = "sql"
        self.paths = {"--dead-letters": dead_path, "--late-records": late_path}
        self.dead = 0
        self.untimed = 0  # dead letters for a missing timestamp
        self.late_count = 0
        self.nonfinite = 0
        self.first_dead: list[tuple[Any, str]] = []
        self._files: dict[str, TextIO] = {}
        self._dead_f: Optional[TextIO] = None
        self._late_f: Optional[TextIO] = None

    def open(self) -> None:
        """Create the output files (once the query and the inputs are known to be good)."""
        from .errors import SqlError

        for flag, path in self.paths.items():
            if path is None:
                continue
            try:
                self._files[flag] = open(path, "w", encoding="utf-8")
            except OSError as e:
                self.close()
                raise SqlError(f"cannot write {flag} {path}: {e.strerror or e}") from e
        self._dead_f = self._files.get("--dead-letters")
        self._late_f = self._files.get("--late-records")

    def line(self, v: Any) -> str:
        text, n = dumps(v)
        self.nonfinite += n
        return text + "\n"

    def lines(self, rows: list) -> str:
        """The rows as JSON lines (a batch at once when ``jsonio`` can, else row by row: the same text)."""
        fast = dump_lines(rows)
        if fast is None:
            return "".join(map(self.line, rows))
        self.nonfinite += fast[1]
        return fast[0].decode("utf-8")

    def dead_letter(self, record: Any, reason: str) -> None:
        self.dead += 1
        if reason == MISSING_TIMESTAMP:
            self.untimed += 1
        if len(self.first_dead) < self.KEEP:
            self.first_dead.append((record, reason))
        if self._dead_f is not None:
            self._dead_f.write(self.line({"reason": reason, "record": record}))

    def late(self, record: dict) -> None:
        self.late_count += 1
        if self._late_f is not None:
            self._late_f.write(self.line(record))

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files = {}
        self._dead_f = self._late_f = None


def _sum_known(sizes: list[Optional[int]]) -> Optional[int]:
    """The sum of the sizes, or None when one of them is not known."""
    known = [n for n in sizes if n is not None]
    return sum(known) if len(known) == len(sizes) else None


def run(args: argparse.Namespace) -> int:
    from edgestream_hub.progress import Progress

    from .errors import SqlError
    from .processor import SqlProcessor
    from .tables import InputError, RecordReader, load_table

    if args.lateness < 0:
        raise SqlError("--lateness must be >= 0")
    if args.processing_time and args.time_field is not None:
        raise SqlError("--time-field and --processing-time exclude each other: records are timed by one or the other")
    time_field = args.time_field or "ts"
    names = [name for name, _ in args.input]
    for name in names:
        if names.count(name) > 1:
            raise SqlError(f"--input {name} is given {names.count(name)} times: give each stream once")
    if sum(path == "-" for _, path in args.input) > 1:
        raise SqlError("only one --input can read stdin (-)")
    tables = {name: load_table(path) for name, path in args.table}
    out = _Outputs(args.dead_letters, args.late_records)
    proc = SqlProcessor(args.query, out, time_field=time_field, lateness_ms=args.lateness,
                        processing_time=args.processing_time, tables=tables, max_keys=args.max_keys,
                        max_state_bytes=args.max_state_bytes, on_limit=args.on_limit)
    if proc.plan.query.explain:
        print(proc.explain())
        return 0
    streams = list(dict.fromkeys(s.name for s in proc.plan.query.streams))
    _check_streams(streams, names)

    readers = {}
    for name, path in args.input:
        try:
            readers[name] = RecordReader(path, out.dead_letter).open()
        except OSError as e:
            for r in readers.values():
                r.close()
            raise SqlError(f"cannot read --input {name}={path}: {e.strerror or e}") from e
    out.open()
    total = _sum_known([r.size for r in readers.values()])

    def position() -> Optional[int]:
        return _sum_known([r.position() for r in readers.values()])

    progress = Progress("edgestream sql", total_bytes=total, position=position)
    pipes = [r for r in readers.values() if r.size is None]
    batches: Iterable[tuple[list[dict], bool]]
    if len(streams) == 1:
        batches = _reader_batches(readers[streams[0]], pipes)
    elif args.processing_time:
        batches = _batches(interleave([(name, readers[name]) for name in streams]), pipes)
    else:
        batches = _batches(merge_by_time([(name, readers[name]) for name in streams], time_field), pipes)
    write = progress.above(sys.stdout).write
    seen = 0
    try:
        try:
            for batch, idle in batches:
                rows = proc.process(batch, int(time.time() * 1000))
                if rows:
                    write(out.lines(rows))
                if idle:
                    sys.stdout.flush()  # a live stream: its results now, not when a buffer fills
                seen += len(batch)
                progress.update(seen)
        except InputError as e:
            name, r = next((n, r) for n, r in readers.items() if r.name == e.path)
            raise SqlError(f"cannot read --input {name}={r.path}: line {e.line_number}: {e.reason}") from e
        rows = proc.flush()
        if rows:
            write(out.lines(rows))
        sys.stdout.flush()
    finally:
        progress.done()
        out.close()
        for r in readers.values():
            r.close()
    limited = proc.metrics["limited_records"]
    if limited:
        what = ("record(s) dead-lettered" if args.on_limit == "dead_letter"
                else "window state(s) emitted early (rows marked _early)")
        print(f"edgestream sql: the state limit was reached: {limited} {what}", file=sys.stderr)
    if out.dead or out.late_count:
        print(f"edgestream sql: {out.dead} record(s) dead-lettered, {out.late_count} late", file=sys.stderr)
        for rec, reason in out.first_dead:
            print(f"  dead letter: {reason}: {dumps(rec)[0][:200]}", file=sys.stderr)
    if seen and out.untimed == seen:
        print(f"edgestream sql: no record had a {time_field!r} field: name the time field with --time-field NAME, "
              "or use --processing-time", file=sys.stderr)
    if out.nonfinite:
        print(f"edgestream sql: {out.nonfinite} non-finite number(s) (NaN or infinity) written as null",
              file=sys.stderr)
    return 0
