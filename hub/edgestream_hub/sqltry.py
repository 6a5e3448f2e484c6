"""SQL test runs for the REST API: EXPLAIN a query, or run it on sample records, before deploying it.

A test run compiles the query as a hub ``sql`` processor would (the hub's
functions included, lookup tables not), feeds it the given records in event
time (or processing time) in batches, then flushes every open window, like
``edgestream sql`` at the end of its input. It is bounded three ways: at most
``max_records`` records in (the caller refuses more), at most ``max_rows``
rows out (the rest are counted), and ``timeout_s``: between batches the run
stops when its time is up and answers with what it has (``timed_out``).
Records that fail go to the answer's ``dead_letters`` (counted, the first few
kept with their reasons), late ones are counted.

    >>> r = run("SELECT id, count(*) AS n FROM s GROUP BY id, TUMBLINGWINDOW(ss, 1)",
    ...         {"s": [{"id": "a", "ts": 10}, {"id": "a", "ts": 20}]}, max_rows=10, timeout_s=5)
    >>> r["rows"], r["columns"], r["timed_out"]
    ([{'id': 'a', 'n': 2}], ['id', 'n'], False)
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable

from edgestream_hub.errors import EdgeStreamError

Record = dict[str, Any]
BATCH = 100  # records per process() call: the time bound is checked between batches
KEEP_DEAD = 20


class SqlTryError(EdgeStreamError):
    """Records and query that do not fit together (streams that are not given, an EXPLAIN to run)."""


class _Collect:
    """The test run's Context: dead letters counted and the first few kept, late records counted."""

    label = "sql-try"

    def __init__(self) -> None:
        self.dead = 0
        self.first: list[dict[str, Any]] = []
        self.late_count = 0

    def dead_letter(self, record: Any, reason: str) -> None:
        from edgestream_hub import deadletter

        self.dead += 1
        if len(self.first) < KEEP_DEAD:
            self.first.append({"reason": deadletter.clip(reason), "record": deadletter.bounded(record)})

    def late(self, record: Record) -> None:
        self.late_count += 1


def _processor(query: str, ctx: Any, time_field: str, lateness_ms: int, processing_time: bool,
               functions: dict[str, Callable[..., Any]] | None) -> Any:
    from edgestream_hub.sql.processor import SqlProcessor

    return SqlProcessor(query, ctx, time_field=time_field, lateness_ms=lateness_ms,
                        processing_time=processing_time, functions=functions or None)


def explain(query: str, *, time_field: str = "ts", lateness_ms: int = 0,
            functions: dict[str, Callable[..., Any]] | None = None) -> dict[str, Any]:
    """The plan of ``query`` (with or without a leading EXPLAIN) and the streams it reads. Raises ``SqlError``."""
    proc = _processor(query, _Collect(), time_field, lateness_ms, False, functions)
    return {"plan": proc.explain(), "streams": streams_of(proc)}


def streams_of(proc: Any) -> list[str]:
    return list(dict.fromkeys(s.name for s in proc.plan.query.streams))


def run(query: str, streams: dict[str, list[Record]] | list[Record], *, max_rows: int, timeout_s: float,
        time_field: str = "ts", lateness_ms: int = 0, processing_time: bool = False,
        functions: dict[str, Callable[..., Any]] | None = None) -> dict[str, Any]:
    """Run ``query`` on ``streams`` (by stream name; a plain list is the input of a one-stream query).
    Raises ``SqlError`` for a query that does not compile, ``SqlTryError`` for inputs that do not fit it."""
    from edgestream_hub.sql.cli import interleave, merge_by_time

    started = time.monotonic()
    ctx = _Collect()
    proc = _processor(query, ctx, time_field, lateness_ms, processing_time, functions)
    if proc.plan.query.explain:
        raise SqlTryError("the query starts with EXPLAIN: ask /api/sql/explain for its plan")
    names = streams_of(proc)
    if isinstance(streams, list):
        if len(names) > 1:
            raise SqlTryError(f"the query reads {len(names)} streams ({', '.join(names)}): give the records of "
                              "each by name in `streams`")
        streams = {names[0]: streams}
    missing = [n for n in names if n not in streams]
    extra = [n for n in streams if n not in names]
    if missing or extra:
        raise SqlTryError(f"the query reads {', '.join(names)}; records were given for "
                          f"{', '.join(streams) or 'none'}" + (f" (missing: {', '.join(missing)})" if missing else ""))
    copies: list[tuple[str, Iterable[Record]]] = [(n, [dict(r) for r in streams[n]]) for n in names]
    records: list[Record]
    if len(copies) == 1:
        records = list(copies[0][1])  # copies: the run tags records and may keep them
    elif processing_time:
        records = list(interleave(copies))
    else:
        records = list(merge_by_time(copies, time_field))
    rows: list[Record] = []
    total = 0
    timed_out = False
    fed = 0

    def take(out: list[Record]) -> None:
        nonlocal total
        total += len(out)
        room = max_rows - len(rows)
        if room > 0:
            rows.extend(out[:room])

    deadline = started + timeout_s
    for i in range(0, len(records), BATCH):
        if time.monotonic() >= deadline:
            timed_out = True
            break
        batch = records[i:i + BATCH]
        take(proc.process(batch, int(time.time() * 1000)))
        fed += len(batch)
    take(proc.flush())
    columns: list[str] = []
    for r in rows:
        for k in r:
            if k not in columns:
                columns.append(k)
    return {"columns": columns, "rows": rows, "rows_total": total, "truncated": total > len(rows),
            "records_in": fed, "records_given": len(records), "timed_out": timed_out,
            "dead_letters": {"count": ctx.dead, "first": ctx.first}, "late": ctx.late_count,
            "elapsed_ms": round((time.monotonic() - started) * 1000, 1), "streams": names}
