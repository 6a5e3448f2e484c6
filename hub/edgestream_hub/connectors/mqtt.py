"""MQTT source and sink (paho-mqtt), decoding the shared wire protocol.

The source subscribes to topic filters (wildcards allowed) with QoS 0 or 1 on
a persistent session (``clean_session: false`` with a stable client id, the
default), so QoS 1 messages published while the hub is down are queued by
the broker and delivered when it comes back. With durability on (``state``,
the default) a QoS 1 message is acknowledged only when the engine says it is
safe (``acknowledge``: its records are in a checkpoint or written by the
sinks), in the order the messages came (MQTT 3.1.1, 4.6), only on the
connection it came on (a message of a lost connection comes again and the
restored sequence positions drop it); at most ``max_unacked`` wait (paho then
blocks, so the broker keeps the rest) and half of that asks for a checkpoint,
as does a broker that stops sending while messages wait (its in-flight limit,
mosquitto's ``max_inflight_messages``). Without durability a message is
acknowledged once its records are queued in the hub. The messages one read
of the socket brings (``_reader``) are decoded and emitted as one unit under
the source's intake lock, so each of them is safe, and acknowledged, only
with the whole read; with the intake closed (a stop) none is taken or
acknowledged. Either way a full pipeline holds the message (and the broker's
queue grows instead of the hub's memory). It reconnects
with exponential backoff (also when the broker is unreachable at start, and
the log says why: refused, timed out, or which TLS check failed), supports
TLS and user/password, and MQTT 5 shared subscriptions (``shared_group``).
Payloads go through ``Ingest`` (``decode: wire`` flattens, checks against the
topic and sequence-tracks them); whatever one payload raises makes its dead
letter, never stops the source.

A persistent session keeps the broker's subscriptions across restarts, so a
filter removed from ``topics`` would still deliver. The source remembers what
it subscribed (``ComponentContext.state_path``), unsubscribes the rest when it
connects, and drops any message whose topic matches none of its filters (one
queued before the unsubscribe).

The sink publishes one JSON message per record (``topic`` may name record
fields: ``hub/{device}/avg``) or one JSON array per batch and topic; a
non-finite number is written as null (``jsonio``). A record's result id
(``_id``, docs/hub.md) is in its JSON, and on an MQTT 5 connection also in the
user property ``_id`` of its message (``per: record``), so a subscriber can drop
a result delivered twice without parsing it.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import deque
from typing import Any, Callable

from edgestream_hub import jsonio
from edgestream_hub.components import ComponentContext, Emit, Sink, Source
from edgestream_hub.errors import ComponentError, StartError
from edgestream_hub.registry import component
from edgestream_hub.spec import Checker, Field, Spec

Record = dict[str, Any]
_FIELD = re.compile(r"\{([A-Za-z0-9_.-]+)\}")
_TlsContext = Any  # a _tls_context(): ssl (with socket, ~5 ms) is imported when a client is made, not by `hub check`
_tls_class: Any = None


def _tls_context() -> Any:
    """paho's context, plus the socket of the last handshake: paho drops the socket of a handshake
    that failed without closing it; ``close_failed`` closes it."""
    import ssl

    global _tls_class
    if _tls_class is None:
        class TlsContext(ssl.SSLContext):
            last: ssl.SSLSocket | None = None

            def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
                self.last = sock = super().wrap_socket(*args, **kwargs)
                return sock

            def close_failed(self) -> None:
                sock, self.last = self.last, None
                if sock is not None:
                    sock.close()

        _tls_class = TlsContext
    return _tls_class(ssl.PROTOCOL_TLS_CLIENT)


_READ_CHUNK = 1 << 16  # bytes a receiving client asks of its socket at a time
# A broker closes a session when another client connects with its client id: two such clients close each
# other's in turn, each staying connected only until the other's reconnect.
SHORT_SESSION_S = 10.0
TAKEN_OVER = ("; a connection closed this soon may have been taken over by another client with this client id "
              "(a second hub on a copy of this config, or another gateway whose hub.take overlaps this one's)")
_reader_class: Any = None


def _reader() -> Any:
    """paho's ``Client``, reading its socket a chunk at a time (made on first use: paho is imported lazily).

    paho reads every packet with three or more ``recv`` calls (its type byte, each byte of its length, its
    body) and goes back to ``select`` after each packet: a subscriber of small messages spends more time in
    those system calls than in the messages. This client serves paho's reads from one ``recv`` of up to
    ``_READ_CHUNK`` bytes, handles every packet that chunk holds before paho selects again (the one cut
    off at its end is finished with paho's own exact reads, so the chunk never holds bytes ``select``
    cannot see, and paho still gets back to its keepalive and writes after every chunk), and then calls
    its ``after_read`` (so a source can hand on what one read brought in one batch, before paho
    writes the acknowledgements of those messages). A paho without the read hook this relies on
    (``Client._sock_recv``) gets its own client back, unchanged.
    """
    global _reader_class
    if _reader_class is not None:
        return _reader_class
    import paho.mqtt.client as mqtt

    if not callable(getattr(mqtt.Client, "_sock_recv", None)):
        _reader_class = mqtt.Client
        return _reader_class

    class ChunkedClient(mqtt.Client):
        after_read: Callable[[], None] | None = None
        _rsock: Any = None  # the socket the buffer was read from: a new connection starts empty
        _rbuf = b""
        _rpos = 0
        _chunk = False  # whether this read may still take a chunk (one per loop_read)

        def _sock_recv(self, bufsize: int) -> bytes:
            buf, pos = self._rbuf, self._rpos
            if pos >= len(buf) or self._sock is not self._rsock:
                self._rsock, self._rbuf, self._rpos = self._sock, b"", 0
                if not self._chunk:  # the chunk is used up: finish the packet with exact reads
                    return super()._sock_recv(bufsize)
                self._chunk = False
                buf, pos = super()._sock_recv(_READ_CHUNK), 0  # BlockingIOError when nothing is there
                if not buf:
                    return buf  # the connection closed
                self._rbuf = buf
            end = pos + bufsize
            self._rpos = end
            return buf[pos:end] if pos or end < len(buf) else buf

        def loop_read(self, max_packets: int = 1) -> Any:
            """Every packet one chunk holds (the last one finished with exact reads, so nothing is left
            behind that ``select`` cannot see), then ``after_read``."""
            self._chunk = True
            try:
                rc = super().loop_read(max_packets)
                while not rc and self._rpos < len(self._rbuf) and self._sock is not None \
                        and self._sock is self._rsock:
                    rc = super().loop_read(max_packets)  # packets already read: no select in between
                return rc
            finally:
                self._chunk = False
                if self.after_read is not None:
                    self.after_read()

    _reader_class = ChunkedClient
    return _reader_class


def mqtt_client(conn: dict[str, Any], client_id: str, clean: bool, label: str, chunked: bool = False,
                manual_ack: bool = False) -> tuple[Any, _TlsContext | None]:
    """A paho client for ``conn`` and its TLS context (None without TLS); ``chunked``: one that reads its
    socket a chunk at a time and calls ``after_read`` after each (``_reader``); ``manual_ack``: QoS 1
    messages are acknowledged only by ``client.ack(mid, 1)``."""
    import paho.mqtt.client as mqtt

    v5 = conn["protocol"] == "5"
    kw: dict[str, Any] = {"client_id": client_id, "protocol": mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
                          "manual_ack": manual_ack}
    if not v5:
        kw["clean_session"] = clean
    c = (_reader() if chunked else mqtt.Client)(mqtt.CallbackAPIVersion.VERSION2, **kw)
    if conn.get("username") is not None:
        c.username_pw_set(conn["username"], conn.get("password"))
    tls = conn.get("tls")
    context = None
    if tls is not None:
        import ssl

        try:  # what paho's tls_set builds: verified certificates and host name
            context = _tls_context()
            if tls.get("cert_file"):
                context.load_cert_chain(tls["cert_file"], tls.get("key_file"))
            if tls.get("ca_file"):
                context.load_verify_locations(tls["ca_file"])
            else:
                context.load_default_certs()
        except (OSError, ssl.SSLError, ValueError) as e:
            raise StartError(label, f"TLS setup failed: {e}") from e
        c.tls_set_context(context)
        c.tls_insecure_set(bool(tls.get("insecure")))
    c.reconnect_delay_set(max(1, conn["reconnect_min"] // 1000), max(1, conn["reconnect_max"] // 1000))
    c.connect_timeout = conn["connect_timeout"] / 1000
    return c, context


def mqtt_connect(c: Any, conn: dict[str, Any], clean: bool, receive_max: int | None = None) -> None:
    """Connect asynchronously; on MQTT 5 ``receive_max`` tells the broker how many QoS 1 messages may wait
    for our acknowledgement at once."""
    kw: dict[str, Any] = {}
    if conn["protocol"] == "5":
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.CONNECT)
        if not clean:
            props.SessionExpiryInterval = 0xFFFFFFFF  # keep the session (and queued messages) forever
        if receive_max:
            props.ReceiveMaximum = min(receive_max, 65535)
        kw = {"clean_start": clean, "properties": props}
    c.connect_async(conn["host"], conn["port"], keepalive=max(1, conn["keepalive"] // 1000), **kw)


def _connection(ctx: ComponentContext, name: str) -> dict[str, Any]:
    conn = ctx.connections.get(name)
    if conn is None:
        raise StartError(ctx.label, f"no MQTT connection {name!r} (define `broker:` or `connections.{name}`)")
    return conn


_TLS_HINTS = {  # OpenSSL verify codes -> what to do about them
    2: "unknown CA: tls.ca_file does not hold the CA that signed the broker's certificate",
    18: "unknown CA: the broker's certificate is self-signed and not in tls.ca_file",
    19: "unknown CA: tls.ca_file does not hold the CA that signed the broker's certificate",
    20: "unknown CA: tls.ca_file does not hold the CA that signed the broker's certificate",
    9: "the certificate is not valid yet: check the clocks",
    10: "expired certificate: renew the broker's certificate (or check the gateway's clock)",
    62: "hostname mismatch: connect by a name the certificate holds, or fix its subjectAltName",
    64: "hostname mismatch: connect by an address the certificate holds, or fix its subjectAltName",
}


def connect_error(e: BaseException | None, timeout_s: float) -> str:
    """Why a connection attempt failed, in words an operator can act on (TLS failures say which check)."""
    import socket
    import ssl

    if isinstance(e, ssl.SSLCertVerificationError):
        hint = _TLS_HINTS.get(e.verify_code)
        return f"TLS certificate verification failed: {e.verify_message or e.reason}" + (f" ({hint})" if hint else "")
    if isinstance(e, ssl.SSLError):
        return f"TLS handshake failed: {e.reason or e}"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused (is the broker running, on this port?)"
    if isinstance(e, (socket.timeout, TimeoutError)):
        return f"no answer within {timeout_s:g}s"
    if isinstance(e, socket.gaierror):
        return f"cannot resolve the host: {e.strerror or e}"
    if isinstance(e, OSError):
        return e.strerror or str(e) or type(e).__name__
    return f"{type(e).__name__}: {e}" if e is not None else "unknown reason"


def attempt_failed(tls: _TlsContext | None, conn: dict[str, Any]) -> str:
    """Why the connection attempt paho is handling failed; closes the socket of a failed TLS handshake.
    Called from ``on_connect_fail``, which paho calls inside its ``except OSError:`` block, so the
    exception is still at hand."""
    if tls is not None:
        tls.close_failed()
    import sys

    return connect_error(sys.exc_info()[1], conn["connect_timeout"] / 1000)


class MqttSource(Source):
    def __init__(self, config: dict[str, Any], ctx: ComponentContext) -> None:
        self.ctx = ctx
        self.conn = _connection(ctx, config["connection"])
        self.topics = config["topics"]
        self.qos = config["qos"]
        self.clean = config["clean_session"]
        share = getattr(ctx, "share", None)
        base_id = config["client_id"] or f"edgestream-hub-{ctx.label}"
        self.client_id = share.client_id(base_id) if share is not None else base_id
        group = config["shared_group"]
        if not group and share is not None and ctx.name in share.shared:
            group = f"edgestream-{ctx.label}"  # stateless: the broker splits the messages between the workers
        # the devices of other hub processes are theirs (a shared group is split by the broker instead)
        self._share = share if share is not None and not share.whole and not group else None
        self._key_prefix = config["prefix"] if config["decode"] == "wire" else None
        self.filters = [f"$share/{group}/{t}" if group else t for t in self.topics]
        self.format = config["decode"]
        import hashlib

        from edgestream_hub.ingest import Ingest

        self.ingest = Ingest(ctx, self.format, prefix=config["prefix"], max_payload=config["max_payload"])
        self.max_unacked = config["max_unacked"]
        self.acknowledges = bool(getattr(ctx, "durable", False) and self.qos == 1)
        self._acks = threading.Condition()
        self._pending: deque[tuple[int, int, int]] = deque()  # (ticket, mid, connection number), in arrival order
        self._conn_no = 0  # counts connections: a mid means something only on the connection it came on
        self._last_msg = time.monotonic()
        self._stall: tuple[float, int, int] = (0.0, 0, 0)  # (last message then, unacked then, times in a row)
        key = f"{self.conn['host']}:{self.conn['port']}/{self.client_id}"
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", self.client_id)[:64]
        self.subscriptions_file = ctx.state_path(
            f"mqtt-{name}-{hashlib.sha256(key.encode()).hexdigest()[:8]}.subscriptions.json")
        self._emit: Emit | None = None
        self._client: Any = None
        self._tls: _TlsContext | None = None
        self._sub_mid: int | None = None
        self._wanted: dict[str, bool] = {}  # topic -> matches one of our filters (bounded cache)
        self._held: list[tuple[Any, str, str]] | None = None  # messages of the read under way (a chunked client)
        self._held_acks: list[tuple[int, int, int]] = []  # their QoS 1 (mid, connection number, units up to it)
        self._last_fail: tuple[str, float] = ("", 0.0)
        self._unwanted_logged_at = -1e9
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self._was_connected = False
        self._connected_at = 0.0  # monotonic time of the last CONNACK: a session closed soon after was taken over?
        self._stopping = False

    def open(self) -> None:
        self._client, self._tls = mqtt_client(self.conn, self.client_id, self.clean, self.ctx.label,
                                              chunked=True, manual_ack=self.acknowledges)
        c = self._client
        if hasattr(c, "after_read"):  # messages are handed on once per read, not one by one
            self._held = []
            c.after_read = self._after_read
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_connect_fail = self._on_connect_fail
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe

    def start(self, emit: Emit) -> None:
        self._emit = emit
        mqtt_connect(self._client, self.conn, self.clean, self.max_unacked if self.acknowledges else None)
        self._client.loop_start()

    def stop(self) -> None:
        c = self._client
        if c is not None:
            self._stopping = True
            with self._acks:
                self._acks.notify_all()  # a message waiting for room gives up: it is not acknowledged
            c.disconnect()
            c.loop_stop()
            self._client = None
        self.ingest.close()

    # -- durability: positions and acknowledgements --
    def positions(self) -> Any:
        return self.ingest.positions()

    def restore_positions(self, positions: Any) -> None:
        self.ingest.resume(positions)

    def acknowledge(self, ticket: int) -> None:
        """Acknowledge, in arrival order, every message up to ``ticket`` that came on the live connection."""
        with self._acks:
            c = self._client
            pending, conn_no = self._pending, self._conn_no
            while pending and pending[0][0] <= ticket:
                _, mid, conn = pending.popleft()
                if conn == conn_no and c is not None:
                    c.ack(mid, 1)
            self._acks.notify_all()

    def unacked(self) -> int:
        return len(self._pending)

    def wants_checkpoint(self) -> bool:
        n = len(self._pending)
        if not n:
            return False
        if n * 2 >= self.max_unacked:
            return True
        last = self._last_msg
        if n < 16 or time.monotonic() - last < 0.02:
            return False
        # messages wait and none came for 20 ms: the broker may be holding the rest back until we acknowledge
        at, before, times = self._stall
        if last != at:
            times = times + 1 if n == before else 1
            self._stall = (last, n, times)
            if times == 20:
                self.ctx.log.warning(
                    "the broker sends at most ~%d unacknowledged messages at a time, so every %d wait for a "
                    "checkpoint before more come (slow): raise its limit (mosquitto: max_inflight_messages %d; "
                    "docs/hub.md, Durability)", n, n, self.max_unacked)
        return True

    def _connection_changed(self) -> None:
        """The messages of the old connection can no longer be acknowledged: forget them (the broker delivers
        them again on the new one; the sequence positions drop what was already taken)."""
        with self._acks:
            self._conn_no += 1
            self._pending.clear()
            self._acks.notify_all()

    def _hold(self, ticket: int, acks: list[tuple[int, int, int]]) -> None:
        """Keep messages (mid, connection number, _) of the unit ``ticket`` unacknowledged until
        ``acknowledge``; those of a connection lost since they came are forgotten (they come again)."""
        with self._acks:
            conn_no = self._conn_no
            self._pending.extend((ticket, mid, conn) for mid, conn, _ in acks if conn == conn_no)
            self._last_msg = time.monotonic()

    def _room(self) -> int:
        """How many more messages may wait for their acknowledgement: waits while ``max_unacked`` do (paho
        reads nothing meanwhile, so the broker keeps the rest); 0 once a stop ends the wait."""
        with self._acks:
            while len(self._pending) >= self.max_unacked and not self._stopping:
                self._acks.wait(0.1)
            return max(0, self.max_unacked - len(self._pending))

    # -- subscriptions: exactly the configured filters, also on a persistent session --
    def _remembered(self) -> set[str] | None:
        import json

        try:
            with open(self.subscriptions_file, encoding="utf-8") as f:
                data = json.load(f)
            return {str(x) for x in data["filters"]}
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as e:
            self.ctx.log.warning("ignoring unreadable %s: %s", self.subscriptions_file, e)
            return None

    def _remember(self) -> None:
        import json

        path = self.subscriptions_file
        tmp = f"{path}.tmp"
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump({"broker": f"{self.conn['host']}:{self.conn['port']}", "client_id": self.client_id,
                           "filters": sorted(self.filters)}, f)
            os.replace(tmp, path)
        except OSError as e:
            self.ctx.log.warning("cannot remember the subscriptions in %s (%s): a filter removed from `topics` "
                                 "later will stay subscribed at the broker (its messages are still dropped)",
                                 path, e.strerror or e)

    def _matches(self, topic: str) -> bool:
        import paho.mqtt.client as mqtt

        matched = any(mqtt.topic_matches_sub(t, topic) for t in self.topics)
        wanted = matched and (self._share is None or self._share.owns_topic(topic, self._key_prefix))
        if len(self._wanted) >= 4096:
            self._wanted.clear()
        self._wanted[topic] = wanted
        now = time.monotonic()
        if not matched and now - self._unwanted_logged_at >= 60:
            self._unwanted_logged_at = now
            self.ctx.log.info("dropping messages on %s: it matches none of %s (a subscription left by an earlier "
                              "config; logged at most once a minute)", topic, ", ".join(self.topics))
        return wanted

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any = None) -> None:
        if reason.is_failure:
            self.ctx.log.error("broker %s:%s refused the connection: %s", self.conn["host"], self.conn["port"], reason)
            return
        if self._was_connected:
            self.ctx.count("edgestream_source_reconnects_total")
        self._was_connected = True
        self._connected_at = time.monotonic()
        self._connection_changed()
        self._last_fail = ("", 0.0)
        if self._tls is not None:
            self._tls.last = None  # the live connection's: paho closes it
        if not self.clean and flags.session_present:
            stale = sorted((self._remembered() or set()) - set(self.filters))
            if stale:
                self.ctx.log.info("unsubscribing from %s (no longer in `topics`)", ", ".join(stale))
                client.unsubscribe(stale)
        self.ctx.log.info("connected to %s:%s, subscribing to %s (QoS %d)", self.conn["host"], self.conn["port"],
                          ", ".join(self.filters), self.qos)
        self._sub_mid = client.subscribe([(f, self.qos) for f in self.filters])[1]
        self.connected.set()

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, codes: Any, props: Any = None) -> None:
        if mid != self._sub_mid:
            return
        refused = [f for f, rc in zip(self.filters, codes) if getattr(rc, "is_failure", False)]
        if refused:
            self.ctx.log.error("the broker refused the subscription to %s", ", ".join(refused))
        if not self.clean:
            self._remember()  # the broker handled the unsubscribe before this SUBACK: packets are in order
        self.subscribed.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any = None) -> None:
        self.connected.clear()
        self._connection_changed()
        if not self._stopping and reason.is_failure:
            lasted = time.monotonic() - self._connected_at
            self.ctx.log.warning("lost the broker (%s) after %.1fs connected as %s; reconnecting with backoff%s",
                                 reason, lasted, self.client_id, TAKEN_OVER if lasted < SHORT_SESSION_S else "")

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        why = attempt_failed(self._tls, self.conn)
        self.ctx.count("edgestream_source_reconnects_total")
        now = time.monotonic()
        last, at = self._last_fail
        if why != last or now - at >= 60:
            self._last_fail = (why, now)
            self.ctx.log.warning("cannot connect to broker %s:%s: %s; retrying with backoff", self.conn["host"],
                                 self.conn["port"], why)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            topic = msg.topic
            wanted = self._wanted.get(topic)
            wanted = wanted or (wanted is None and self._matches(topic))
            acked = self.acknowledges and msg.qos == 1
            if not (wanted or acked):
                return  # nothing to take and nothing to acknowledge
            unit = (msg.payload, f"mqtt {topic}", topic) if wanted else None
            held = self._held
            if held is None:  # paho's own client: each message is its own unit
                self._deliver([unit] if unit is not None else [],
                              [(msg.mid, self._conn_no, 1 if unit is not None else 0)] if acked else [])
                return
            if unit is not None:  # handed on by _after_read, with the rest of this read
                held.append(unit)
            if acked:  # an unwanted message too is acknowledged in its turn
                self._held_acks.append((msg.mid, self._conn_no, len(held)))
        except Exception as e:  # an exception here would end paho's network thread for good
            self.ctx.log.error("a message could not be handled: %s: %s", type(e).__name__, e)

    def _after_read(self) -> None:
        """paho handled every message one read brought: decode them and hand their records on at once (without
        durability paho writes their acknowledgements after this returns; with it they wait for
        ``acknowledge``)."""
        held, acks = self._held, self._held_acks
        if held is not None and (held or acks):
            self._held, self._held_acks = [], []
            try:
                self._deliver(held, acks)
            except Exception as e:  # as in _on_message: paho's network thread must go on
                self.ctx.log.error("%d messages could not be handled: %s: %s", len(held), type(e).__name__, e)

    def _deliver(self, units: list[tuple[Any, str, str]], acks: list[tuple[int, int, int]]) -> None:
        """Decode messages (payload, where, topic) and emit their records as one unit, whose ticket the QoS 1
        messages ``acks`` (mid, connection number, how many of ``units`` came up to it) then wait for,
        unacknowledged. More than there is room for (``max_unacked``) go as several units, each after the
        room for it (paho reads no more meanwhile, so the broker keeps the rest); ``emit`` blocks while the
        pipelines are full. With the intake closed or the source stopping nothing more is taken or held: the
        broker delivers it again."""
        emit = self._emit
        if emit is None:  # the client connects in start(), after _emit is set
            raise ComponentError(self.ctx.label, "a message arrived before the source started")
        feed, lock = self.ingest.feed_many, self.ctx.intake.lock
        if not acks:
            feed(units, emit)
            return
        u = a = 0
        while a < len(acks):
            room = self._room()
            if not room:
                return  # stopping: the rest stays unacknowledged and comes again
            end = a + room
            u_end = acks[end - 1][2] if end < len(acks) else len(units)  # the last unit takes what is left
            with lock:  # held by a checkpoint's cut too: it sees a unit and its acknowledgements together
                ticket = feed(units[u:u_end], emit)
                if ticket is None:
                    return
                self._hold(ticket, acks[a:end])
            u, a = u_end, end


def _topic_problem(topic: str, wildcards: bool) -> str | None:
    """Why ``topic`` is not a valid MQTT topic filter (``wildcards``) or publish topic, or None."""
    if not topic:
        return "is empty"
    if "\0" in topic or len(topic.encode()) > 65535:
        return "has a NUL character or is over 65535 bytes"
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if "+" in level or "#" in level:
            if not wildcards:
                return "has a wildcard (+ or #): a topic to publish to cannot have one"
            if len(level) > 1:
                return f"mixes a wildcard with other characters in level {level!r} (a wildcard is a whole level)"
            if level == "#" and i != len(levels) - 1:
                return "has '#' before its last level ('#' matches the rest, so it must come last)"
    return None


def _check_source(cfg: dict[str, Any], chk: Checker, path: str) -> None:
    for i, t in enumerate(cfg["topics"]):
        problem = _topic_problem(t, wildcards=True)
        if problem:
            chk.issue(f"{path}.topics[{i}]", f"{t!r} is not a valid MQTT topic filter: it {problem}")
    conn = chk.sections.get("connections", {}).get(cfg["connection"])
    if cfg["shared_group"] is not None and conn is not None and conn.get("protocol") != "5":
        chk.issue(f"{path}.shared_group", f"shared_group needs an MQTT 5 connection: set protocol: \"5\" on "
                                          f"connection {cfg['connection']!r}")


@component(Spec("mqtt", "Subscribes to MQTT topics and decodes EdgeStream wire messages (or plain JSON).", [
    Field("connection", "str", "The MQTT connection (`broker:` is `default`).", default="default",
          ref="connections"),
    Field("topics", "list[str]", "Topic filters; `+` and `#` wildcards allowed.", one_or_list=True),
    Field("qos", "int", "Subscription QoS.", default=1, choices=(0, 1)),
    Field("client_id", "str", "Client id; keep it stable for a persistent session (default "
          "`edgestream-hub-<label>`).", default=None),
    Field("clean_session", "bool", "false keeps the session at the broker across restarts, so QoS 1 messages "
          "are queued while the hub is away.", default=False),
    Field("shared_group", "str", "MQTT 5 shared subscription group (`$share/<group>/<filter>`): several hubs "
          "split the messages. Needs `protocol: \"5\"` on the connection.", default=None, name_like=True),
    Field("decode", "str", "`wire`: EdgeStream messages, flattened and sequence-tracked; `json`: an object or "
          "an array of objects per message; `raw`: `{topic, payload}`.", default="wire",
          choices=("wire", "json", "raw")),
    Field("prefix", "str", "Topic prefix of the wire layout (`<prefix>/<device>/<kind>`).", default="edgestream"),
    Field("max_payload", "size", "Largest accepted payload.", default="64KiB"),
    Field("max_unacked", "int", "With durability on, QoS 1 messages that may wait for their acknowledgement at "
          "once (half of it asks for an early checkpoint; at the limit the source stops reading and the broker "
          "keeps the rest). Also sent as Receive Maximum on MQTT 5.", default=20000, min=2, max=65535),
], check=_check_source, example="""
broker: {host: 127.0.0.1, port: 1883}
sources:
  devices: {mqtt: {topics: ["edgestream/+/results", "edgestream/+/data"], qos: 1}}
