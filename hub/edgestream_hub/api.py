"""The contracts between the hub engine and its components.

Records are plain dicts. A processor gets batches of records and returns the
records it emits; it never sleeps and never blocks on I/O. Records it rejects
go to ``ctx.dead_letter(record, reason)``; late event-time records go to
``ctx.late(record)``. Stateful components follow one lifecycle: the engine
builds them with ``resume_state`` (what ``snapshot()`` returned earlier, or
None) and snapshots them at checkpoints.
"""

from __future__ import annotations

from typing import Any, Protocol

Record = dict[str, Any]
#: the field a window result carries its stable id in (the SQL processor's default ``id_field``); a sink with
#: fixed columns that lack it leaves it out rather than refusing the record
RESULT_ID = "_id"


class Context(Protocol):
    """What the engine hands a component: where rejected and late records go, and its label."""

    label: str

    def dead_letter(self, record: Any, reason: str) -> None: ...

    def late(self, record: Record) -> None: ...


class Processor(Protocol):
    """A pipeline stage between sources and sinks."""

    def process(self, records: list[Record], now_ms: int) -> list[Record]:
        """Consume a batch (in arrival order); return what it emits, in order."""

    def tick(self, now_ms: int) -> list[Record]:
        """Wall-clock tick (called when idle too): emit what time alone closes."""

    def flush(self) -> list[Record]:
        """End of input or drain on stop: emit everything still open."""

    def snapshot(self) -> Any:
        """Plain value (JSON-able) that resumes after the last record emitted."""


class SimpleContext:
    """A Context that keeps rejected and late records in lists (CLI, tests, benchmarks)."""

    def __init__(self, label: str = "main") -> None:
        self.label = label
        self.dead: list[tuple[Any, str]] = []
        self.late_records: list[Record] = []

    def dead_letter(self, record: Any, reason: str) -> None:
        self.dead.append((record, reason))

    def late(self, record: Record) -> None:
        self.late_records.append(record)
