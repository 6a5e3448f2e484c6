"""One path from a source's raw input to records: decode, sequence tracking, counting, dead letters.

The MQTT, serial and HTTP sources hand every payload to ``Ingest.payload``;
the file source hands every JSON line to ``Ingest.json_object`` and its own
refusals to ``Ingest.reject``. So every source:

- survives any payload: whatever decoding one payload raises (a ``WireError``,
  JSON nested too deep, bytes that are not UTF-8, ``NaN``, a number too large
  for a float, a value of the wrong type, or a bug) makes that payload's dead
  letter (bounded: ``edgestream_hub.deadletter``) and one count in
  ``edgestream_source_decode_errors_total``; ``payload`` never raises;
- exports the sequence counters of the wire protocol (gaps, missing records,
  duplicates, reboots, gap fills, forgotten gaps, unchecked records) under its label;
- logs what sequence tracking finds, not only counts it: a gap in a device's
  sequence numbers (data loss), duplicates dropped, and gaps forgotten past the
  tracker's bound are each a WARNING naming the devices, the first at once,
  later ones summarised at most once per ``loss_log_interval_s`` (10 s) per
  source and kind of line;
- feeds the device registry (``ctx.devices``, when the hub has a ``devices``
  section): every wire message it decoded, with how many items it kept and
  what the sequence tracking counted for it.

``Ingest.feed`` is how a source hands one unit of input to the engine
(``feed_many`` several payloads, one read's, as one unit): the
decode and the ``emit`` happen under the source's ``ctx.intake.lock``, so a
checkpoint never falls between the sequence positions moving and the records
reaching the pipelines; ``positions()``/``resume()`` are those positions in a
checkpoint.

Formats: ``wire`` (EdgeStream wire messages, flattened and sequence-tracked),
``json`` (an object or an array of objects: each item that is not an object is
its own dead letter, the others are kept) and ``raw`` (``{topic, payload}``).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, NamedTuple, Sequence

from edgestream_hub import jsonio
from edgestream_hub.components import ComponentContext
from edgestream_hub.deadletter import RawInput, clip
from edgestream_hub.wire import MAX_GAPS, WireDecoder

Record = dict[str, Any]
DECODE_ERRORS = "edgestream_source_decode_errors_total"
_LOSS_DEVICES = 10  # devices named in one data-loss line; the rest are summed up


class Decoded(NamedTuple):
    """What one payload gave: its records, how many items were refused, and why the whole payload was
    refused (``None`` if it was not; the dead letter's reason also names where it came from)."""

    records: list[Record]
    rejected: int
    error: str | None


class Ingest:
    """Decode payloads for one source; see the module doc. Safe to call from several threads."""

    def __init__(self, ctx: ComponentContext, fmt: str, *, prefix: str | None = None,
                 max_payload: int | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if fmt not in ("wire", "json", "raw"):
            raise ValueError(f"unknown payload format {fmt!r}")
        self.ctx = ctx
        self.format = fmt
        self.max_payload = max_payload
        self.clock = clock
        self.loss_log_interval_s = 10.0
        self._next_log = dict.fromkeys(_SEQ_LINES, 0.0)  # when each kind of line may be logged again
        self._wire: Any = None
        self._lock = threading.Lock()  # the sequence tracker is shared by an HTTP source's request threads
        self.devices = getattr(ctx, "devices", None)
        if fmt == "wire":
            self._wire = WireDecoder(prefix=prefix)
            if self.devices is not None:
                self.devices.ingests[ctx.label] = self  # the registry may claim seqs it found lost

    def payload(self, data: bytes | bytearray | memoryview | str, where: str, topic: str | None = None) -> Decoded:
        """Decode one payload into records; a refused payload is dead-lettered and counted. Never raises."""
        try:
            if self.max_payload is not None and len(data) > self.max_payload:
                raise ValueError(f"payload: {len(data)} bytes is over the {self.max_payload} byte limit")
            if self._wire is not None:
                feed = self.devices
                with self._lock:
                    if feed is None:
                        records = self._wire.decode(data, topic)
                    else:
                        stats = self._wire.tracker.stats
                        before = stats.copy()
                        records = self._wire.decode(data, topic)
                        feed.observe(self.ctx.label, self._wire.last, len(records), stats.since(before))
                    tr = self._wire.tracker  # something counted, or loss lines held back for the log
                    if self._wire.counted or (tr is not None and (tr.lost or tr.duplicated or tr.forgot)):
                        self._report()
                return Decoded(records, 0, None)
            if self.format == "raw":
                text = bytes(data).decode("utf-8", "backslashreplace") if not isinstance(data, str) else data
                return Decoded([{"topic": topic, "payload": text}], 0, None)
            return self._json(data, where)
        except Exception as e:  # any failure is this payload's, never the source's
            reason = why(e)
            self.reject(data, f"{where}: {reason}", topic)
            return Decoded([], 1, clip(reason))

    def feed(self, data: bytes | bytearray | memoryview | str | None, where: str, topic: str | None,
             emit: Callable[[list[Record]], Any]) -> tuple[Decoded, Any]:
        """Decode one payload and emit its records as one unit (under ``ctx.intake.lock``); returns what it
        gave and ``emit``'s ticket. ``data`` None is a unit that gives no records (a message dropped unread,
        still counted in order). With the intake closed (a stop under way) nothing is decoded or emitted:
        the ticket is None."""
        intake = self.ctx.intake
        with intake.lock:
            if intake.closed:
                return Decoded([], 0, None), None
            d = self.payload(data, where, topic) if data is not None else Decoded([], 0, None)
            return d, emit(d.records)

    def feed_many(self, units: Sequence[tuple[bytes | bytearray | memoryview | str, str, str | None]],
                  emit: Callable[[list[Record]], Any]) -> Any:
        """Decode payloads ``(data, where, topic)`` (what one read brought) and emit all their records as one
        unit (under ``ctx.intake.lock``, maybe no records); returns ``emit``'s ticket, or None with the intake
        closed (nothing decoded or emitted)."""
        intake = self.ctx.intake
        with intake.lock:
            if intake.closed:
                return None
            payload = self.payload
            records: list[Record] = []
            for data, where, topic in units:
                records += payload(data, where, topic).records
            return emit(records)

    def positions(self) -> Any:
        """The sequence positions (``{"seq": SeqTracker.state()}``), or None without sequence tracking."""
        if self._wire is None or self._wire.tracker is None:
            return None
        with self._lock:
            return {"seq": self._wire.tracker.state()}

    def resume(self, positions: Any) -> None:
        """Continue from ``positions()`` taken earlier; None is a fresh start. Raises ValueError if they are
        not positions (the tracker is unchanged then)."""
        if positions is None or self._wire is None or self._wire.tracker is None:
            return
        if not isinstance(positions, dict) or "seq" not in positions:
            raise ValueError("not the sequence positions of a wire source")
        with self._lock:
            self._wire.tracker.restore(positions["seq"])

    def _json(self, data: Any, where: str) -> Decoded:
        try:
            value = jsonio.loads(data)
        except ValueError as e:
            raise ValueError(f"not JSON ({e})") from None
        if isinstance(value, dict):
            return Decoded([value], 0, None)
        if not isinstance(value, list):
            raise ValueError(f"expected a JSON object or an array of objects, got {_json_type(value)}")
        good: list[Record] = []
        bad = 0
        for i, item in enumerate(value):
            if isinstance(item, dict):
                good.append(item)
            else:
                bad += 1
                self.ctx.count(DECODE_ERRORS)
                self.ctx.dead_letter(item, f"{where}: item {i}: expected a JSON object, got {_json_type(item)}")
        if bad and not good:
            return Decoded([], bad, f"no JSON objects in the array ({bad} other values)")
        return Decoded(good, bad, None)

    def json_object(self, data: bytes | str, where: str) -> Record | None:
        """One JSON object (a JSON-lines line), or None when refused (dead-lettered and counted)."""
        try:
            value = jsonio.loads(data)
        except Exception as e:
            self.reject(data, f"{where}: not JSON ({why(e)})")
            return None
        if not isinstance(value, dict):
            self.reject(data, f"{where}: expected a JSON object, got {_json_type(value)}")
            return None
        return value

    def reject(self, raw: Any, reason: str, topic: str | None = None) -> None:
        """Count a decode error and dead-letter the raw input (bounded) with the reason."""
        self.ctx.count(DECODE_ERRORS)
        self.ctx.dead_letter(RawInput(raw, topic) if isinstance(raw, (bytes, bytearray, memoryview, str)) else raw,
                             reason)

    def _report(self) -> None:
        """Count and log what the tracker found; a failure here is logged, never the payload's."""
        try:
            self._wire.count_into(self.ctx)
            tr = self._wire.tracker
            if tr is not None and (tr.lost or tr.duplicated or tr.forgot):
                self._log_seq(False)
        except Exception as e:
            self.ctx.log.error("sequence counters not updated: %s: %s", type(e).__name__, e)

    def claim(self, device: str, boot: int, upto: int) -> None:
        """The device registry found ``device``'s results up to seq ``upto`` delivered and lost where no gap
        shows (and counted them): the sequence tracking takes them as seen (``SeqTracker.claim``)."""
        if self._wire is not None and self._wire.tracker is not None:
            with self._lock:
                self._wire.tracker.claim(device, "results", boot, upto)

    def close(self) -> None:
        """Log what sequence tracking found and did not report yet (a source calls this when it stops)."""
        if self._wire is not None:
            with self._lock:
                self._log_seq(True)

    def _log_seq(self, force: bool) -> None:
        """Log each kind of sequence event the tracker holds, at most once per interval (all if ``force``)."""
        tracker = self._wire.tracker
        if tracker is None:
            return
        now = self.clock()
        for attr, (head, line, size, unit) in _SEQ_LINES.items():
            held = getattr(tracker, attr)
            if not held or (not force and now < self._next_log[attr]):
                continue
            setattr(tracker, attr, {})
            self._next_log[attr] = now + self.loss_log_interval_s
            worst = sorted(held.items(), key=lambda kv: (-size(kv[1]), kv[0]))
            parts = [f"device {dev}: {line(x)}" for dev, x in worst[:_LOSS_DEVICES]]
            rest = worst[_LOSS_DEVICES:]
            if rest:
                parts.append(f"and {len(rest)} more devices: {_n(sum(size(x) for _, x in rest), unit)}")
            self.ctx.log.warning("%s: %s (summarised at most every %gs)", head(held), "; ".join(parts),
                                 self.loss_log_interval_s)


def _n(n: int, what: str) -> str:
    return f"{n} {what}{'s' if n != 1 else ''}"


# tracker attribute -> (head of the line, one device's part, its size for ordering, the size's unit)
_SEQ_LINES: dict[str, tuple[Callable[[dict[str, Any]], str], Callable[[Any], str], Callable[[Any], int], str]] = {
    "lost": (lambda held: "data loss",
             lambda x: f"{_n(x.missing, 'record')} missing in {_n(x.gaps, 'gap')} (last: boot {x.boot}, "
                       f"seq {x.after} -> {x.to})",
             lambda x: x.missing, "record"),
    "duplicated": (lambda held: "duplicates dropped",
                   lambda x: f"{_n(x.records, 'record')} (last: boot {x.boot}, seq {x.seq})",
                   lambda x: x.records, "record"),
    "forgot": (lambda held: f"forgot {_n(sum(x.gaps for x in held.values()), 'sequence gap')} (more than "
                            f"{MAX_GAPS} open at once in a stream; a record that arrives below a forgotten gap "
                            "is kept unchecked)",
               lambda x: f"{_n(x.gaps, 'gap')} (last: boot {x.boot}, seqs {x.first}..{x.last})",
               lambda x: x.gaps, "gap"),
}


def why(e: BaseException) -> str:
    """The reason of a refusal: a ValueError's message says what was wrong; anything else also names its type."""
    return str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}"


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array"}.get(
        type(v), type(v).__name__)