"""))
def mqtt_source(config: dict[str, Any], ctx: ComponentContext) -> MqttSource:
    return MqttSource(config, ctx)


class MqttSink(Sink):
    def __init__(self, config: dict[str, Any], ctx: ComponentContext) -> None:
        self.ctx = ctx
        self.conn = _connection(ctx, config["connection"])
        self.topic = config["topic"]
        self.fields = _FIELD.findall(self.topic)
        self.qos = config["qos"]
        self.retain = config["retain"]
        self.per = config["per"]
        self.timeout_s = config["timeout"] / 1000
        share = getattr(ctx, "share", None)
        base_id = config["client_id"] or f"edgestream-hub-{ctx.label}"
        self.client_id = share.client_id(base_id) if share is not None else base_id
        self._client: Any = None
        self._tls: _TlsContext | None = None
        self.connected = threading.Event()
        self.why = "not connected yet"  # why the last connection attempt failed
        from edgestream_hub.connectors.files import json_line_encoder

        self._encode, self._reset = json_line_encoder(ensure_ascii=True)  # one encoder, not one per record

    def open(self) -> None:
        self._client, self._tls = mqtt_client(self.conn, self.client_id, True, self.ctx.label)
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = lambda c, u, f, rc, p=None: self.connected.clear()
        self._client.max_queued_messages_set(0)
        mqtt_connect(self._client, self.conn, True)
        self._client.loop_start()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any = None) -> None:
        if reason.is_failure:
            self.why = f"the broker refused the connection: {reason}"
            return
        if self._tls is not None:
            self._tls.last = None
        self.connected.set()

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        self.why = attempt_failed(self._tls, self.conn)  # a write that waits in vain says it

    def _topic(self, r: Record) -> str:
        if not self.fields:
            return self.topic
        vals = {}
        for f in self.fields:
            v = r.get(f)
            if v is None or not re.match(r"^[A-Za-z0-9_.-]{1,64}$", str(v)):
                raise ValueError(f"topic {self.topic!r}: field {f!r} is {v!r}, not a 1-64 character name")
            vals[f] = str(v)
        return _FIELD.sub(lambda m: vals[m.group(1)], self.topic)

    def write(self, records: list[Record]) -> list[tuple[Any, str]]:
        if not self.connected.wait(self.timeout_s):
            raise ComponentError(self.ctx.label, f"not connected to {self.conn['host']}:{self.conn['port']}: "
                                                 f"{self.why}")
        from edgestream_hub.connectors.files import encode_finite

        rejected: list[tuple[Any, str]] = []
        out: dict[str, list[tuple[str, Any]]] = {}
        nonfinite = 0
        ids = self.conn["protocol"] == "5" and self.per == "record"
        for r in records:
            try:
                topic = self._topic(r)
                text, n = encode_finite(self._encode, self._reset, r)
            except (TypeError, ValueError, RecursionError) as e:
                self._reset()
                rejected.append((r, f"mqtt sink {self.ctx.label}: {e}"))
                continue
            out.setdefault(topic, []).append((text, r.get("_id") if ids and isinstance(r, dict) else None))
            nonfinite += n
        infos = []
        publish = self._client.publish
        for topic, items in out.items():
            if self.per == "batch":
                infos.append(publish(topic, "[" + ",".join(t for t, _ in items) + "]", qos=self.qos,
                                     retain=self.retain))
                continue
            for text, rid in items:
                infos.append(publish(topic, text, qos=self.qos, retain=self.retain,
                                     properties=_id_property(rid) if rid is not None else None))
        for info in infos:
            if info.rc != 0:
                raise ComponentError(self.ctx.label, f"publish failed (rc {info.rc})")
            if self.qos:
                info.wait_for_publish(self.timeout_s)
                if not info.is_published():
                    raise ComponentError(self.ctx.label, "publish not acknowledged in time")
        self.ctx.count(jsonio.NONFINITE_METRIC, nonfinite)
        return rejected

    def close(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None


def _id_property(rid: Any) -> Any:
    """MQTT 5 PUBLISH properties carrying a result id as the user property ``_id``."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = ("_id", str(rid))
    return props


