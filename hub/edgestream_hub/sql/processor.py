"""``SqlProcessor``: a streaming SQL query as a hub processor.

>>> from edgestream_hub.api import SimpleContext
>>> p = SqlProcessor("SELECT id, count(*) AS n FROM s GROUP BY id, TUMBLINGWINDOW(ss, 1)", SimpleContext())
>>> p.process([{"id": "a", "ts": 10}, {"id": "a", "ts": 20}, {"id": "a", "ts": 1000}], now_ms=0)
[{'id': 'a', 'n': 2}]
>>> p.flush()
[{'id': 'a', 'n': 1}]
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any, Callable, Optional

from .catalog import Catalog
from .errors import SqlError
from .keys import key_value
from .limits import CHECK_EVERY, Limits
from .optimizer import compile_query
from .plan import Plan, explain
from .program import Program
from .sizes import approx_bytes
from .state import decode, encode
from .windows import EXECUTORS


def _columns(src: Any) -> Optional[set]:
    """Column names of a table when they can be known without surprises (non-empty list of dicts)."""
    if callable(src) or hasattr(src, "rows"):
        names = getattr(src, "columns", None)
        return set(names) if names else None
    if isinstance(src, list) and src and all(isinstance(r, dict) for r in src):
        cols: set = set()
        for r in src:
            cols.update(r)
        return cols
    return None


#: the layout of snapshots; 2: arrival numbers in sliding first/last/collect; 3: sum/avg as exact sums in a
#: unit of 2**-E, keys as keys.Key
STATE_VERSION = 3
#: the modes whose rows are one per window and group, so an id names each
_IDENTIFIED = ("fast", "session", "sliding", "count", "join")


def result_id(scope: str) -> Callable[[Any, Any, Any], str]:
    """The result-id function of a processor: ``(window start, window end, group key) -> id``, the first
    16 hex digits of the SHA-256 of the compact JSON ``[scope, start, end, key]`` (the key a list of the
    GROUP BY values, or the one value). The same window of the same group always gets the same id, so a
    result emitted again after a restart replaces itself at an idempotent sink.

    >>> result_id("p/p.sql")(0, 1000, ("d1", "temp"))
    '32539619c9a1e653'
    """
    head = "[" + json.dumps(scope) + ","
    # the encoders json.dumps(x) and json.dumps(x, separators=(",", ":"), default=repr) build, built once
    # (it builds the second on every call); a bound that is an int is its own text
    bound = json.JSONEncoder().encode
    group = json.JSONEncoder(separators=(",", ":"), default=repr).encode
    sha256 = hashlib.sha256

    def ident(ws: Any, we: Any, k: Any) -> str:
        a = str(ws) if ws.__class__ is int else bound(ws)
        b = str(we) if we.__class__ is int else bound(we)
        return sha256(f"{head}{a},{b},{group(key_value(k))}]".encode()).hexdigest()[:16]

    return ident


class SqlProcessor:
    """Runs one query incrementally; see docs/sql.md for the language and the event-time rules.

    Emits each window exactly once, when the watermark (max event time seen
    minus ``lateness_ms``) reaches its end, in order of window end; records
    that fail at run time go to ``ctx.dead_letter`` and late ones to
    ``ctx.late``; neither stops the query. With ``id_field``, every row of a window aggregate (one per
    window and group) carries its ``result_id`` in that field. ``max_keys`` and ``max_state_bytes``
    bound the state; ``on_limit`` (``emit_early`` or ``dead_letter``) says what
    gives at the bound (see ``limits``); below it results are exact.
    """

    def __init__(self, query: str, ctx: Any, *, time_field: str = "ts", lateness_ms: int = 0,
                 idle_timeout_ms: Optional[int] = None, processing_time: bool = False,
                 tables: Optional[dict] = None, functions: Optional[dict[str, Callable[..., Any]]] = None,
                 resume_state: Any = None, stream_field: str = "_stream", id_field: str = "",
                 id_scope: str = "", max_keys: Optional[int] = None,
                 max_state_bytes: Optional[int] = None, on_limit: str = "emit_early") -> None:
        if lateness_ms is None or int(lateness_ms) < 0:
            raise SqlError(f"lateness_ms must be >= 0, got {lateness_ms!r}")
        self.limits = Limits(max_keys, max_state_bytes, on_limit)
        self.query = query
        self.ctx = ctx
        self.tables = dict(tables or {})
        catalog = Catalog(tables={n: _columns(t) for n, t in self.tables.items()},
                          functions=dict(functions or {}), time_field=time_field)
        self.plan: Plan = compile_query(query, catalog)
        if self.limits.active and self.plan.mode == "rows":
            raise SqlError("max_keys and max_state_bytes bound window and group state, and this query keeps none "
                           "(no window, no GROUP BY, no aggregate): leave them out")
        self.time_field = time_field
        self.lateness_ms = int(lateness_ms)
        self.idle_timeout_ms = idle_timeout_ms
        self.processing_time = processing_time
        if self.plan.mode == "join":
            from .join import JoinProgram, StreamJoinExecutor

            self.program: Any = JoinProgram(self.plan, time_field=time_field, lateness_ms=self.lateness_ms,
                                            processing_time=processing_time, functions=functions,
                                            stream_field=stream_field, limits=self.limits)
            self.executor: Any = StreamJoinExecutor(self.program, ctx)
        else:
            self.program = Program(self.plan, time_field=time_field, lateness_ms=self.lateness_ms,
                                   processing_time=processing_time, tables=self.tables, functions=functions,
                                   limits=self.limits)
            self.executor = EXECUTORS[self.plan.mode](self.program, ctx)
        if id_field and self.plan.mode in _IDENTIFIED and (self.plan.mode != "join" or self.program.grouping):
            if id_field in self.plan.names:
                raise SqlError(f"the query has an output column named {id_field!r}, the field that carries each "
                               "result's id: rename the column, or set id_field to another name")
            self.executor.ident = result_id(id_scope)
            self.executor.id_field = id_field
        self._last_arrival: Optional[int] = None
        self._wm_at_arrival: Any = None
        self._now = 0
        self._unchecked = 0  # records since the state's bytes were last read (with max_state_bytes)
        if resume_state is not None:
            self._restore(resume_state)

    # -- Processor --------------------------------------------------------------
    def process(self, records: list, now_ms: int) -> list:
        """Consume a batch in arrival order; return the rows it completes, in order."""
        self._now = now_ms
        if not records:
            return []
        if self.limits.max_state_bytes is None:
            out = self.executor.process(records, now_ms)
        else:
            out = self._process_checked(records, now_ms)
        self._last_arrival = now_ms
        self._wm_at_arrival = self.executor.wm
        return out

    def _process_checked(self, records: list, now_ms: int) -> list:
        """``process`` with the state's bytes read every ``CHECK_EVERY`` records, whatever the batches."""
        ex, out, i, n = self.executor, [], 0, len(records)
        while i < n:
            take = min(n - i, CHECK_EVERY - self._unchecked)
            out.extend(ex.process(records[i:i + take] if take < n else records, now_ms))
            i += take
            self._unchecked += take
            if self._unchecked >= CHECK_EVERY:
                self._unchecked = 0
                out.extend(ex.check_bytes(now_ms))
        return out

    def tick(self, now_ms: int) -> list:
        """Close what time alone closes: processing-time windows, or event time after the idle timeout."""
        self._now = now_ms
        ex = self.executor
        if self.plan.mode in ("rows", "count"):
            return []
        if self.processing_time:
            wm = now_ms
        elif self.idle_timeout_ms is not None and self._last_arrival is not None:
            idle = now_ms - self._last_arrival
            if idle < self.idle_timeout_ms or self._wm_at_arrival is None or self._wm_at_arrival <= -(1 << 61):
                return []
            wm = self._wm_at_arrival + idle
        else:
            return []
        if wm <= ex.wm:
            return []
        ex.wm = wm
        if wm >= ex.nxt:
            return ex.close(wm, now_ms)
        return []

    def flush(self) -> list:
        """End of input: emit every open window (never an incomplete count window)."""
        return self.executor.flush(self._now)

    def snapshot(self) -> Any:
        """Plain JSON-able state; pass it as ``resume_state`` to continue after the last row emitted."""
        return self._snapshot(encode(self.executor.state()))

    def checkpoint_snapshot(self) -> Any:
        """``snapshot()`` for a checkpoint: the window state handed over unencoded, for the checkpoint to
        encode entry by entry (it writes the same JSON)."""
        from edgestream_hub.checkpoint import Entries  # loaded by then in a hub that checkpoints

        return self._snapshot(Entries(self.executor.state(), encode))

    def _snapshot(self, state: Any) -> Any:
        ex = self.executor
        return {
            "version": STATE_VERSION,
            "query": self.query,
            "wm": ex.wm,
            "counters": {"dead": ex.dead, "late": ex.late, "emitted": ex.emitted, "limited": ex.limited},
            "state": state,
            "analytic": encode([a.state for a in self.program.analytics]) if self.plan.mode != "join" else [],
        }

    def _restore(self, st: Any) -> None:
        if not isinstance(st, dict) or not isinstance(st.get("version"), int):
            raise SqlError("resume_state is not a snapshot of this processor")
        if st["version"] != STATE_VERSION:
            raise SqlError(f"resume_state holds window state of format {st['version']}, this version keeps format "
                           f"{STATE_VERSION}: start without it")
        if st.get("query") != self.query:
            saved = " ".join(str(st.get("query")).split())
            cut = f"{saved[:120]}..." if len(saved) > 120 else saved
            raise SqlError(f"its state was saved by a different query ({cut})")
        ex = self.executor
        ex.wm = st["wm"]
        c = st.get("counters") or {}
        ex.dead, ex.late, ex.emitted = c.get("dead", 0), c.get("late", 0), c.get("emitted", 0)
        ex.limited = c.get("limited", 0)
        ex.restore(decode(st["state"]))
        for a, s in zip(getattr(self.program, "analytics", []), decode(st.get("analytic") or [])):
            a.state = s

    # -- extras -------------------------------------------------------------------
    @property
    def metrics(self) -> dict:
        """Counters: records dead-lettered, late records, rows emitted, records and states a state limit
        dead-lettered or emitted early, window/group states held."""
        ex = self.executor
        return {"dead_letters": ex.dead, "late_records": ex.late, "rows_emitted": ex.emitted,
                "limited_records": ex.limited, "live_states": self._live_states(), "watermark": ex.wm}

    def state_stats(self) -> dict[str, int]:
        """The size of the state held now, for the engine's gauges (read about once a second).

        ``live_states``: open windows and groups (sessions; for sliding and count windows the records
        they hold; for a window of rows or a stream join, the buffered records) plus the partitions
        of analytic functions. ``held_bytes``: approximate bytes of the values held by holistic
        aggregates (collect, count DISTINCT, median, percentile), buffered records (sliding and count
        windows, windows of rows, join buffers) and analytic state. Both fall when windows close.
        """
        held = self.executor.held_bytes() + sum(approx_bytes(a.state) for a in self._analytics())
        return {"live_states": self._live_states(), "held_bytes": held}

    def state_summary(self) -> dict[str, Any]:
        """What its state holds, for ``edgestream state inspect``: the mode, the watermark, open windows
        (``[start, end, groups]``), distinct keys, records or sessions held, and the counters."""
        ex = self.executor
        wm = ex.wm if isinstance(ex.wm, int) and abs(ex.wm) < (1 << 60) else None
        return {"mode": self.plan.mode, "watermark": wm, **ex.summary(), "emitted": ex.emitted, "late": ex.late,
                "dead_letters": ex.dead}

    def _analytics(self) -> list:
        return getattr(self.program, "analytics", [])

    def _live_states(self) -> int:
        return self.executor.live_states() + sum(len(a.state) for a in self._analytics())

    @property
    def streams(self) -> list[str]:
        """The names of the streams the query reads (FROM, then joined streams; tables excluded)."""
        return [s.name for s in self.plan.query.streams]

    def explain(self) -> str:
        return explain(self.plan, self.time_field, self.lateness_ms)

    def refresh_tables(self) -> None:
        """Reload every lookup table (file, SQLite or callable) and rebuild its join index."""
        for t in getattr(self.program, "tables", []):
            refresh = getattr(t.loader, "refresh", None)
            if callable(refresh):
                refresh()
            t.load()

    @property
    def source(self) -> str:
        """The generated Python source (for debugging and EXPLAIN)."""
        return self.program.source


def now_ms() -> int:
    return int(time.time() * 1000)
