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
  duplicates, reboots, gap fills) under its label;
- logs data loss: a gap in a device's sequence numbers is a WARNING naming the
  device and how many records are missing, the first at once, later ones
  summarised at most once per ``loss_log_interval_s`` (10 s) per source;
- feeds the device registry (``ctx.devices``, when the hub has a ``devices``
  section): every wire message it decoded, with how many items it kept and
  what the sequence tracking counted for it.

Formats: ``wire`` (EdgeStream wire messages, flattened and sequence-tracked),
``json`` (an object or an array of objects: each item that is not an object is
its own dead letter, the others are kept) and ``raw`` (``{topic, payload}``).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, NamedTuple

from edgestream_hub import jsonio
from edgestream_hub.components import ComponentContext
from edgestream_hub.deadletter import RawInput, clip

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
        self._next_loss_log = 0.0
        self._wire: Any = None
        self._lock = threading.Lock()  # the sequence tracker is shared by an HTTP source's request threads
        self.devices = getattr(ctx, "devices", None)
        if fmt == "wire":
            from edgestream_hub.wire import WireDecoder

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
                    self._wire.count_into(self.ctx)
                    if self._wire.tracker.lost:
                        self._log_losses(False)
                return Decoded(records, 0, None)
            if self.format == "raw":
                text = bytes(data).decode("utf-8", "backslashreplace") if not isinstance(data, str) else data
                return Decoded([{"topic": topic, "payload": text}], 0, None)
            return self._json(data, where)
        except Exception as e:  # any failure is this payload's, never the source's
            reason = why(e)
            self.reject(data, f"{where}: {reason}", topic)
            return Decoded([], 1, clip(reason))

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

    def claim(self, device: str, boot: int, upto: int) -> None:
        """The device registry found ``device``'s results up to seq ``upto`` delivered and lost where no gap
        shows (and counted them): the sequence tracking takes them as seen (``SeqTracker.claim``)."""
        if self._wire is not None and self._wire.tracker is not None:
            with self._lock:
                self._wire.tracker.claim(device, "results", boot, upto)

    def close(self) -> None:
        """Log the data loss not yet reported (a source calls this when it stops)."""
        if self._wire is not None and self._wire.tracker.lost:
            with self._lock:
                self._log_losses(True)

    def _log_losses(self, force: bool) -> None:
        now = self.clock()
        if not force and now < self._next_loss_log:
            return
        tracker = self._wire.tracker
        lost, tracker.lost = tracker.lost, {}
        self._next_loss_log = now + self.loss_log_interval_s
        worst = sorted(lost.items(), key=lambda kv: (-kv[1].missing, kv[0]))
        parts = [f"device {dev}: {x.missing} record{'s' if x.missing != 1 else ''} missing in {x.gaps} "
                 f"gap{'s' if x.gaps != 1 else ''} (last: boot {x.boot}, seq {x.after} -> {x.to})"
                 for dev, x in worst[:_LOSS_DEVICES]]
        rest = worst[_LOSS_DEVICES:]
        if rest:
            parts.append(f"and {len(rest)} more devices: {sum(x.missing for _, x in rest)} records missing")
        self.ctx.log.warning("data loss: %s (summarised at most every %gs)", "; ".join(parts),
                             self.loss_log_interval_s)


def why(e: BaseException) -> str:
    """The reason of a refusal: a ValueError's message says what was wrong; anything else also names its type."""
    return str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}"


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array"}.get(
        type(v), type(v).__name__)
