"""HTTP source (a POST JSON ingest endpoint) and HTTP sink (a webhook with batching and retry).

The source binds to 127.0.0.1 by default and, with ``token`` set, answers 401
to a request without ``Authorization: Bearer <token>``. A body is one JSON
object, an array of objects, or (``format: wire``) one wire message. It
answers 200 ``{"accepted": n, "rejected": m}`` once the records are queued
(a full pipeline delays the answer: HTTP clients feel the backpressure),
400 with the reason for a body it cannot decode (the body goes to the
dead-letter sink), 413 for a body over ``max_body``.

The sink POSTs each batch as a JSON array (or JSON lines). A 2xx answer is
success; 408, 429, 5xx, timeouts and connection errors are retried with
backoff; any other 4xx sends the batch to the dead-letter sink with the
status and the start of the answer.
"""

from __future__ import annotations

import hmac
import json
import re
import threading
from typing import Any

from edgestream_hub.components import ComponentContext, Emit, Sink, Source
from edgestream_hub.errors import StartError
from edgestream_hub.registry import component
from edgestream_hub.spec import Checker, Field, Spec

Record = dict[str, Any]


class HttpSource(Source):
    def __init__(self, config: dict[str, Any], ctx: ComponentContext) -> None:
        self.ctx = ctx
        self.host, self.port, self.path = config["host"], config["port"], config["path"]
        self.token = config["token"]
        self.max_body = config["max_body"]
        self.format = config["format"]
        self.server: Any = None
        self._thread: threading.Thread | None = None
        self._emit: Emit | None = None
        self._decoder: Any = None
        if self.format == "wire":
            from edgestream_hub.wire import WireDecoder

            self._decoder = WireDecoder(prefix=None)

    def open(self) -> None:
        from http.server import ThreadingHTTPServer

        src = self

        class Handler(_Handler):
            source = src

        try:
            self.server = ThreadingHTTPServer((self.host, self.port), Handler)
        except OSError as e:
            raise StartError(self.ctx.label, f"cannot listen on {self.host}:{self.port}: {e.strerror or e}") from e
        self.server.daemon_threads = False  # server_close() waits for requests in flight
        self.port = self.server.server_address[1]

    def start(self, emit: Emit) -> None:
        self._emit = emit
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"source-{self.ctx.label}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self.server is not None:
            if self._thread is not None:
                self.server.shutdown()
                self._thread.join()
            self.server.server_close()
            self.server = None

    # called on the server's request threads
    def ingest(self, body: bytes) -> tuple[int, dict[str, Any]]:
        if self._decoder is not None:
            from edgestream_shared.errors import WireError

            try:
                records = self._decoder.decode(body)
            except WireError as e:
                return self._bad(body, str(e))
            self._emit(records)  # type: ignore[misc]
            return 200, {"accepted": len(records), "rejected": 0}
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            return self._bad(body, f"body is not JSON: {e}")
        items = data if isinstance(data, list) else [data]
        good, bad = [], 0
        for i, r in enumerate(items):
            if isinstance(r, dict):
                good.append(r)
            else:
                bad += 1
                self.ctx.count("edgestream_source_decode_errors_total")
                self.ctx.dead_letter(r, f"http: item {i}: expected a JSON object, got {type(r).__name__}")
        if good:
            self._emit(good)  # type: ignore[misc]
        if not good and bad:
            return 400, {"error": "no JSON objects in the body", "rejected": bad}
        return 200, {"accepted": len(good), "rejected": bad}

    def _bad(self, body: bytes, reason: str) -> tuple[int, dict[str, Any]]:
        self.ctx.count("edgestream_source_decode_errors_total")
        self.ctx.dead_letter(body, f"http: {reason}")
        return 400, {"error": reason}


try:
    from http.server import BaseHTTPRequestHandler as _Base
except ImportError:  # pragma: no cover
    _Base = object  # type: ignore[misc,assignment]


class _Handler(_Base):  # type: ignore[misc,valid-type]
    source: HttpSource
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:
        self.source.ctx.log.debug("http: " + fmt, *args)

    def _reply(self, code: int, body: dict[str, Any], extra: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._reply(405, {"error": "POST JSON to " + self.source.path}, {"Allow": "POST"})

    def do_POST(self) -> None:
        src = self.source
        if self.path.split("?", 1)[0] != src.path:
            self._reply(404, {"error": f"no endpoint {self.path}; POST to {src.path}"})
            return
        if src.token is not None:
            got = self.headers.get("Authorization", "")
            if not hmac.compare_digest(got.encode(), f"Bearer {src.token}".encode()):
                self._reply(401, {"error": "missing or wrong bearer token"}, {"WWW-Authenticate": "Bearer"})
                return
        try:
            n = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._reply(411, {"error": "Content-Length required"})
            return
        if n > src.max_body or n < 0:
            self.close_connection = True
            self._reply(413, {"error": f"body of {n} bytes is over the {src.max_body} byte limit"})
            return
        body = self.rfile.read(n)
        code, reply = src.ingest(body)
        self._reply(code, reply)


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
        good, sent = [], []
        for r in records:
            try:
                good.append(json.dumps(r, separators=(",", ":"), allow_nan=False))
                sent.append(r)
            except (TypeError, ValueError) as e:
                rejected.append((r, f"http sink {self.ctx.label}: not JSON-serialisable: {e}"))
        if not good:
            return rejected
        body = ("[" + ",".join(good) + "]" if self.format == "json" else "\n".join(good) + "\n").encode()
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
        return rejected


_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an HTTP header name (RFC 9110 token)


def _check_sink(cfg: dict[str, Any], chk: Checker, path: str) -> None:
    from urllib.parse import urlsplit

    url = cfg["url"]
    try:
        u = urlsplit(url)
        u.port  # raises ValueError for a port that is not a number in range
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
], check=_check_sink, example="sinks:\n  hook: {http: {url: \"http://127.0.0.1:9000/hook\", timeout: 2s}, batch: {size: 200, linger: 1s}}"))
def http_sink(config: dict[str, Any], ctx: ComponentContext) -> HttpSink:
    return HttpSink(config, ctx)
