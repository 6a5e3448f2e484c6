"""The HTTP source's request handler (its own module: ``http.server`` is imported by a source that listens,
not by ``hub check``)."""

from __future__ import annotations

import hmac
import json
from typing import TYPE_CHECKING, Any

from edgestream_hub.httpserver import DeadlineHandler, FramingError

if TYPE_CHECKING:
    from edgestream_hub.connectors.http import HttpSource


class IngestHandler(DeadlineHandler):
    """One request to an HTTP source (set as ``source`` on a subclass per source): POST a JSON body, get
    what was accepted and refused."""

    source: HttpSource
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:
        self.source.ctx.log.debug("http: " + fmt, *args)

    def _reply(self, code: int, body: dict[str, Any], extra: dict[str, str] | None = None) -> None:
        if code >= 400:
            self.count_refusal(code)
        if self.server.stopping:
            self.close_connection = True
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
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
                self.close_connection = True  # the body is not read
                self._reply(401, {"error": "missing or wrong bearer token"}, {"WWW-Authenticate": "Bearer"})
                return
        n = self._length()
        if n is None:
            return
        if n > src.max_body:
            self.close_connection = True
            self._reply(413, {"error": f"body of {n} bytes is over the {src.max_body} byte limit"})
            return
        try:
            body = self.read_body(n)
        except TimeoutError:
            self.close_connection = True
            self._reply(408, {"error": f"the body did not arrive within {src.read_timeout_s:g}s"})
            return
        if body is None:  # the client went away, or the hub is stopping
            self.close_connection = True
            if self.server.stopping:
                self._reply(503, {"error": "the hub is stopping; retry later"}, {"Retry-After": "1"})
            return
        if not self.server.reading(self.connection, False):
            self.close_connection = True
        code, reply = src.ingest_body(body)
        self._reply(code, reply)

    def _length(self) -> int | None:
        """The body's length (``DeadlineHandler.body_length``); None once refused (the body is not read)."""
        try:
            return self.body_length()
        except FramingError as e:
            self._reply(e.code, {"error": e.message})
            return None