def _check_sink(cfg: dict[str, Any], chk: Checker, path: str) -> None:
    t = cfg["topic"]
    bare = _FIELD.sub("x", t)
    problem = "has a '{' or '}' that is not a {field} placeholder" if "{" in bare or "}" in bare else \
        _topic_problem(bare, wildcards=False)
    if problem:
        chk.issue(f"{path}.topic", f"{t!r} is not a valid MQTT topic: it {problem}")


@component(Spec("mqtt", "Publishes records as JSON to an MQTT topic.", [
    Field("connection", "str", "The MQTT connection (`broker:` is `default`).", default="default",
          ref="connections"),
    Field("topic", "str", "Topic; `{field}` is replaced by the record's field (a 1-64 character name, else the "
          "record goes to the dead-letter sink)."),
    Field("qos", "int", "Publish QoS (1 waits for the broker's ack before the batch counts as written).",
          default=1, choices=(0, 1)),
    Field("retain", "bool", "Publish retained.", default=False),
    Field("per", "str", "`record`: one message per record; `batch`: one JSON array per batch and topic.",
          default="record", choices=("record", "batch")),
    Field("timeout", "duration", "How long a batch may wait for the connection or acks before it is retried.",
          default="10s"),
    Field("client_id", "str", "Client id (default `edgestream-hub-<label>`).", default=None),
], check=_check_sink, example="sinks:\n  upstream: {mqtt: {topic: \"hub/{device}/results\", qos: 1}}"))
def mqtt_sink(config: dict[str, Any], ctx: ComponentContext) -> MqttSink:
    return MqttSink(config, ctx)
