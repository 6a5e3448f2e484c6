"""A threading HTTP server that slow or stalled clients cannot pin: the HTTP source and ``/metrics`` use it.

Guarantees: at most ``max_connections`` connections are served at once (one
more is answered 503 and closed at once, without reading it); a request's
whole head (request line and headers) must arrive within ``read_timeout`` of
its first wait, and so must a whole body (``DeadlineHandler``: the deadline
covers every read, so a client sending a byte at a time is cut like a silent
one: 408 if it sent part of a request, a plain close if it sent nothing, an
idle keep-alive connection); ``stop()`` returns within about ``read_timeout``,
whatever the clients do: connections still reading a request are shut down,
requests being answered get up to ``read_timeout`` to finish.

Where it parts from ``http.server.ThreadingHTTPServer``: its ``server_close()``
joins every handler thread (one stalled client blocks it forever); this one
keeps its threads as daemons and joins them with a bound. Its handlers' socket
timeout applies to each read, so a trickle holds a connection for ever; here a
deadline applies to the whole head. It also picks the address family from the
host, so an IPv6 address listens as such.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

_REFUSAL_LOG_EVERY_S = 10.0


class BoundedHTTPServer(ThreadingHTTPServer):
    """``serve()`` on a thread of its own; ``stop()`` bounded; connections counted and limited."""

    daemon_threads = True
    block_on_close = False  # stop() joins, with a bound

    def __init__(self, addr: tuple[str, int], handler: type, *, max_connections: int, read_timeout_s: float,
                 log: logging.Logger, name: str, on_refused: Callable[[int], None] | None = None) -> None:
        self.max_connections = max_connections
        self.read_timeout_s = read_timeout_s
        self.log = log
        self.name = name
        self.on_refused = on_refused
        self._conns: dict[socket.socket, list[Any]] = {}  # socket -> [thread, still reading the request]
        self._conn_lock = threading.Lock()
        self._full_logged_at = -1e9
        self._thread: threading.Thread | None = None
        self.stopping = False
        if ":" in addr[0]:
            self.address_family = socket.AF_INET6
        super().__init__(addr, handler)

    # -- lifecycle -------------------------------------------------------------------------
    def serve(self) -> None:
        """Start accepting, on a daemon thread named after the server."""
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1}, name=self.name,
                                        daemon=True)
        self._thread.start()

    def stop(self) -> int:
        """Stop accepting, cut the connections still reading, give requests being answered ``read_timeout``
        to finish; returns how many were still running then."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
            self._thread = None
        self.server_close()
        return self.close_connections(self.read_timeout_s)

    def connections(self) -> int:
        """Connections being served now."""
        with self._conn_lock:
            return len(self._conns)

    # -- connections -----------------------------------------------------------------------
    def process_request(self, request: Any, client_address: Any) -> None:
        t = threading.Thread(target=self.process_request_thread, args=(request, client_address), daemon=True,
                             name=f"{self.name}-conn")
        with self._conn_lock:
            full = self.stopping or len(self._conns) >= self.max_connections
            if not full:
                self._conns[request] = [t, True]
        if full:
            self.refuse(request)
            self.shutdown_request(request)
            return
        t.start()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._conn_lock:
                self._conns.pop(request, None)

    def refuse(self, sock: socket.socket) -> None:
        """Over ``max_connections``: answer 503 without reading (on the accept thread, so never blocking)."""
        if self.on_refused is not None:
            self.on_refused(503)
        now = time.monotonic()
        if now - self._full_logged_at >= _REFUSAL_LOG_EVERY_S:
            self._full_logged_at = now
            self.log.warning("%d connections open (max_connections): refusing more with 503", self.max_connections)
        send_at_once(sock, 503, "Service Unavailable",
                     f"too many connections (max {self.max_connections}); retry later", {"Retry-After": "1"})

    def reading(self, sock: socket.socket, flag: bool) -> bool:
        """Mark a connection as reading a request (cut at stop) or answering one; False once stopping."""
        with self._conn_lock:
            entry = self._conns.get(sock)
            if entry is not None:
                entry[1] = flag
            return not self.stopping

    def close_connections(self, timeout_s: float) -> int:
        """Shut down the reading side of connections waiting for a request, wait up to ``timeout_s`` for
        the requests being answered; returns how many are still running."""
        with self._conn_lock:
            self.stopping = True
            conns = list(self._conns.items())
        for sock, (_, reading) in conns:
            if reading:
                try:
                    sock.shutdown(socket.SHUT_RD)  # a blocked read returns at once
                except OSError:
                    pass
        deadline = time.monotonic() + timeout_s
        for _, (t, _) in conns:
            t.join(max(0.0, deadline - time.monotonic()))
        return sum(t.is_alive() for _, (t, _) in conns)

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        e = sys.exc_info()[1]
        if isinstance(e, ConnectionError):  # the client closed its end (a scrape that timed out): routine
            self.log.info("http: %s hung up before the answer was sent (%s)", client_address[0], type(e).__name__)
            return
        self.log.error("http: request from %s failed: %s: %s", client_address[0], type(e).__name__, e)


