"""Bounded state: ``max_keys`` and ``max_state_bytes`` per SQL processor, and what happens at the bound.

A query's state is a set of *states*, each of which one emission ends: a
group in a tumbling or hopping window (or in the one global window of a
``GROUP BY`` without a window), a session, a group of a sliding or count
window, a window of rows (no aggregates), a window of a stream join.
``max_keys`` bounds how many are held at once; ``max_state_bytes`` bounds
the bytes the state gauge reports (``Executor.held_bytes``: values held by
holistic aggregates and buffered records; fixed-size aggregates such as
count or avg are bounded by ``max_keys``). The byte estimate is read every
``CHECK_EVERY`` records (a sample costs ~0.5 ms whatever the state holds)
and, while over, whenever windows close; the key count is checked whenever
a state is created.

At the bound, ``on_limit`` says what gives:

- ``emit_early``: the oldest states (the oldest window of tumbling and
  hopping groups, the session that would end first, the least recently used
  sliding or count group, the oldest window of rows or of a join) are closed
  and emitted now, each row marked ``_early: true``, until the state is
  within bounds. Records that arrive later for the same window and group
  start over in a state of their own. With result ids (``id_field``), a
  row emitted early gets an id of its own (``early_id``), so an upserting
  sink keeps every part of a window; the last part keeps the window's id.
- ``dead_letter``: a record that needs a new state while ``max_keys`` are
  held, or any record the state would take while it is over
  ``max_state_bytes``, goes to the dead-letter output with the reason;
  every other record is handled as usual, and exactly.

Either way each dead-lettered record and each state emitted early is
counted (``limited``, the ``edgestream_processor_limited_records_total``
metric). Below the bounds nothing changes: results are exact.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Optional

from .errors import SqlError

#: what happens when a bound is reached
POLICIES = ("emit_early", "dead_letter")
#: records between two reads of the byte estimate
CHECK_EVERY = 4096
#: the field that marks a row emitted early
EARLY = "_early"
LIMITED_METRIC = "edgestream_processor_limited_records_total"


@dataclass(frozen=True)
class Limits:
    """The bounds of one processor's state; ``None`` is no bound."""

    max_keys: Optional[int] = None
    max_state_bytes: Optional[int] = None
    on_limit: str = "emit_early"

    def __post_init__(self) -> None:
        for name in ("max_keys", "max_state_bytes"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise SqlError(f"{name} must be a whole number >= 1, got {v!r}")
        if self.on_limit not in POLICIES:
            raise SqlError(f"on_limit must be one of {', '.join(POLICIES)}, got {self.on_limit!r}")

    @property
    def active(self) -> bool:
        return self.max_keys is not None or self.max_state_bytes is not None


NO_LIMITS = Limits()


def early_id(base: str, part: int) -> str:
    """The id of a row emitted early: its window's result id with the processor's ``limited`` count
    at the emission (kept in checkpoints), hashed to the same 16 hex digits.

    >>> early_id("32539619c9a1e653", 0)
    'b9f4fe88c469f824'
    """
    return hashlib.sha256(f"{base}/early/{part}".encode()).hexdigest()[:16]


class Bounded:
    """The limit logic every executor shares; an executor provides ``keys()``, ``held_bytes()`` and
    ``shed_oldest(now)``.

    Called by the executors (and the generated code of tumbling and hopping windows) as:
    ``admit(r, new)`` before a record goes into the state, ``new`` being the states it would create
    (False: the record was dead-lettered, leave it); ``make_room(now)`` after a record created
    states (the rows emitted early to make room); ``check_bytes(now)`` every ``CHECK_EVERY`` records.
    """

    limits: Limits = NO_LIMITS
    #: under ``dead_letter``: the state was over ``max_state_bytes`` at the last reading
    full = False
    #: records dead-lettered and states emitted early because of a limit
    limited = 0
    #: records dead-lettered for any reason (the executor's counter)
    dead = 0
    #: the field of the result id, empty without ids (the executor's)
    id_field = ""
    ctx: Any

    # -- what the executor provides ----------------------------------------------
    def keys(self) -> int:
        """States held now, as ``max_keys`` counts them."""
        return 0

    def held_bytes(self) -> int:
        return 0

    def shed_oldest(self, now: int) -> tuple[list, int]:
        """Close and emit the oldest state(s) now: (rows, states closed); (``[]``, 0) when none is held."""
        return [], 0

    # -- the policy ---------------------------------------------------------------------
    def admit(self, r: Any, new: int) -> bool:
        lim = self.limits
        if lim.on_limit != "dead_letter":
            return True
        if self.full:
            why = (f"state limit: the state holds more than max_state_bytes ({lim.max_state_bytes}); "
                   "records are refused until windows close")
        elif new and lim.max_keys is not None and self.keys() + new > lim.max_keys:
            why = (f"state limit: max_keys ({lim.max_keys}) states held; this record needs a new one "
                   "(refused until windows close)")
        else:
            return True
        self._count(1)
        self.dead += 1
        self.ctx.dead_letter(r, why)
        return False

    def make_room(self, now: int) -> list:
        lim = self.limits
        if lim.on_limit != "emit_early" or lim.max_keys is None or self.keys() <= lim.max_keys:
            return []
        out: list = []
        while self.keys() > lim.max_keys:
            if not self._shed(now, out):
                break
        return out

    def check_bytes(self, now: int) -> list:
        lim = self.limits
        if lim.max_state_bytes is None:
            return []
        over = self.held_bytes() > lim.max_state_bytes
        if lim.on_limit == "dead_letter":
            self.full = over
            return []
        out: list = []
        while over and self._shed(now, out):
            over = self.held_bytes() > lim.max_state_bytes
        return out

    def recheck_full(self) -> None:
        """After windows closed while ``full``: the state may have room again."""
        if self.full:
            self.full = self.held_bytes() > (self.limits.max_state_bytes or 0)

    def _shed(self, now: int, out: list) -> bool:
        rows, n = self.shed_oldest(now)
        if not n:
            return False
        idf, part = self.id_field, self.limited
        for row in rows:
            row[EARLY] = True
            if idf and idf in row:
                row[idf] = early_id(row[idf], part)
        out.extend(rows)
        self._count(n)
        return True

    def _count(self, n: int) -> None:
        self.limited += n
        count = getattr(self.ctx, "count", None)
        if count is not None:
            count(LIMITED_METRIC, n)
