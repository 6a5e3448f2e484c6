"""Test-side sequence check: every gap, duplicate and reboot in what agents sent, listed.

The hub counts these as it ingests (``edgestream_hub.wire.SeqTracker``, bounded and
counting only); tests and benchmarks need the exact seqs, so they use this.

Every result an agent sends carries its boot id and a per-boot sequence
number (see docs/wire.md). Fed the decoded messages in arrival order,
``SeqCheck`` tells:

- a *duplicate*: a seq seen again for the same device and boot (a resend
  after a lost PUBACK; the first copy is the one to keep),
- a *gap*: seqs that never arrived (results the agent dropped while offline;
  its ``results_dropped`` health metric counts them),
- a *reboot*: a new boot id for a device.

>>> c = SeqCheck()
>>> for s in (0, 1, 1, 3):
...     _ = c.feed({"dev": "d", "boot": 1, "kind": "results", "items": [{"seq": s}]})
>>> r = c.report("d", 1)
>>> (r.duplicates, r.missing, r.out_of_order)
([1], [2], 0)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class BootReport:
    """What arrived from one (device, boot)."""

    received: int = 0                                     # items, duplicates included
    order: list[int] = field(default_factory=list)        # unique seqs in first-arrival order
    duplicates: list[int] = field(default_factory=list)   # seqs that arrived again
    missing: list[int] = field(default_factory=list)      # seqs below the highest that never came
    out_of_order: int = 0                                 # unique seqs that came after a higher one

    @property
    def unique(self) -> int:
        return len(self.order)

    def missing_runs(self) -> list[tuple[int, int]]:
        """Gaps as inclusive (first, last) ranges."""
        runs: list[tuple[int, int]] = []
        for s in self.missing:
            if runs and runs[-1][1] == s - 1:
                runs[-1] = (runs[-1][0], s)
            else:
                runs.append((s, s))
        return runs


class SeqCheck:
    """Accumulates decoded ``results``/``readings`` messages; reports per device and boot."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, int], set[int]] = {}
        self._reports: dict[tuple[str, int], BootReport] = {}
        self._top: dict[tuple[str, int], int] = {}
        self.boots: dict[str, list[int]] = {}

    def feed(self, msg: dict[str, Any]) -> list[int]:
        """Record one decoded batch message; returns the seqs in it that were duplicates."""
        if msg.get("kind") not in ("results", "readings"):
            return []
        dev, boot = msg["dev"], msg["boot"]
        key = (dev, boot)
        if key not in self._seen:
            self._seen[key] = set()
            self._reports[key] = BootReport()
            self.boots.setdefault(dev, []).append(boot)
        seen, rep = self._seen[key], self._reports[key]
        dups = []
        for item in msg["items"]:
            s = item["seq"]
            rep.received += 1
            if s in seen:
                rep.duplicates.append(s)
                dups.append(s)
                continue
            if seen and s < self._top[key]:
                rep.out_of_order += 1
            self._top[key] = max(self._top.get(key, s), s)
            seen.add(s)
            rep.order.append(s)
        return dups

    def report(self, dev: str, boot: int) -> BootReport:
        """The report of one boot; ``missing`` lists seqs 0..max that never arrived."""
        rep = self._reports.get((dev, boot), BootReport())
        seen = self._seen.get((dev, boot), set())
        top = max(seen) if seen else -1
        rep.missing = [s for s in range(top + 1) if s not in seen]
        return rep
