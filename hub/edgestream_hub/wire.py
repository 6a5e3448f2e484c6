"""Wire messages -> flat records, with per-device boot/sequence tracking.

``WireDecoder.decode(payload, topic)`` turns one wire message into records:
a ``results`` batch gives one record per item with ``device``, ``boot``,
``seq``, ``sensor``, ``window``, ``start``, ``end``, the aggregates as
top-level keys and ``ts`` (= ``end``, the event time); a ``readings`` batch
gives ``device``, ``boot``, ``seq``, ``sensor``, ``t``, ``value`` and ``ts``
(= ``t``). ``status``, ``metrics`` and ``ack`` messages give one record with
``kind``. An aggregate named like a fixed key is prefixed with ``agg_``.

Sequence tracking is per device and message kind: a new boot id counts a
reboot, a forward jump counts a gap (and the records missing in it), a
sequence number seen again in the same boot is a duplicate and is dropped.
A record that arrives late to fill a gap is kept; ``SeqTracker.lost`` keeps
what each device lost since the caller last took it (for the data-loss log).
Invalid input raises ``WireError`` naming the field; nothing else escapes.
JSON is parsed strictly (``jsonio``): ``NaN``/``Infinity`` are refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field as dc_field
from typing import Any

from edgestream_hub import jsonio
from edgestream_shared import topics as _topics
from edgestream_shared.decoder import decode
from edgestream_shared.errors import WireError

Record = dict[str, Any]
_RESULT_KEYS = frozenset(("device", "boot", "seq", "sensor", "window", "start", "end", "ts"))
_MAX_MISSING = 4096  # gap seq numbers remembered per stream (to accept late fills)
_MAX_NAMES = 4096  # distinct sensor/window names shared between records (cleared when full)
_MAX_LOST = 10_000  # devices remembered in SeqTracker.lost until the caller takes it


def _loads(text: str) -> Any:
    # the shared decoder checks every number it accepts, so the per-float range check is not needed
    return jsonio.loads(text, check_range=False)


@dataclass
class _Stream:
    boot: int
    high: int  # highest seq seen in this boot
    missing: set[int] = dc_field(default_factory=set)


@dataclass
class Loss:
    """What one device lost since it was last reported: gaps, records missing, and the last jump."""

    gaps: int = 0
    missing: int = 0
    boot: int = 0
    after: int = 0  # the last gap: seq `after` was followed by seq `to`
    to: int = 0


@dataclass
class SeqStats:
    gaps: int = 0
    missing: int = 0
    duplicates: int = 0
    reboots: int = 0
    late_fills: int = 0  # records that arrived late into a gap (kept; `missing` still counts the gap)
    streams: int = 0  # streams (re)started: a device's first item seen, or a new boot (no seq to compare with)

    def copy(self) -> "SeqStats":
        return SeqStats(self.gaps, self.missing, self.duplicates, self.reboots, self.late_fills, self.streams)

    def since(self, before: "SeqStats") -> "SeqStats":
        """What was counted after ``before`` (a ``copy()`` taken earlier)."""
        return SeqStats(self.gaps - before.gaps, self.missing - before.missing, self.duplicates - before.duplicates,
                        self.reboots - before.reboots, self.late_fills - before.late_fills,
                        self.streams - before.streams)


class SeqTracker:
    """Per (device, kind) boot id and sequence tracking. ``accept`` says whether to keep an item."""

    def __init__(self, max_streams: int = 100_000) -> None:
        self._streams: dict[tuple[str, str], _Stream] = {}
        self.max_streams = max_streams
        self.stats = SeqStats()
        self.lost: dict[str, Loss] = {}  # device -> losses not yet reported (the caller empties it)

    def accept(self, device: str, kind: str, boot: int, seq: int) -> bool:
        key = (device, kind)
        s = self._streams.get(key)
        st = self.stats
        if s is None:
            if len(self._streams) >= self.max_streams:
                self._streams.pop(next(iter(self._streams)))
            self._streams[key] = _Stream(boot, seq)
            st.streams += 1
            return True
        if boot != s.boot:
            st.reboots += 1
            st.streams += 1
            s.boot, s.high = boot, seq
            s.missing.clear()
            return True
        if seq == s.high + 1:
            s.high = seq
            return True
        if seq > s.high:
            gap = seq - s.high - 1
            st.gaps += 1
            st.missing += gap
            loss = self.lost.get(device)
            if loss is None and len(self.lost) < _MAX_LOST:
                loss = self.lost[device] = Loss()
            if loss is not None:
                loss.gaps += 1
                loss.missing += gap
                loss.boot, loss.after, loss.to = boot, s.high, seq
            if len(s.missing) + gap <= _MAX_MISSING:
                s.missing.update(range(s.high + 1, seq))
            s.high = seq
            return True
        if seq in s.missing:
            s.missing.discard(seq)
            st.late_fills += 1
            return True
        st.duplicates += 1
        return False

    def in_order(self, device: str, kind: str, boot: int, first: int, last: int, n: int) -> bool:
        """The common case in one step: ``n`` items whose seqs run ``first, first+1, ..., last``
        and continue the stream exactly. Returns True (and advances the stream) if so, else
        False without changing anything; the caller then uses ``accept`` per item.
        The caller must have checked that the seqs are consecutive."""
        s = self._streams.get((device, kind))
        if s is None or boot != s.boot or first != s.high + 1 or last != first + n - 1:
            return False
        s.high = last
        return True

    def claim(self, device: str, kind: str, boot: int, upto: int) -> None:
        """Count seqs up to ``upto`` as seen (missing), as if a gap had shown them: the device registry found
        them delivered and lost where no gap shows. A later item after ``upto`` then continues the stream
        (no second count), and a claimed one arriving late is a gap fill."""
        s = self._streams.get((device, kind))
        if s is None or s.boot != boot or upto <= s.high:
            return
        if len(s.missing) + upto - s.high <= _MAX_MISSING:
            s.missing.update(range(s.high + 1, upto + 1))
        s.high = upto

    def snapshot(self) -> dict[str, Any]:
        return {f"{d}/{k}": [s.boot, s.high] for (d, k), s in self._streams.items()}


_COUNTERS = (("gaps", "edgestream_source_gaps_total"), ("missing", "edgestream_source_missing_records_total"),
             ("duplicates", "edgestream_source_duplicates_total"), ("reboots", "edgestream_source_reboots_total"),
             ("late_fills", "edgestream_source_gap_fills_total"))


class WireDecoder:
    """Decode wire payloads into records; counts what it drops in ``tracker.stats``.

    ``last`` is the message the last ``decode`` read (the device registry looks at it)."""

    def __init__(self, prefix: str | None = "edgestream", track: bool = True) -> None:
        self.prefix = prefix
        self.tracker = SeqTracker() if track else None
        self._reported = SeqStats()
        # one str object per distinct sensor/window name, shared by every record that carries it
        # (json.loads makes a new one per item: ~50 bytes each on every queued record)
        self._names: dict[str, str] = {}
        self.last: dict[str, Any] | None = None

    def count_into(self, ctx: Any) -> None:
        """Add what the tracker counted since the last call to ``ctx``'s source metrics."""
        if self.tracker is None:
            return
        st, old = self.tracker.stats, self._reported
        for name, metric in _COUNTERS:
            d = getattr(st, name) - getattr(old, name)
            if d:
                ctx.count(metric, d)
                setattr(old, name, getattr(st, name))

    def decode(self, payload: bytes | bytearray | memoryview | str, topic: str | None = None) -> list[Record]:
        self.last = None
        m = decode(payload, loads=_loads)
        dev = m["dev"]
        if topic is not None and self.prefix is not None:
            tdev, _kind = _topics.parse(topic, self.prefix)
            if tdev != dev:
                raise WireError(f"dev: {dev!r} does not match the topic's device {tdev!r}")
        self.last = m
        kind = m["kind"]
        boot = m.get("boot")
        tr = self.tracker
        if kind == "results":
            items = m["items"]
            if tr is not None and not self._in_order(tr, dev, kind, boot, items):
                items = [it for it in items if tr.accept(dev, kind, boot, it["seq"])]
            out: list[Record] = []
            append = out.append
            disjoint = _RESULT_KEYS.isdisjoint
            names = self._names
            if len(names) > _MAX_NAMES:
                names.clear()
            name = names.setdefault
            for it in items:
                aggs = it["aggs"]
                end = it["end"]
                s, w = it["sensor"], it["window"]
                r = {"device": dev, "boot": boot, "seq": it["seq"], "sensor": name(s, s), "window": name(w, w),
                     "start": it["start"], "end": end}
                if disjoint(aggs):
                    r.update(aggs)
                else:
                    for k, v in aggs.items():
                        r["agg_" + k if k in _RESULT_KEYS else k] = v
                r["ts"] = end
                append(r)
            return out
        if kind == "readings":
            items = m["items"]
            if tr is not None and not self._in_order(tr, dev, kind, boot, items):
                items = [it for it in items if tr.accept(dev, kind, boot, it["seq"])]
            names = self._names
            if len(names) > _MAX_NAMES:
                names.clear()
            name = names.setdefault
            return [{"device": dev, "boot": boot, "seq": it["seq"], "sensor": name(it["sensor"], it["sensor"]),
                     "t": it["t"], "value": it["value"], "ts": it["t"]} for it in items]
        r = {"device": dev, "kind": kind}
        for k, v in m.items():
            if k not in ("v", "dev", "kind"):
                r[k] = v
        return [r]

    @staticmethod
    def _in_order(tr: SeqTracker, dev: str, kind: str, boot: int, items: list[dict[str, Any]]) -> bool:
        """True when the whole batch continues its stream in order (then nothing is dropped)."""
        first = items[0]["seq"]
        n = len(items)
        last = items[-1]["seq"]
        if last != first + n - 1:
            return False
        # first and last fit; check every seq in between is consecutive (one C-level compare)
        if n > 2 and [it["seq"] for it in items] != list(range(first, last + 1)):
            return False
        return tr.in_order(dev, kind, boot, first, last, n)
