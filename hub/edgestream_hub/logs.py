"""The hub's log output: ``--log-format text`` (for people) or ``json`` (for journald and log shippers).

``json`` writes one object per line: ``time`` (ISO 8601, UTC, milliseconds),
``level``, ``logger``, ``message``; the component fields where the logger or
the record has them: ``kind`` and ``component`` for a component's logger
(``edgestream.hub.<kind>.<label>``), and ``component``, ``pipeline``,
``device`` when a record carries them as ``extra``; ``worker`` in a worker process of a hub with
``hub.workers`` above 1 (text lines then say ``[worker <k>]`` after the level); ``exception`` with the
traceback when there is one. Non-ASCII is kept as is (UTF-8); in both formats control and
bidirectional-control characters of messages are escaped (``errors.printable``).

    >>> import json, logging
    >>> from edgestream_hub.logs import JsonFormatter
    >>> r = logging.LogRecord("edgestream.hub.sink.out", logging.ERROR, "f", 1, "write failed: %s", ("x",), None)
    >>> r.created = 0.0
    >>> out = json.loads(JsonFormatter().format(r))
    >>> out
    {'time': '1970-01-01T00:00:00.000Z', 'level': 'error', 'logger': 'edgestream.hub.sink.out', \
'message': 'write failed: x', 'kind': 'sink', 'component': 'out'}
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    import logging

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_KINDS = ("source", "processor", "sink", "pipeline")
_EXTRA = ("component", "pipeline", "device", "worker")
_FORMATTERS: dict[str, Any] = {}


def __getattr__(name: str) -> Any:
    """``PrintableFormatter`` and ``JsonFormatter``, made on first use: a command that logs nothing
    (``hub check``) imports no ``logging``."""
    if name in ("PrintableFormatter", "JsonFormatter"):
        return _formatters()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _formatters() -> dict[str, Any]:
    if _FORMATTERS:
        return _FORMATTERS
    import json
    import logging

    from edgestream_hub.errors import printable

    class PrintableFormatter(logging.Formatter):
        """Log lines quote user text (topics, file names, payload excerpts): control and bidirectional-control
        characters in them are escaped, so a line cannot hide or reorder what a terminal shows."""

        def format(self, record: logging.LogRecord) -> str:
            return printable(super().format(record))

    class JsonFormatter(logging.Formatter):
        """One JSON object per record; see the module doc for the keys."""

        def format(self, record: logging.LogRecord) -> str:
            t = time.gmtime(record.created)
            ms = int(record.created * 1000) % 1000
            out: dict[str, Any] = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{ms:03d}Z",
                                   "level": record.levelname.lower(), "logger": record.name,
                                   "message": printable(record.getMessage())}
            parts = record.name.split(".", 3)
            if len(parts) == 4 and parts[:2] == ["edgestream", "hub"] and parts[2] in _KINDS:
                out["kind"], out["component"] = parts[2], parts[3]
            for key in _EXTRA:
                v = record.__dict__.get(key)
                if v is not None:
                    out[key] = v if isinstance(v, (str, int, float, bool)) else str(v)
            if record.exc_info:
                out["exception"] = self.formatException(record.exc_info)
            elif record.exc_text:
                out["exception"] = record.exc_text
            return json.dumps(out, ensure_ascii=False, separators=(",", ":"), default=str)

    _FORMATTERS.update(PrintableFormatter=PrintableFormatter, JsonFormatter=JsonFormatter)
    return _FORMATTERS


def setup(fmt: str = "text", level: int = 20, stream: TextIO | None = None,
          worker: int | None = None) -> logging.Handler:
    """Send every log record to ``stream`` (stderr) in ``fmt``; replaces the root logger's handlers. ``level``
    is a ``logging`` level (20: INFO); ``worker``: the index of this worker process, on every record."""
    import logging

    f = _formatters()
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    text = TEXT_FORMAT if worker is None else TEXT_FORMAT.replace(" %(name)s", f" [worker {worker}] %(name)s")
    handler.setFormatter(f["JsonFormatter"]() if fmt == "json" else f["PrintableFormatter"](text))
    if worker is not None:
        def tag(record: logging.LogRecord) -> bool:
            record.worker = worker
            return True

        handler.addFilter(tag)
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
