"""The hub's REST API and web console, on ``api.listen`` (docs/console.md; the routes are in ``openapi.json``).

Every route is a row of ``ROUTES``; the OpenAPI document in the package is
the other half of the contract, and both are checked against each other by
the tests. Requests are validated against that document where it is simple:
query parameters (known names, types, ranges), the body's content type, and
JSON bodies against their schema (types, required and unknown keys, lengths,
ranges), so a bad request is a 400 that says where (``body.query: expected a
string``) before any handler runs.

Rules, in the order they are applied:

- bounded like the HTTP source (``BoundedHTTPServer``): ``read_timeout`` per
  request line and header and for the whole body (408), at most
  ``max_connections`` connections (503), ``max_body`` (413), a bounded stop;
- without a token (loopback only, ``hub check`` refuses anything else), a
  ``Host`` header that is not a loopback name is refused (403): a web page
  cannot reach the API through DNS rebinding; with ``token``, every ``/api/``
  request needs ``Authorization: Bearer <token>`` (401); the console's files
  need none (it asks for the token);
- POST and PUT bodies must say their type (415 otherwise), so a browser
  cannot send one across origins without a preflight, which gets no CORS
  answer;
- errors are ``{"error": ..., "path": ...}`` with their status code;
  responses are strict JSON (non-finite numbers as null).

The event stream (``/api/events``) holds its connection and thread until the
client goes, falls behind, or the hub stops (``live.EventBus``); a write
to a client that stopped reading fails after ``read_timeout``.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import socket
import threading
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, unquote, urlsplit

from edgestream_hub import jsonio
from edgestream_hub.errors import EdgeStreamError, StartError
from edgestream_hub.httpserver import BoundedHTTPServer, DeadlineHandler, FramingError
from edgestream_hub.live import EventBus, LiveView

log = logging.getLogger("edgestream.hub.api")

CONSOLE_DIR = Path(__file__).resolve().parent / "console"
_FILE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".md": "text/plain; charset=utf-8", ".txt": "text/plain; charset=utf-8",
          ".svg": "image/svg+xml"}
# An event stream's kernel send buffer: small, so a client that stops reading fills it in a few events and
# then its queue (api.event_queue), instead of the kernel soaking up megabytes per client unseen.
_EVENT_SNDBUF = 32 * 1024

_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                               "frame-ancestors 'none'; form-action 'self'",
}
MAX_WAIT_S = 60.0
REQUESTS = "edgestream_api_requests_total"


@dataclass(frozen=True)
class Route:
    method: str
    template: str  # as in openapi.json: /api/devices/{id}
    handler: str  # name of the _Handler method that answers it


#: Every route served. tests/hub/test_rest.py checks this table against openapi.json, both ways.
ROUTES = [
    Route("GET", "/", "get_index"),
    Route("GET", "/console/{file}", "get_console_file"),
    Route("GET", "/api/openapi.json", "get_openapi"),
    Route("GET", "/api/devices", "get_devices"),
    Route("GET", "/api/devices/{id}", "get_device"),
    Route("PUT", "/api/devices/{id}/config", "put_device_config"),
    Route("POST", "/api/devices/{id}/time", "post_device_time"),
    Route("GET", "/api/pipelines", "get_pipelines"),
    Route("GET", "/api/pipelines/{name}/results", "get_pipeline_results"),
    Route("GET", "/api/events", "get_events"),
    Route("POST", "/api/config/check", "post_config_check"),
    Route("POST", "/api/reload", "post_reload"),
    Route("POST", "/api/sql/explain", "post_sql_explain"),
    Route("POST", "/api/sql/run", "post_sql_run"),
]


class ApiError(EdgeStreamError):
    """A request that cannot be answered as asked: its status, what went wrong, and extra keys for the body."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


_openapi: dict[str, Any] | None = None


def openapi() -> dict[str, Any]:
    """The OpenAPI document shipped in the package (read once)."""
    global _openapi
    if _openapi is None:
        _openapi = json.loads(resources.files("edgestream_hub").joinpath("openapi.json").read_text("utf-8"))
    return _openapi