def send_at_once(sock: socket.socket, code: int, reason: str, error: str, extra: dict[str, str] | None = None) -> None:
    """Answer ``code`` with ``{"error": ...}`` and ``Connection: close`` in one non-blocking send (a client that
    does not read gets nothing, never a wait)."""
    body = json.dumps({"error": error}).encode()
    head = "".join(f"{k}: {v}\r\n" for k, v in (extra or {}).items())
    data = (f"HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"{head}Connection: close\r\n\r\n").encode() + body
    try:
        sock.setblocking(False)
        sock.send(data)
    except OSError:
        pass


class _DeadlineReader(io.RawIOBase):
    """A socket's reads under one deadline (``start``/``stop``): each read waits only what is left of it."""

    def __init__(self, sock: socket.socket, timeout_s: float) -> None:
        self.sock = sock
        self.timeout_s = timeout_s  # the socket's timeout between deadlines (writes, idle)
        self.deadline: float | None = None
        self.got = 0  # bytes read since the deadline started
        self.timed_out = False

    def start(self) -> None:
        self.deadline = time.monotonic() + self.timeout_s
        self.got = 0
        self.timed_out = False

    def stop(self) -> None:
        self.deadline = None
        self.sock.settimeout(self.timeout_s)

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                self.timed_out = True
                raise TimeoutError(f"not complete within {self.timeout_s:g}s")
            self.sock.settimeout(left)
        try:
            n = self.sock.recv_into(b)
        except TimeoutError:
            self.timed_out = self.deadline is not None
            raise
        self.got += n
        return n


class FramingError(Exception):
    """A request body's framing that is refused: the status ``code`` to answer and why."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class DeadlineHandler(BaseHTTPRequestHandler):
    """A request handler whose request head, and body (``read_body``), must each arrive whole within the
    server's ``read_timeout``. Mix it in before the handler class (``class H(DeadlineHandler, Other)``).

    Refusals it or ``BaseHTTPRequestHandler`` makes (408 here; 400, 414, 431 and friends through
    ``send_error``) are reported to the server's ``on_refused(code)``.
    """

    server: BoundedHTTPServer

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the socket file setup() made: reads go through the deadline reader instead
        self._reader = _DeadlineReader(self.connection, self.server.read_timeout_s)
        self._reader.stop()  # the socket's timeout (for writes) until a request is read
        self.rfile = io.BufferedReader(self._reader)

    def handle(self) -> None:
        self.close_connection = True
        self.handle_one_request()
        while not self.close_connection and self.server.reading(self.connection, True):
            self.handle_one_request()

    def handle_one_request(self) -> None:
        r = self._reader
        self._in_head = True  # until parse_request has read the headers
        r.start()
        try:
            super().handle_one_request()  # a TimeoutError is caught there: it closes the connection
        finally:
            head_cut = r.timed_out and self._in_head and r.got > 0  # part of a head came, not all of it
            r.stop()
        if head_cut:
            self.close_connection = True
            self.count_refusal(408)
            send_at_once(self.connection, 408, "Request Timeout",
                         f"the request head did not arrive within {self.server.read_timeout_s:g}s")

    def parse_request(self) -> bool:
        ok = super().parse_request()
        self._in_head = False
        self._reader.stop()  # the head is in: the body (read_body) gets a deadline of its own
        return ok

    def read_body(self, n: int) -> bytes | None:
        """``n`` bytes of body, all within ``read_timeout`` (raises TimeoutError after it); None if the
        connection ended first."""
        r = self._reader
        r.start()
        try:
            data = self.rfile.read(n)
        finally:
            r.stop()
        return data if len(data) == n else None

    def body_length(self) -> int:
        """The body's length from its one ``Content-Length``; ``FramingError`` when refused (then the
        connection is to be closed: the body is not read).

        Framing that two servers could read two ways is refused (400: the request smuggling class): more
        than one ``Content-Length``, one that is not plain ASCII digits, ``Transfer-Encoding`` next to it
        or given twice. A chunked body alone gets 411: these endpoints read only a ``Content-Length``."""
        asked_close = self.close_connection  # what the request's Connection header and version say
        self.close_connection = True  # a refusal closes: the body is not read
        lengths = self.headers.get_all("Content-Length") or []
        codings = self.headers.get_all("Transfer-Encoding") or []
        if len(lengths) > 1:
            raise FramingError(400, "more than one Content-Length header")
        if codings and (lengths or len(codings) > 1):
            raise FramingError(400, "Transfer-Encoding with Content-Length, or given twice: refused (send one "
                                    "Content-Length)")
        if codings:
            raise FramingError(411, "Content-Length required (Transfer-Encoding is not supported)")
        if not lengths:
            raise FramingError(411, "Content-Length required")
        if not (lengths[0].isascii() and lengths[0].strip().isdigit()):
            raise FramingError(400, f"Content-Length {lengths[0][:20]!r} is not a number of bytes")
        self.close_connection = asked_close
        return int(lengths[0])

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        if code >= 400:
            self.count_refusal(code)
        super().send_error(code, message, explain)

    def count_refusal(self, code: int) -> None:
        """Count a refusal (the server's ``on_refused``)."""
        if self.server.on_refused is not None:
            self.server.on_refused(code)
