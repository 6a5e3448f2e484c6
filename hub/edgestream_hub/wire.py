"""Wire messages -> flat records, with per-device boot/sequence tracking.

``WireDecoder.decode(payload, topic)`` turns one wire message into records:
a ``results`` batch gives one record per item with ``device``, ``boot``,
``seq``, ``sensor``, ``window``, ``start``, ``end``, the aggregates as
top-level keys and ``ts`` (= ``end``, the event time); a ``readings`` batch
gives ``device``, ``boot``, ``seq``, ``sensor``, ``t``, ``value`` and ``ts``
(= ``t``). ``status``, ``metrics`` and ``ack`` messages give one record with
``kind``. An aggregate named like a fixed key is prefixed with ``agg_``.
``boot`` and ``seq`` must be in 0..2**31-1 (``MAX_SEQ``, docs/wire.md).

Sequence tracking (``SeqTracker``) is per device and message kind. A new boot
id counts a reboot; a forward jump counts a gap and the records missing in it;
a seq seen again in the same boot is a duplicate and is dropped. The tracker
remembers what it has not seen as ranges ("gaps"), so a record that arrives
late into a gap is kept whatever the gap's size, and only a seq really seen
is dropped. Memory is bounded: at most ``MAX_GAPS`` open gaps per stream;
past that the oldest is forgotten (counted, and reported in
``SeqTracker.forgot``), and a record whose seq falls below a forgotten gap is
kept unchecked (counted): it may be a late fill or a duplicate, and losing a
record is worse than delivering one twice. Seqs below the first one the hub
saw of a boot (records that arrive out of order at the start) are tracked the
same way but were never counted missing.

``SeqTracker.lost``, ``.duplicated`` and ``.forgot`` keep, per device, what
happened since the caller last took them (for the rate-limited log lines).
Invalid input raises ``WireError`` naming the field; nothing else escapes.
JSON is parsed strictly (``jsonio``): ``NaN``/``Infinity`` are refused.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from dataclasses import asdict, dataclass, fields
from operator import itemgetter
from typing import Any

from edgestream_hub import jsonio
from edgestream_shared import topics as _topics
from edgestream_shared.decoder import decode
from edgestream_shared.errors import WireError

Record = dict[str, Any]
_RESULT_KEYS = frozenset(("device", "boot", "seq", "sensor", "window", "start", "end", "ts"))
_AGGS = itemgetter("aggs")
MAX_SEQ = 2**31 - 1  # the largest boot id and seq the protocol allows (a board's signed 32-bit slot)
MAX_GAPS = 64  # open gaps (ranges of unseen seqs) remembered per stream: at most ~1 KiB each
_MAX_NAMES = 4096  # distinct sensor/window names shared between records (cleared when full)
_MAX_LOST = 10_000  # devices remembered in SeqTracker.lost/duplicated/forgot until the caller takes them


def _loads(data: bytes | bytearray | memoryview | str) -> Any:
    """The payload's JSON, read from its bytes (no copy to str); text that is not UTF-8 raises the
    ``UnicodeDecodeError`` the shared decoder words its refusal with. The shared decoder checks every number
    it accepts, so the per-float range check is not needed."""
    try:
        return jsonio.loads(data, check_range=False)
    except ValueError:
        if not isinstance(data, str):
            bytes(data).decode()  # not UTF-8: say so as str.decode does
        raise


class _Stream:
    """One (device, kind) in one boot: the highest seq seen and the ranges below it not seen yet."""

    __slots__ = ("boot", "high", "first", "floor", "gaps")

    def __init__(self, boot: int, seq: int) -> None:
        self.reset(boot, seq)

    def reset(self, boot: int, seq: int) -> None:
        self.boot = boot
        self.high = seq  # highest seq seen in this boot
        self.first = seq  # the first seq seen: what lies below it was never counted missing
        self.floor = 0  # seqs below it fell under a forgotten gap: kept unchecked
        # unseen seqs as ascending inclusive ranges, flat: lo0, hi0, lo1, hi1, ... (None: no gap)
        self.gaps: array[int] | None = array("q", (0, seq - 1)) if seq else None


@dataclass
class Loss:
    """What one device lost since it was last reported: gaps, records missing, and the last jump."""

    gaps: int = 0
    missing: int = 0
    boot: int = 0
    after: int = 0  # the last gap: seq `after` was followed by seq `to`
    to: int = 0


@dataclass
class Dups:
    """Duplicates one device sent since it was last reported, and the last one."""

    records: int = 0
    boot: int = 0
    seq: int = 0


@dataclass
class Forgot:
    """Gaps of one device forgotten since it was last reported (past ``MAX_GAPS``), and the last one."""

    gaps: int = 0
    boot: int = 0
    first: int = 0  # the last forgotten gap was seqs first..last
    last: int = 0


@dataclass
class SeqStats:
    gaps: int = 0
    missing: int = 0
    duplicates: int = 0
    reboots: int = 0
    late_fills: int = 0  # records that arrived late into a gap (kept; `missing` still counts the gap)
    forgotten_gaps: int = 0  # gaps forgotten past MAX_GAPS
    unchecked: int = 0  # records kept without a duplicate check (their seq fell below a forgotten gap)
    streams: int = 0  # streams (re)started: a device's first item seen, or a new boot (no seq to compare with)

    def copy(self) -> "SeqStats":
        return SeqStats(**asdict(self))

    def since(self, before: "SeqStats") -> "SeqStats":
        """What was counted after ``before`` (a ``copy()`` taken earlier)."""
        return SeqStats(**{f.name: getattr(self, f.name) - getattr(before, f.name) for f in fields(self)})


class SeqTracker:
    """Per (device, kind) boot id and sequence tracking. ``accept`` says whether to keep an item.

    Exact while a stream has at most ``max_gaps`` open gaps: every distinct seq is
    accepted once, every repeat is a duplicate, in any order of arrival.
    """

    def __init__(self, max_streams: int = 100_000, max_gaps: int = MAX_GAPS) -> None:
        self._streams: dict[tuple[str, str], _Stream] = {}
        self.max_streams = max_streams
        self.max_gaps = max_gaps
        self.stats = SeqStats()
        # device -> what is not yet reported (the caller empties these)
        self.lost: dict[str, Loss] = {}
        self.duplicated: dict[str, Dups] = {}
        self.forgot: dict[str, Forgot] = {}

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
            s.reset(boot, seq)
            return True
        high = s.high
        if seq == high + 1:
            s.high = seq
            return True
        if seq > high:
            self._gap(device, s, seq)
            return True
        if seq < s.floor:
            st.unchecked += 1
            return True
        g = s.gaps
        if g is not None:
            i = bisect_left(g, seq)
            if i & 1 or (i < len(g) and g[i] == seq):  # inside g[k]..g[k+1]
                self._fill(device, s, i - (i & 1), seq)
                if seq > s.first:
                    st.late_fills += 1
                return True
        st.duplicates += 1
        d = self.duplicated.get(device)
        if d is None and len(self.duplicated) < _MAX_LOST:
            d = self.duplicated[device] = Dups()
        if d is not None:
            d.records += 1
            d.boot, d.seq = boot, seq
        return False

    def _gap(self, device: str, s: _Stream, seq: int) -> None:
        """``seq`` jumped past ``s.high + 1``: count the gap and remember it."""
        st = self.stats
        gap = seq - s.high - 1
        st.gaps += 1
        st.missing += gap
        loss = self.lost.get(device)
        if loss is None and len(self.lost) < _MAX_LOST:
            loss = self.lost[device] = Loss()
        if loss is not None:
            loss.gaps += 1
            loss.missing += gap
            loss.boot, loss.after, loss.to = s.boot, s.high, seq
        if s.gaps is None:
            s.gaps = array("q", (s.high + 1, seq - 1))
        else:
            s.gaps.extend((s.high + 1, seq - 1))
            self._bound(device, s)
        s.high = seq

    def _fill(self, device: str, s: _Stream, k: int, seq: int) -> None:
        """``seq`` arrived inside the gap at ``k``: take it out of the gap (splitting it if need be)."""
        g = s.gaps
        assert g is not None
        lo, hi = g[k], g[k + 1]
        if lo == hi:
            del g[k:k + 2]
            if not g:
                s.gaps = None
        elif seq == lo:
            g[k] = lo + 1
        elif seq == hi:
            g[k + 1] = hi - 1
        else:
            g[k + 1:k + 1] = array("q", (seq - 1, seq + 1))
            self._bound(device, s)

    def _bound(self, device: str, s: _Stream) -> None:
        """Past ``max_gaps``: forget the oldest gap; seqs below its end can no longer be checked."""
        g = s.gaps
        assert g is not None
        while len(g) > 2 * self.max_gaps:
            lo, hi = g[0], g[1]
            del g[0:2]
            s.floor = hi + 1
            self.stats.forgotten_gaps += 1
            f = self.forgot.get(device)
            if f is None and len(self.forgot) < _MAX_LOST:
                f = self.forgot[device] = Forgot()
            if f is not None:
                f.gaps += 1
                f.boot, f.first, f.last = s.boot, lo, hi

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
        if s.gaps is None:
            s.gaps = array("q", (s.high + 1, upto))
        else:
            s.gaps.extend((s.high + 1, upto))
            self._bound(device, s)
        s.high = upto

    def snapshot(self) -> dict[str, Any]:
        return {f"{d}/{k}": [s.boot, s.high] for (d, k), s in self._streams.items()}

    def state(self) -> list[list[Any]]:
        """Every stream's position, JSON-able, for a checkpoint: ``[device, kind, boot, high, first, floor,
        [gap lo, gap hi, ...]]`` each. ``restore`` gives exactly this tracker back (counters aside)."""
        return [[d, k, s.boot, s.high, s.first, s.floor, list(s.gaps) if s.gaps is not None else []]
                for (d, k), s in self._streams.items()]

    def restore(self, state: Any) -> None:
        """Continue from ``state()`` taken earlier: a seq seen then is a duplicate now. Raises ValueError
        naming the entry that is not a position (nothing is changed then)."""
        if not isinstance(state, list):
            raise ValueError(f"sequence positions: expected a list, got {type(state).__name__}")
        streams: dict[tuple[str, str], _Stream] = {}
        for i, e in enumerate(state):
            ok = isinstance(e, list) and len(e) == 7 and isinstance(e[0], str) and isinstance(e[1], str) and all(
                type(x) is int for x in e[2:6]) and isinstance(e[6], list) and len(e[6]) % 2 == 0 and all(
                type(x) is int for x in e[6])
            if not ok:
                raise ValueError(f"sequence positions: entry {i} is not [device, kind, boot, high, first, floor, "
                                 f"gaps]: {str(e)[:120]}")
            s = _Stream(e[2], e[3])
            s.first, s.floor = e[4], e[5]
            s.gaps = array("q", e[6]) if e[6] else None
            streams[(e[0], e[1])] = s
        while len(streams) > self.max_streams:
            streams.pop(next(iter(streams)))
        self._streams = streams


_COUNTERS = (("gaps", "edgestream_source_gaps_total"), ("missing", "edgestream_source_missing_records_total"),
             ("duplicates", "edgestream_source_duplicates_total"), ("reboots", "edgestream_source_reboots_total"),
             ("late_fills", "edgestream_source_gap_fills_total"),
             ("forgotten_gaps", "edgestream_source_forgotten_gaps_total"),
             ("unchecked", "edgestream_source_unchecked_records_total"))


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
        self._topics: dict[str, str] = {}  # topic -> its device, for topics that parsed (bounded)
        self.last: dict[str, Any] | None = None
        # the tracker may have counted something since count_into last ran (a batch that did not simply
        # continue its stream in order): the common case skips count_into and the log checks
        self.counted = False

    def count_into(self, ctx: Any) -> None:
        """Add what the tracker counted since the last call to ``ctx``'s source metrics."""
        self.counted = False
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
            tdev = self._topics.get(topic)
            if tdev is None:
                tdev = _topics.parse(topic, self.prefix)[0]  # raises for a topic outside the layout
                if len(self._topics) >= _MAX_NAMES:
                    self._topics.clear()
                self._topics[topic] = tdev
            if tdev != dev:
                raise WireError(f"dev: {dev!r} does not match the topic's device {tdev!r}")
        self.last = m
        kind = m["kind"]
        boot = m.get("boot")
        if boot is not None and boot > MAX_SEQ:
            raise WireError(f"boot: {boot} is out of range (0..{MAX_SEQ})")
        tr = self.tracker
        if kind == "results":
            items = m["items"]
            seqs = _seqs(items)
            if tr is not None and not self._in_order(tr, dev, kind, boot, seqs):
                self.counted = True
                items = [it for it in items if tr.accept(dev, kind, boot, it["seq"])]
            names = self._names
            if len(names) > _MAX_NAMES:
                names.clear()
            name = names.setdefault
            if all(map(_RESULT_KEYS.isdisjoint, map(_AGGS, items))):  # no aggregate named like a record field
                return [{"device": dev, "boot": boot, "seq": it["seq"], "sensor": name(s := it["sensor"], s),
                         "window": name(w := it["window"], w), "start": it["start"], "end": (end := it["end"]),
                         **it["aggs"], "ts": end} for it in items]
            out: list[Record] = []
            for it in items:
                s, w = it["sensor"], it["window"]
                r = {"device": dev, "boot": boot, "seq": it["seq"], "sensor": name(s, s), "window": name(w, w),
                     "start": it["start"], "end": it["end"]}
                for k, v in it["aggs"].items():
                    r["agg_" + k if k in _RESULT_KEYS else k] = v
                r["ts"] = it["end"]
                out.append(r)
            return out
        if kind == "readings":
            items = m["items"]
            seqs = _seqs(items)
            if tr is not None and not self._in_order(tr, dev, kind, boot, seqs):
                self.counted = True
                items = [it for it in items if tr.accept(dev, kind, boot, it["seq"])]
            names = self._names
            if len(names) > _MAX_NAMES:
                names.clear()
            name = names.setdefault
            return [{"device": dev, "boot": boot, "seq": it["seq"], "sensor": name(s := it["sensor"], s),
                     "t": (t := it["t"]), "value": it["value"], "ts": t} for it in items]
        r = {"device": dev, "kind": kind}
        for k, v in m.items():
            if k not in ("v", "dev", "kind"):
                r[k] = v
        return [r]

    @staticmethod
    def _in_order(tr: SeqTracker, dev: str, kind: str, boot: int, seqs: list[int]) -> bool:
        """True when the whole batch continues its stream in order (then nothing is dropped)."""
        first = seqs[0]
        n = len(seqs)
        last = seqs[-1]
        if last != first + n - 1:
            return False
        # first and last fit; check every seq in between is consecutive (one C-level compare)
        if n > 2 and seqs != list(range(first, last + 1)):
            return False
        return tr.in_order(dev, kind, boot, first, last, n)


def _seqs(items: list[dict[str, Any]]) -> list[int]:
    """The items' seqs (the decoder checked they are integers >= 0); refuses one past ``MAX_SEQ``."""
    seqs = [it["seq"] for it in items]
    if max(seqs) > MAX_SEQ:
        i = next(i for i, s in enumerate(seqs) if s > MAX_SEQ)
        raise WireError(f"items[{i}].seq: {seqs[i]} is out of range (0..{MAX_SEQ})")
    return seqs