def match(method: str, path: str) -> tuple[Route, dict[str, str]]:
    """The route of ``path`` and its path parameters; ApiError 404 (no such path) or 405 (not this method)."""
    segs = path.split("/")
    allowed = []
    for r in ROUTES:
        t = r.template.split("/")
        if len(t) != len(segs):
            continue
        params: dict[str, str] = {}
        for a, b in zip(t, segs):
            if a.startswith("{"):
                if not b:
                    break
                params[a[1:-1]] = unquote(b)
            elif a != b:
                break
        else:
            if r.method == method:
                return r, params
            allowed.append(r.method)
    if allowed:
        raise ApiError(405, f"{method} is not allowed on {path} (allowed: {', '.join(sorted(set(allowed)))})",
                       allow=", ".join(sorted(set(allowed))))
    raise ApiError(404, f"no such endpoint: {path} (the routes are listed in /api/openapi.json)")


def operation(route: Route) -> dict[str, Any]:
    return openapi()["paths"][route.template][route.method.lower()]


# -- validation against the document ------------------------------------------------------------------------
def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    for _ in range(10):
        ref = schema.get("$ref")
        if ref is None:
            return schema
        node: Any = openapi()
        for part in ref.lstrip("#/").split("/"):
            node = node[part]
        schema = node
    raise ValueError("$ref chain too long")


_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: type(v) is int,
    "number": lambda v: type(v) in (int, float),
    "boolean": lambda v: isinstance(v, bool),
}
_KIND_NAMES = {"object": "an object", "array": "an array", "string": "a string", "integer": "an integer",
               "number": "a number", "boolean": "true or false"}


