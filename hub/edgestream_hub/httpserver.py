"""A threading HTTP server that slow or stalled clients cannot pin: the HTTP source and ``/metrics`` use it.

Guarantees: at most ``max_connections`` connections are served at once (one
more is answered 503 and closed at once, without reading it); each read of a
request has ``read_timeout`` (handlers set it as their ``timeout``); ``stop()``
returns within about ``read_timeout``, whatever the clients do: connections
still reading a request are shut down, requests being answered get up to
``read_timeout`` to finish.

Where it parts from ``http.server.ThreadingHTTPServer``: its ``server_close()``
joins every handler thread (one stalled client blocks it forever); this one
keeps its threads as daemons and joins them with a bound. It also picks the
address family from the host, so an IPv6 address listens as such.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from http.server import ThreadingHTTPServer
from typing import Any, Callable

_REFUSAL_LOG_EVERY_S = 10.0


class BoundedHTTPServer(ThreadingHTTPServer):
    """``serve()`` on a thread of its own; ``stop()`` bounded; connections counted and limited."""

    daemon_threads = True
    block_on_close = False  # stop() joins, with a bound

    def __init__(self, addr: tuple[str, int], handler: type, *, max_connections: int, read_timeout_s: float,
                 log: logging.Logger, name: str, on_refused: Callable[[], None] | None = None) -> None:
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
            self.on_refused()
        now = time.monotonic()
        if now - self._full_logged_at >= _REFUSAL_LOG_EVERY_S:
            self._full_logged_at = now
            self.log.warning("%d connections open (max_connections): refusing more with 503", self.max_connections)
        body = json.dumps({"error": f"too many connections (max {self.max_connections}); retry later"}).encode()
        head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n").encode()
        try:
            sock.setblocking(False)
            sock.send(head + body)
        except OSError:
            pass

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
        self.log.error("http: request from %s failed: %s: %s", client_address[0], type(e).__name__, e)


def read_body(handler: Any, n: int, timeout_s: float) -> bytes | None:
    """A request body of ``n`` bytes, read within ``timeout_s`` in all (not per read: a trickle cannot hold the
    connection); None if the connection ended first. Raises ``TimeoutError`` when the time is up."""
    deadline = time.monotonic() + timeout_s
    parts: list[bytes] = []
    got = 0
    while got < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        handler.connection.settimeout(left)
        chunk = handler.rfile.read1(min(n - got, 1 << 16))
        if not chunk:
            return None
        parts.append(chunk)
        got += len(chunk)
    handler.connection.settimeout(timeout_s)
    return b"".join(parts)
