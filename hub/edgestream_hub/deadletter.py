"""What a dead letter holds, bounded in size whatever was rejected.

A dead letter keeps enough to find and judge what was refused, never the whole
of something large: a raw payload (an MQTT message, an HTTP body, a serial
line, a file line) is kept as its first ``PREFIX_BYTES`` bytes as text, its
length and a hash of all of it; a rejected record is kept as it is when its JSON
text fits in ``PREFIX_BYTES``, else in the same bounded form; a reason (which may
quote what it refused) is cut at ``REASON_CHARS``. No dead letter is lost for its
encoding: a string no UTF-8 writer can encode (one holding a lone surrogate) is
kept with that character backslash-escaped (``\\ud800``), in the record and the
reason alike.

>>> summary(b"[" * 5000)["bytes"], len(summary(b"[" * 5000)["payload"])
(5000, 1024)
>>> bounded({"v": "hot"})
{'v': 'hot'}
"""

from __future__ import annotations

from typing import Any

from edgestream_hub import jsonio

__all__ = ["PREFIX_BYTES", "REASON_CHARS", "RawInput", "summary", "bounded", "clip", "encodable", "targets",
           "DEFAULT_ROTATE_SIZE", "DEFAULT_KEEP"]

#: bytes of a raw payload (or of a large record's JSON text) a dead letter keeps
PREFIX_BYTES = 1024
#: characters of a reason kept (a reason may quote what it refused: a 60 KB key)
REASON_CHARS = 1024
#: rotation a file sink gets when it receives dead letters and sets no rotation itself
DEFAULT_ROTATE_SIZE = 10 * 1024 * 1024
DEFAULT_KEEP = 5


class RawInput:
    """Bytes a source could not turn into records, with the MQTT topic they came on (if any)."""

    __slots__ = ("data", "topic")

    def __init__(self, data: bytes | bytearray | memoryview | str, topic: str | None = None) -> None:
        self.data = data
        self.topic = topic


def summary(data: bytes | bytearray | memoryview | str) -> dict[str, Any]:
    """``{"payload": first PREFIX_BYTES as text, "bytes": length, "sha256": first 16 hex digits}``."""
    import hashlib  # here: `hub check` writes no dead letters

    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    return {"payload": raw[:PREFIX_BYTES].decode("utf-8", "backslashreplace"), "bytes": len(raw),
            "sha256": hashlib.sha256(raw).hexdigest()[:16]}


def encodable(s: str) -> str:
    """``s`` if UTF-8 can encode it, else with each character it cannot (a lone surrogate) escaped."""
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return s.encode("utf-8", "backslashreplace").decode("utf-8")


def _jsonable(v: Any) -> Any:
    if isinstance(v, str):
        return encodable(v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).decode("utf-8", "backslashreplace")
    if isinstance(v, dict):
        return {encodable(str(k)): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (int, float, bool)) or v is None:
        return v
    return repr(v)


def bounded(record: Any) -> Any:
    """The ``record`` field of a dead letter: JSON-able and at most ~PREFIX_BYTES of content."""
    if isinstance(record, RawInput):
        out = summary(record.data)
        return out if record.topic is None else {"topic": record.topic, **out}
    if isinstance(record, (bytes, bytearray, memoryview)):
        return summary(record)
    try:
        v = _jsonable(record)
        text, _ = jsonio.dumps(v)
    except (ValueError, RecursionError) as e:  # a cycle, or nested too deep to encode
        return {"payload": None, "error": f"a {type(record).__name__} that JSON cannot hold ({type(e).__name__})"}
    if len(text) <= PREFIX_BYTES:
        return v
    return summary(text)


def clip(reason: str) -> str:
    """A reason of at most ~REASON_CHARS characters, saying how long it was if it was cut; encodable."""
    if len(reason) <= REASON_CHARS:
        return encodable(reason)
    return f"{encodable(reason[:REASON_CHARS])}... (reason cut: {len(reason)} characters)"


def targets(config: Any) -> set[str]:
    """Names of the sinks that receive dead letters in ``config`` (a ``HubConfig``)."""
    out = {config.hub.get("dead_letter")}
    out.update(cc.common.get("dead_letter") for cc in config.sources.values())
    out.update(pc.dead_letter for pc in config.pipelines.values())
    out.discard(None)
    return out