def check(schema: dict[str, Any], value: Any, where: str) -> None:
    """Validate ``value`` against an OpenAPI schema (the subset this API uses); ApiError 400 naming ``where``.

    >>> try:
    ...     check({"type": "object", "required": ["query"], "properties": {"query": {"type": "string"}}}, {}, "body")
    ... except ApiError as e:
    ...     print(e.status, e.message)
    400 body: missing required key 'query'
    """
    schema = resolve(schema)
    if value is None and schema.get("nullable"):
        return
    t = schema.get("type")
    if t is not None and not _JSON_TYPES[t](value):
        raise ApiError(400, f"{where}: expected {_KIND_NAMES[t]}, got {_json_kind(value)}")
    if "enum" in schema and value not in schema["enum"]:
        raise ApiError(400, f"{where}: {value!r} is not one of {', '.join(map(repr, schema['enum']))}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            raise ApiError(400, f"{where}: must not be empty" if schema["minLength"] == 1 else
                           f"{where}: shorter than {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise ApiError(400, f"{where}: longer than {schema['maxLength']} characters")
    if type(value) in (int, float):
        if "minimum" in schema and value < schema["minimum"]:
            raise ApiError(400, f"{where}: {value} is below the minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise ApiError(400, f"{where}: {value} is above the maximum {schema['maximum']}")
    if isinstance(value, list) and "items" in schema:
        for i, x in enumerate(value):
            check(schema["items"], x, f"{where}[{i}]")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for k in schema.get("required", ()):
            if k not in value:
                raise ApiError(400, f"{where}: missing required key {k!r}")
        extra = schema.get("additionalProperties", True)
        for k, x in value.items():
            if k in props:
                check(props[k], x, f"{where}.{k}")
            elif extra is False:
                raise ApiError(400, f"{where}: unknown key {k!r} (known: {', '.join(sorted(props))})")
            elif isinstance(extra, dict):
                check(extra, x, f"{where}.{k}")


def _json_kind(v: Any) -> str:
    if v is None:
        return "null"
    for name, test in _JSON_TYPES.items():
        if name not in ("integer",) and test(v):
            return _KIND_NAMES[name]
    return type(v).__name__


def query_params(op: dict[str, Any], raw: str) -> dict[str, Any]:
    """The query string, checked against the operation's parameters: known names, once each, typed."""
    declared = {p["name"]: p for p in op.get("parameters", ()) if p["in"] == "query"}
    out: dict[str, Any] = {}
    try:
        pairs = parse_qs(raw, keep_blank_values=True, strict_parsing=bool(raw), max_num_fields=20)
    except ValueError as e:
        raise ApiError(400, f"query: cannot parse {raw[:100]!r}: {e}") from None
    for name, values in pairs.items():
        p = declared.get(name)
        if p is None:
            known = ", ".join(sorted(declared)) or "none"
            raise ApiError(400, f"query: unknown parameter {name!r} (known: {known})")
        if len(values) > 1:
            raise ApiError(400, f"query: {name} is given {len(values)} times")
        schema = resolve(p["schema"])
        text = values[0]
        v: Any = text
        try:
            if schema.get("type") == "integer":
                v = int(text)
            elif schema.get("type") == "boolean":
                v = {"true": True, "false": False}[text]
            elif schema.get("type") == "number":
                v = float(text)
                if v != v or v in (float("inf"), float("-inf")):
                    raise ValueError(text)
        except (ValueError, KeyError):
            raise ApiError(400, f"query: {name}: expected {_KIND_NAMES[schema['type']]}, got {text!r}") from None
        check(schema, v, f"query: {name}")
        out[name] = v
    return out


# -- the server ----------------------------------------------------------------------------------------------
class ApiServer:
    """The REST API and the console of one engine: ``start()`` binds (``StartError`` if it cannot) and serves,
    ``stop()`` ends every event stream and stops within about ``read_timeout``.

    ``reload`` (the service's) and ``config_path`` make ``/api/reload`` and ``/api/config/check`` work like
    SIGHUP and ``hub check``; without them they answer 409 and check against the working folder."""

    def __init__(self, engine: Any, api: dict[str, Any], *, reload: Callable[[], dict[str, Any]] | None = None,
                 config_path: str | None = None) -> None:
        self.engine = engine
        self.api = api
        self.reload = reload
        self.config_path = config_path
        self.token: str | None = api["token"]
        self.read_timeout_s = api["read_timeout"] / 1000
        self.bus = EventBus(api["event_queue"])
        self.live = LiveView(engine, api, self.bus)
        self.server: BoundedHTTPServer | None = None
        self.url: str | None = None
        self.stopping = threading.Event()

    def start(self) -> "ApiServer":
        from edgestream_hub.spec import parse_hostport

        host, port = parse_hostport(self.api["listen"])
        api = self

        class Handler(_Handler):
            server_api = api
            timeout = api.read_timeout_s

        try:
            self.server = BoundedHTTPServer((host, port), Handler, max_connections=self.api["max_connections"],
                                            read_timeout_s=self.read_timeout_s, log=log, name="api",
                                            on_refused=self.count)
        except OSError as e:
            raise StartError("api", f"cannot listen on {self.api['listen']}: {e.strerror or e}") from e
        scheme = "http"
        tls = self.api.get("tls")
        if tls:
            import ssl

            try:
                ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                ctx.load_cert_chain(tls["cert_file"], tls["key_file"])
            except (OSError, ssl.SSLError) as e:
                self.server.server_close()
                raise StartError("api", f"cannot use api.tls: {e}") from e
            # the handshake happens on the connection's own thread, under its read timeout, never in accept
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True, do_handshake_on_connect=False)
            scheme = "https"
        h, p = str(self.server.server_address[0]), self.server.server_address[1]
        self.url = f"{scheme}://{f'[{h}]' if ':' in h else h}:{p}"
        self.live.start()
        self.server.serve()
        log.info("api: serving %s%s", self.url, "" if not self.api["console"] else f" (console at {self.url}/)")
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.bus.close("the hub is stopping")
        self.live.stop()
        if self.server is not None:
            left = self.server.stop()
            if left:
                log.warning("api: stopped with %d requests still being answered", left)
            self.server = None

    def count(self, code: int) -> None:
        """Count an answer by status code (``edgestream_api_requests_total``)."""
        self.engine.metrics.labelled(REQUESTS, str(code)).inc()

    def reloaded(self, result: dict[str, Any]) -> None:
        """Tell event-stream clients about a reload (the console refreshes what it shows)."""
        self.bus.publish("reload", result)


class _Handler(DeadlineHandler):
    server_api: ApiServer
    server: BoundedHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "edgestream-hub"
    sys_version = ""

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("api: " + fmt, *args)

    # -- replies --
    def _send(self, code: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        if self.server.stopping:
            self.close_connection = True
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in {**_SECURITY_HEADERS, **(extra or {})}.items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.server_api.count(code)

    def _json(self, code: int, data: Any, extra: dict[str, str] | None = None) -> None:
        text, _ = jsonio.dumps(data)
        self._send(code, text.encode(), "application/json", extra)

    def _error(self, e: ApiError) -> None:
        extra = {"Allow": e.extra.pop("allow")} if "allow" in e.extra else {}
        if e.status == 401:
            extra["WWW-Authenticate"] = "Bearer"
        if e.status == 503:
            extra["Retry-After"] = "1"
        self._json(e.status, {"error": e.message, "path": urlsplit(self.path).path, **e.extra}, extra)

    # -- dispatch --
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        try:
            self._guard(url.path)
            route, params = match(method, url.path)
            op = operation(route)
            query = query_params(op, url.query)
            body = self._body(op)
            if not self.server.reading(self.connection, False):
                self.close_connection = True
            getattr(self, route.handler)(params, query, body)
        except ApiError as e:
            self._error(e)
        except (ConnectionError, TimeoutError):
            self.close_connection = True  # the client went away mid-answer
        except Exception as e:
            log.exception("api: %s %s failed: %s: %s", method, url.path, type(e).__name__, e)
            self._error(ApiError(500, f"internal error: {type(e).__name__}: {e}"))

    def _guard(self, path: str) -> None:
        api = self.server_api
        if api.token is None:
            from edgestream_hub.config import is_loopback

            host = (self.headers.get("Host") or "").strip()
            name = host[1:host.index("]")] if host.startswith("[") and "]" in host else host.rsplit(":", 1)[0]
            if host and not is_loopback(name):
                self.close_connection = True
                raise ApiError(403, f"Host {host!r} is not a loopback name: without api.token the API answers "
                                    "only requests addressed to this machine (127.0.0.1, localhost, [::1])")
        elif path.startswith("/api/"):
            got = self.headers.get("Authorization", "")
            if not hmac.compare_digest(got.encode(), f"Bearer {api.token}".encode()):
                self.close_connection = True  # the body is not read
                raise ApiError(401, "missing or wrong bearer token (Authorization: Bearer <api.token>)")

    def _body(self, op: dict[str, Any]) -> Any:
        """The request body, read within ``read_timeout``, checked against the operation's requestBody."""
        spec = op.get("requestBody")
        if spec is None:
            if self.headers.get("Transfer-Encoding") or self.headers.get("Content-Length", "0") != "0":
                self.close_connection = True
                raise ApiError(400, "this endpoint takes no body")
            return None
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        types = spec["content"]
        if ctype not in types:
            self.close_connection = True
            raise ApiError(415, f"Content-Type {ctype or 'missing'}: send {' or '.join(types)}")
        try:
            n = self.body_length()
        except FramingError as e:
            raise ApiError(e.code, e.message) from None
        limit = self.server_api.api["max_body"]
        if n == 0:
            raise ApiError(400, f"body: empty: send {' or '.join(types)}")
        if n > limit or n < 0:
            self.close_connection = True
            raise ApiError(413, f"body of {n} bytes is over the {limit} byte limit (api.max_body)")
        try:
            raw = self.read_body(n)
        except TimeoutError:
            self.close_connection = True
            raise ApiError(408, f"the body did not arrive within {self.server_api.read_timeout_s:g}s") from None
        if raw is None:
            self.close_connection = True
            if self.server.stopping:
                raise ApiError(503, "the hub is stopping; retry later")
            raise ConnectionError("the client went away")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ApiError(400, f"body: not UTF-8 (byte {e.start})") from None
        if ctype != "application/json":
            return text
        try:
            data = jsonio.loads(text)
        except ValueError as e:
            raise ApiError(400, f"body: not JSON: {e}") from None
        check(types[ctype]["schema"], data, "body")
        return data

    # -- the console --
    def get_index(self, params: dict[str, str], query: dict[str, Any], body: Any) -> None:
        self._console_file("index.html")

    def get_console_file(self, params: dict[str, str], query: dict[str, Any], body: Any) -> None:
        self._console_file(params["file"])

    def _console_file(self, name: str) -> None:
        if not self.server_api.api["console"]:
            raise ApiError(404, "the console is off (api.console: false)")
        p = CONSOLE_DIR / name
        if not _FILE.match(name) or not p.is_file():
            raise ApiError(404, f"no console file {name!r}")
        ctype = _TYPES.get(p.suffix, "text/plain; charset=utf-8")
        self._send(200, p.read_bytes(), ctype)

    # -- api --
    def get_openapi(self, params: dict[str, str], query: dict[str, Any], body: Any) -> None:
        self._json(200, openapi())

    def _service(self) -> Any:
        svc = self.server_api.engine.device_service
        if svc is None:
            raise ApiError(409, "the device registry is off: hub.yaml has no devices section (docs/hub.md, Devices)")
        return svc

    def _state(self, dev: str) -> Any:
        d = self._service().registry.get(dev)
        if d is None:
            raise ApiError(404, f"no device {dev!r} in the registry")
        return d

    def get_devices(self, params: dict[str, str], query: dict[str, Any], body: Any) -> None:
        svc = self.server_api.engine.device_service
        if svc is None:
            self._json(200, {"enabled": False, "devices": [], "overflow": 0})
            return
        reg = svc.registry
        with reg.lock:
            rows = [reg.devices[k].public() for k in sorted(reg.devices)]
            overflow = reg.overflow
        self._json(200, {"enabled": True, "devices": rows, "overflow": overflow})

    def get_device(self, params: dict[str, str], query: dict[str, Any], body: Any) -> None:
        svc = self._service()
        with svc.registry.lock:
            d = self._state(params["id"]).public()
        health, points = self.server_api.live.device_history(params["id"])
        self._json(200, {"device": d, "health": health, "results": points})

    def put_device_config(self, params: dict[str, str], query: dict[str, Any], body: Any) -> None:
        from edgestream_hub.desired import DesiredConfigError, DesiredVersionError, assign_version, check_config

        svc = self._service()
        dev = params["id"]
        where = f"PUT {urlsplit(self.path).path}"
        try:
            cfg = check_config(dev, body, where, need_version=False)  # the agent's validator: the board's messages
            known = svc.registry.get(dev)
            with svc.desired.lock():
                force = bool(query.get("force", False))
                version = assign_version(svc.desired, dev, cfg, known.config_reported if known else None, where,
                                         force)
                path = svc.desired.write(dev, cfg, force)
        except DesiredVersionError as e:
            raise ApiError(409, str(e)) from None
        except DesiredConfigError as e:
            raise ApiError(422, str(e)) from None
        pushed_ms = svc.registry.now_ms()  # a nack of this version from before this push is not its answer
        svc.registry.set_desired(dev, version)  # the service sends it at its next scan of the folder (<= 1 s)
        log.info("api: device %s: config version %d is desired (%s)", dev, version, path)
        wait = min(float(query.get("wait", 0.0)), MAX_WAIT_S)
        deadline = time.monotonic() + wait
        state = self._config_state(svc, dev, version, str(path), pushed_ms)
        while state["config_state"] == "pending" and time.monotonic() < deadline \
                and not self.server_api.stopping.is_set():
            self.server_api.stopping.wait(0.05)
            state = self._config_state(svc, dev, version, str(path), pushed_ms)
        self._json(202 if state["config_state"] == "pending" else 200, state)

    @staticmethod
    def _config_state(svc: Any, dev: str, version: int, path: str, since_ms: int) -> dict[str, Any]:
        with svc.registry.lock:
            d = svc.registry.get(dev)
            reported = d.config_reported if d else None
            nacked = d is not None and d.last_nack_version == version and (d.last_nack_at or 0) >= since_ms
            state = "applied" if reported == version else "refused" if nacked else "pending"
            return {"device": dev, "version": version, "config_state": state,
                    "config_desired": d.config_desired if d else version, "config_reported": reported,
                    "last_nack": d.last_nack if nacked and d else None, "online": bool(d and d.online),
                    "file": path}

    def post_device_time(self, params: dict[str, str], query: dict[str, Any], body: Any) -> None:
        svc = self._service()
        d = self._state(params["id"])
        n = svc.sync_time(params["id"], asked=True)
        if not n:
            kind, label = d.route()
            how = {"none": "the hub has no way to it yet", "http": f"it is only heard over HTTP source {label}",
                   "serial": f"serial source {label} is closed", "mqtt": "the hub's MQTT link is down or off"}
            raise ApiError(409, f"time not sent to {params['id']}: {how.get(kind, kind)}")
        self._json(200, {"device": params["id"], "sent": True, "link": d.link})

    def get_pipelines(self, params: dict[str, str], query: dict[str, Any], body: Any) -> None:
        self._json(200, self.server_api.live.pipelines())

    def get_pipeline_results(self, params: dict[str, str], query: dict[str, Any], body: Any) -> None:
        eng = self.server_api.engine
        name = params["name"]
        pc = eng.config.pipelines.get(name)
        if pc is None:
            known = ", ".join(sorted(eng.config.pipelines)) or "none"
            raise ApiError(404, f"no pipeline {name!r} (pipelines: {known})")
        taps = eng.taps
        rows = taps.results(name, query.get("limit", 100)) if taps is not None else []
        self._json(200, {"pipeline": name, "to": pc.sinks, "results": rows})

    def get_events(self, params: dict[str, str], query: dict[str, Any], body: Any) -> None:
        api = self.server_api
        client = api.bus.subscribe()
        if client is None:
            raise ApiError(503, "the hub is stopping; retry later")
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _EVENT_SNDBUF)
            self.send_response(200)
            for k, v in {"Content-Type": "text/event-stream", "Cache-Control": "no-store", "Connection": "close",
                         "X-Accel-Buffering": "no", **_SECURITY_HEADERS}.items():
                self.send_header(k, v)
            self.end_headers()
            api.count(200)
            self.wfile.write(b"retry: 2000\n: connected\n\n")
            self.wfile.flush()
            heartbeat = api.api["heartbeat"] / 1000
            last = time.monotonic()
            while True:
                events = client.take(min(heartbeat, 1.0))
                if events:
                    self.wfile.write(b"".join(events))
                    self.wfile.flush()
                    last = time.monotonic()
                if client.done and not events:
                    break
                if time.monotonic() - last >= heartbeat:
                    self.wfile.write(b": heartbeat\n\n")
                    self.wfile.flush()
                    last = time.monotonic()
        except OSError:
            pass  # the client went away, or stopped reading for read_timeout
        finally:
            api.bus.unsubscribe(client)

    def post_config_check(self, params: dict[str, str], query: dict[str, Any], body: Any) -> None:
        from edgestream_hub.config import load_config
        from edgestream_hub.errors import ConfigError

        api = self.server_api
        path = api.config_path or str(Path.cwd() / "hub.yaml")
        try:
            cfg = load_config(path, text=body, registry=api.engine.registry)
        except ConfigError as e:
            issues = [{"path": i.path, "line": i.line, "message": i.message} for i in e.issues]
            raise ApiError(422, str(e), issues=issues) from None
        except EdgeStreamError as e:
            raise ApiError(422, str(e), issues=[]) from None
        self._json(200, {"ok": True, "sources": len(cfg.sources), "pipelines": len(cfg.pipelines),
                         "sinks": len(cfg.sinks)})

    def post_reload(self, params: dict[str, str], query: dict[str, Any], body: Any) -> None:
        reload = self.server_api.reload
        if reload is None:
            raise ApiError(409, "this hub runs no config file: nothing to reload")
        result = reload()
        if result["result"] == "refused":
            raise ApiError(422, result["error"])
        if result["result"] == "failed":
            raise ApiError(500, result["error"])
        self._json(200, {"ok": True, "restarted": result.get("restarted", {})})

    def _sql_args(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"time_field": body.get("time_field", "ts"), "lateness_ms": body.get("lateness_ms", 0),
                "functions": dict(self.server_api.engine.registry.functions)}

    def post_sql_explain(self, params: dict[str, str], query: dict[str, Any], body: Any) -> None:
        from edgestream_hub import sqltry

        self._json(200, _sql(lambda: sqltry.explain(body["query"], **self._sql_args(body))))

    def post_sql_run(self, params: dict[str, str], query: dict[str, Any], body: Any) -> None:
        from edgestream_hub import sqltry

        api = self.server_api
        limit = api.api["sql_max_records"]
        given = [k for k in ("records", "streams", "source") if k in body]
        if len(given) != 1:
            raise ApiError(400, "body: give exactly one of records, streams or source (with last)")
        if "last" in body and "source" not in body:
            raise ApiError(400, "body.last: goes with source")
        data: Any
        if "source" in body:
            eng = api.engine
            name = body["source"]
            if name not in eng.config.sources:
                known = ", ".join(sorted(eng.config.sources)) or "none"
                raise ApiError(404, f"no source {name!r} (sources: {known})")
            if eng.taps is None or not eng.taps.sizes["source"]:
                raise ApiError(409, "no records are kept: api.recent_records is 0")
            data = eng.taps.recent(name, min(body.get("last", limit), limit))
        elif "records" in body:
            data = body["records"]
            if len(data) > limit:
                raise ApiError(413, f"body.records: {len(data)} records is over api.sql_max_records ({limit})")
        else:
            data = body["streams"]
            n = sum(len(v) for v in data.values())
            if n > limit:
                raise ApiError(413, f"body.streams: {n} records is over api.sql_max_records ({limit})")
        args = self._sql_args(body)
        self._json(200, _sql(lambda: sqltry.run(body["query"], data, max_rows=api.api["sql_max_rows"],
                                                timeout_s=api.api["sql_timeout"] / 1000,
                                                processing_time=body.get("processing_time", False), **args)))


def _sql(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run a SQL call; a compile error is a 422 with its line, column and caret excerpt."""
    from edgestream_hub.sql.errors import SqlError
    from edgestream_hub.sqltry import SqlTryError

    try:
        return fn()
    except SqlError as e:
        raise ApiError(422, str(e), line=e.line, column=e.column, excerpt=e.excerpt) from None
    except SqlTryError as e:
        raise ApiError(422, str(e)) from None
