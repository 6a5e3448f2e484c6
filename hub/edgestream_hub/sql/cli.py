"""``edgestream sql``: run a query over files, the way the hub would run it.

Reads JSON lines (or CSV, by extension) for each ``--input NAME=PATH``,
runs the query in event time, flushes every open window at the end of
input and prints one JSON object per result row. ``EXPLAIN <query>``
prints the plan instead. A bad query exits 2 with its located error.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def _pair(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("query", help='the query, e.g. "SELECT ... FROM s GROUP BY TUMBLINGWINDOW(ss, 10)"; prefix EXPLAIN for the plan')
    parser.add_argument("--input", action="append", type=_pair, default=[], metavar="NAME=PATH",
                        help="a stream: JSON lines, or CSV by extension (repeatable)")
    parser.add_argument("--table", action="append", type=_pair, default=[], metavar="NAME=PATH",
                        help="a lookup table: .csv, .jsonl, PATH.db#TABLE or sqlite:///PATH?table=T (repeatable)")
    parser.add_argument("--time-field", default="ts", help="event-time field, epoch milliseconds (default ts)")
    parser.add_argument("--lateness", type=int, default=0, metavar="MS", help="allowed lateness in ms (default 0)")
    parser.add_argument("--dead-letters", metavar="PATH", help="write dead-lettered records here as JSON lines")
    parser.add_argument("--late-records", metavar="PATH", help="write late records here as JSON lines")


def _json_default(v: Any) -> Any:
    if isinstance(v, (set, tuple)):
        return list(v)
    return str(v)


def run(args: argparse.Namespace) -> int:
    from edgestream_hub.api import SimpleContext

    from .errors import SqlError
    from .processor import SqlProcessor
    from .tables import iter_records, load_table

    if args.lateness < 0:
        raise SqlError("--lateness must be >= 0")
    tables = {name: load_table(path) for name, path in args.table}
    ctx = SimpleContext("sql")
    query = args.query
    proc = SqlProcessor(query, ctx, time_field=args.time_field, lateness_ms=args.lateness, tables=tables)
    if proc.plan.query.explain:
        print(proc.explain())
        return 0
    streams = {s.name for s in proc.plan.query.streams}
    given = dict(args.input)
    missing = sorted(streams - set(given))
    if missing:
        raise SqlError(f"no --input for stream{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    for name in given:
        if name not in streams:
            print(f"edgestream sql: warning: --input {name} is not used by the query", file=sys.stderr)
    def read(name: str) -> list:
        try:
            return list(iter_records(given[name], ctx.dead_letter))
        except OSError as e:
            raise SqlError(f"cannot read --input {name}={given[name]}: {e.strerror or e}") from e
        except UnicodeDecodeError as e:
            raise SqlError(f"cannot read --input {name}={given[name]}: not UTF-8 text ({e.reason})") from e

    records: list = []
    if len(streams) == 1:
        records = read(next(iter(streams)))
    else:
        # several streams: merged in event-time order (stable), each tagged with its stream name
        tagged = []
        seq = 0
        for name in sorted(streams):
            for rec in read(name):
                rec = dict(rec)
                rec["_stream"] = name
                t = rec.get(args.time_field)
                tagged.append((t if isinstance(t, (int, float)) and not isinstance(t, bool) else float("-inf"), seq, rec))
                seq += 1
        tagged.sort(key=lambda x: (x[0], x[1]))
        records = [r for _, _, r in tagged]
    out = sys.stdout
    write = out.write
    import time

    batch = 1000
    last_ts = int(time.time() * 1000)
    for i in range(0, len(records), batch):
        chunk = records[i: i + batch]
        for row in proc.process(chunk, last_ts):
            write(json.dumps(row, default=_json_default) + "\n")
    for row in proc.flush():
        write(json.dumps(row, default=_json_default) + "\n")
    out.flush()
    if ctx.dead or ctx.late_records:
        print(f"edgestream sql: {len(ctx.dead)} record(s) dead-lettered, {len(ctx.late_records)} late", file=sys.stderr)
        for rec, reason in ctx.dead[:5]:
            print(f"  dead letter: {reason}: {json.dumps(rec, default=_json_default)[:200]}", file=sys.stderr)
    if args.dead_letters:
        with open(args.dead_letters, "w") as f:
            for rec, reason in ctx.dead:
                f.write(json.dumps({"reason": reason, "record": rec}, default=_json_default) + "\n")
    if args.late_records:
        with open(args.late_records, "w") as f:
            for rec in ctx.late_records:
                f.write(json.dumps(rec, default=_json_default) + "\n")
    return 0
