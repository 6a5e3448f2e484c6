"""HTTP source (a POST JSON ingest endpoint) and HTTP sink (a webhook with batching and retry).

The source binds to 127.0.0.1 by default and, with ``token`` set, answers 401
to a request without ``Authorization: Bearer <token>``. A body is one JSON
object, an array of objects, or (``format: wire``) one wire message, decoded by
``Ingest`` like every source's payloads. It answers 200 ``{"accepted": n,
"rejected": m}`` once the records are queued (a full pipeline delays the
answer: HTTP clients feel the backpressure), 400 with the reason for a body it
cannot decode (the body goes to the dead-letter sink: JSON nested too deep,
``NaN``, not UTF-8, ...), 413 for a body over ``max_body``. Every refusal (the
431 and 400 of a malformed head included) is counted in
``edgestream_source_http_refusals_total{component, code}``.

Slow or stalled clients cannot pin it (``BoundedHTTPServer`` and
``DeadlineHandler``, shared with ``/metrics``): each request has
``read_timeout`` to send its whole head (request line and headers), and then
its whole body, however slowly it trickles (408 after that), at most
``max_connections`` are served at once (more are answered 503 and closed at
once), and ``stop()`` returns without waiting for a client: connections still
reading are shut down, requests being answered finish. Framing two servers
could read two ways is refused with 400 (two ``Content-Length`` headers, one
that is not ASCII digits, ``Transfer-Encoding`` beside it); a chunked body
gets 411.

The sink POSTs each batch as a JSON array (or JSON lines), non-finite numbers
written as null. A 2xx answer is success; 408, 429, 5xx, timeouts and
connection errors are retried with backoff; any other 4xx sends the batch to
the dead-letter sink with the status and the start of the answer.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from edgestream_hub import jsonio
from edgestream_hub.components import ComponentContext, Emit, Sink, Source
from edgestream_hub.errors import ComponentError, StartError
from edgestream_hub.registry import component
from edgestream_hub.spec import Checker, Field, Spec

if TYPE_CHECKING:
    from edgestream_hub.httpserver import BoundedHTTPServer

Record = dict[str, Any]
REFUSALS = "edgestream_source_http_refusals_total"
_CODES = ("400", "401", "408", "413", "431", "503")  # refusal counters that exist (at 0) from the start


class HttpSource(Source):
    def __init__(self, config: dict[str, Any], ctx: ComponentContext) -> None:
        self.ctx = ctx
        self.host, self.port, self.path = config["host"], config["port"], config["path"]
        self.token = config["token"]
        self.max_body = config["max_body"]
        self.format = config["format"]
        self.read_timeout_s = config["read_timeout"] / 1000
        self.max_connections = config["max_connections"]
        self.server: BoundedHTTPServer | None = None
        self._emit: Emit | None = None
        from edgestream_hub.ingest import Ingest  # imported by a source that runs (`hub check` makes none)

        self.ingest = Ingest(ctx, self.format)
        self._refused: dict[str, Any] = {}

    def open(self) -> None:
        from edgestream_hub.connectors.http_handler import IngestHandler
        from edgestream_hub.httpserver import BoundedHTTPServer

        src = self

        class Handler(IngestHandler):
            source = src

        try:
            self.server = BoundedHTTPServer((self.host, self.port), Handler, max_connections=self.max_connections,
                                            read_timeout_s=self.read_timeout_s, log=self.ctx.log,
                                            name=f"source-{self.ctx.label}", on_refused=self.refused)
        except OSError as e:
            raise StartError(self.ctx.label, f"cannot listen on {self.host}:{self.port}: {e.strerror or e}") from e
        self.port = self.server.server_address[1]
        self._refused = {code: self.ctx.counter(REFUSALS, code) for code in _CODES}

    def start(self, emit: Emit) -> None:
        self._emit = emit
        assert self.server is not None
        self.server.serve()

    def stop(self) -> None:
        """Stop accepting, cut the connections still reading, let requests being answered finish."""
        srv = self.server
        if srv is None:
            return
        left = srv.stop()
        if left:
            self.ctx.log.warning("stopped with %d requests still being answered", left)
        self.server = None
        self.ingest.close()

    def positions(self) -> Any:
        return self.ingest.positions()

    def restore_positions(self, positions: Any) -> None:
        self.ingest.resume(positions)

    def connections(self) -> int:
        """Connections being served now."""
        return self.server.connections() if self.server is not None else 0

    def refused(self, code: int) -> None:
        c = self._refused.get(str(code))
        if c is None:
            c = self._refused[str(code)] = self.ctx.counter(REFUSALS, str(code))
        c.inc()

    # called on the server's request threads
    def ingest_body(self, body: bytes) -> tuple[int, dict[str, Any]]:
        emit = self._emit
        if emit is None:  # requests are served only after start()
            raise ComponentError(self.ctx.label, "a request arrived before the source started")
        d, _ = self.ingest.feed(body, "http", None, emit)
        if d.error is not None:
            return 400, {"error": d.error, "rejected": d.rejected}
        return 200, {"accepted": len(d.records), "rejected": d.rejected}


def _check_source(cfg: dict[str, Any], chk: Checker, path: str) -> None:
    if not cfg["path"].startswith("/"):
        chk.issue(f"{path}.path", f"{cfg['path']!r} must start with '/' (e.g. /ingest)")


@component(Spec("http", "An ingest endpoint: POST JSON (an object, an array of objects, or a wire message).", [
    Field("host", "host", "Address to bind; keep 127.0.0.1 unless the network is trusted.", default="127.0.0.1"),
    Field("port", "int", "Port to listen on (0: any free port).", min=0, max=65535),
    Field("path", "str", "URL path that accepts POSTs.", default="/ingest"),
    Field("token", "str", "Bearer token required in `Authorization` (none: no auth).", default=None, secret=True),
    Field("format", "str", "`json`: objects; `wire`: EdgeStream wire messages, flattened like MQTT's.",
          default="json", choices=("json", "wire")),
    Field("max_body", "size", "Largest accepted body.", default="1MiB"),
    Field("read_timeout", "duration", "How long a connection may take to send a whole request head (request "
          "line and headers), and then a whole body, however slowly the bytes trickle in (408 after that); an "
          "idle keep-alive connection is closed after it.", default="10s", min=1),
    Field("max_connections", "int", "Connections served at once; more are answered 503 and closed at once.",
          default=64, min=1),
], check=_check_source, example="sources:\n  ingest: {http: {port: 8088, token: \"${INGEST_TOKEN}\"}}"))
def http_source(config: dict[str, Any], ctx: ComponentContext) -> HttpSource:
    return HttpSource(config, ctx)


class HttpSinkError(Exception):
    """A retryable webhook failure."""


class HttpSink(Sink):
    def __init__(self, config: dict[str, Any], ctx: ComponentContext) -> None:
        self.ctx = ctx
        self.url = config["url"]
        self.timeout_s = config["timeout"] / 1000
        self.format = config["format"]
        self.headers = {"Content-Type": "application/json" if self.format == "json" else "application/x-ndjson",
                        **config["headers"]}
        if config["token"]:
            self.headers["Authorization"] = f"Bearer {config['token']}"

    def write(self, records: list[Record]) -> list[tuple[Any, str]]:
        import urllib.error
        import urllib.request

        rejected: list[tuple[Any, str]] = []
        good: list[bytes] = []
        sent = []
        nonfinite = 0
        for r in records:
            try:
                text, n = jsonio.dumps(r)
                good.append(text.encode("utf-8"))
                sent.append(r)
                nonfinite += n
            except (ValueError, RecursionError) as e:  # a cycle, a lone surrogate (UnicodeEncodeError)
                rejected.append((r, f"http sink {self.ctx.label}: not JSON-serialisable: {e}"))
        if not good:
            return rejected
        body = b"[" + b",".join(good) + b"]" if self.format == "json" else b"\n".join(good) + b"\n"
        req = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                resp.read()
        except urllib.error.HTTPError as e:
            text = e.read(200).decode("utf-8", "replace")
            e.close()
            if e.code in (408, 429) or e.code >= 500:
                raise HttpSinkError(f"{self.url}: HTTP {e.code}: {text}") from None
            reason = f"http sink {self.ctx.label}: {self.url} refused the batch: HTTP {e.code}: {text}"
            return rejected + [(r, reason) for r in sent]
        except (urllib.error.URLError, OSError) as e:
            raise HttpSinkError(f"{self.url}: {getattr(e, 'reason', e)}") from None
        self.ctx.count(jsonio.NONFINITE_METRIC, nonfinite)
        return rejected


_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an HTTP header name (RFC 9110 token)


def _check_sink(cfg: dict[str, Any], chk: Checker, path: str) -> None:
    from urllib.parse import urlsplit

    url = cfg["url"]
    try:
        u = urlsplit(url)
        _ = u.port  # raises ValueError for a port that is not a number in range
    except ValueError as e:
        chk.issue(f"{path}.url", f"{url!r} is not a valid URL: {e}")
        return
    if u.scheme not in ("http", "https") or not u.hostname:
        chk.issue(f"{path}.url", f"{url!r} must be an http:// or https:// URL with a host "
                                 "(e.g. http://127.0.0.1:9000/hook)")
    for k, v in cfg["headers"].items():
        if not _TOKEN.match(k) or any(c in v for c in "\r\n\0"):
            chk.issue(f"{path}.headers.{k}", f"{k!r}: {v!r} is not a valid HTTP header (a name of letters, digits "
                                             "and -, a value on one line)")


@component(Spec("http", "POSTs batches to a webhook as a JSON array (or JSON lines), retrying with backoff.", [
    Field("url", "str", "Webhook URL (http or https)."),
    Field("timeout", "duration", "Timeout of one request.", default="5s", min=1),
    Field("format", "str", "Body format.", default="json", choices=("json", "jsonl")),
    Field("headers", "map[str]", "Extra request headers.", default={}),
    Field("token", "str", "Bearer token sent in `Authorization`.", default=None, secret=True),
], check=_check_sink, example="sinks:\n  hook: {http: {url: \"http://127.0.0.1:9000/hook\", timeout: 2s}, "
                                "batch: {size: 200, linger: 1s}}"))
def http_sink(config: dict[str, Any], ctx: ComponentContext) -> HttpSink:
    return HttpSink(config, ctx)
