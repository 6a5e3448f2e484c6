# Non-blocking MQTT 3.1.1 client for the EdgeStream agent.
#
# umqtt.simple (micropython-lib) is the reference API, but every one of its
# calls blocks on the socket: a broker that is slow or gone stalls the whole
# board for the socket timeout. This client never blocks: the socket is
# non-blocking, connect() only starts a TCP connect (EINPROGRESS) and poll()
# - called from a scheduler task every few ms - advances a small state machine:
#
#   DOWN --(backoff deadline)--> TCP --(writable)--> CONNACK --(rc 0)--> UP
#     ^                                                                  |
#     +------------- error / EOF / timeout / missed PINGRESP -----------+
#
# Differences from umqtt.simple, on purpose:
# - publish() copies the packet into a preallocated transmit buffer and
#   returns at once: the packet id for QoS 1, 0 for QoS 0, or None when the
#   link is down or the buffer is full (back-pressure: the caller keeps the
#   message, e.g. in the offline buffer, and tries again later).
# - QoS 1 payloads are NOT kept by the client. It remembers the packet ids in
#   flight (in order) and calls on_puback(pid) for each ack; on_disconnect()
#   tells the owner that everything unacked must be resent (with dup=True)
#   after the next on_connect(). The agent's offline buffer is that store, so
#   no payload is ever held twice. A publish() whose packet the socket fails
#   under still returns its packet id (it may have gone out): the link is
#   closed, and on_disconnect() called, by the next poll(), never from
#   inside publish(), so the owner's books see "sent, then lost".
# - Reconnecting is built in: after a failure it waits between b/2 and b
#   (random), b doubling from backoff_min_ms up to backoff_max_ms and back
#   to the minimum after a CONNACK; so never longer than backoff_max_ms.
# - Subscriptions are remembered and sent again after every CONNACK (the
#   session is clean, so the broker forgets them).
# - Incoming packets larger than rx_size are skipped without buffering them;
#   on_oversize(topic, size, buf, start, end) is called (topic None if it
#   did not fit either; buf[start:end] the payload's bytes at hand, the
#   start of it when size > rx_size) and a QoS 1 one is still acknowledged. So is one that fits but finds no
#   heap for its copy (size <= rx_size then): a board short of heap drops
#   the message, never the link.
# - DNS: getaddrinfo() blocks on boards; it runs once per server and the
#   address is cached. Use an IP address to avoid it entirely.
#
# Runs unchanged under CPython (tests, host tools).

import socket

import select

from edgestream_agent.timebase import const, ticks_add, ticks_diff, ticks_ms

try:
    from random import getrandbits
except ImportError:  # ports without random: the clock is jitter enough
    def getrandbits(n):
        return ticks_ms() & ((1 << n) - 1)

# Memory: on the unix port every function and every distinct name of a
# module costs heap (bytecode, a function object, an interned string), so
# this client is a few methods over one transmit and one receive buffer:
# packets are written with _put (bytes) and _hdr (fixed header), parsed in
# _parse, and the CPython fallbacks come from timebase.py.

# states
DOWN = const(0)
TCP = const(1)
CONNACK = const(2)
UP = const(3)

_EAGAIN = (11, 115, 119)  # EAGAIN/EWOULDBLOCK, EINPROGRESS, lwIP's EINPROGRESS


class MQTTException(OSError):
    # A protocol-level failure; code is the CONNACK return code when there
    # was one (4 bad username/password, 5 not authorised).
    pass


def _again(e):
    # a non-blocking socket (or CPython's ssl: SSLWant*Error) would block
    return (e.args[0] if e.args else 0) in _EAGAIN or "Want" in e.__class__.__name__


def _b(s):
    return s.encode() if isinstance(s, str) else s


class MQTTClient:
    def __init__(self, client_id, server, port=0, user=None, password=None,
                 keepalive=30, ssl=None, ssl_params=None, tx_size=2048,
                 rx_size=2048, max_inflight=8, backoff_min_ms=250,
                 backoff_max_ms=3000, connect_timeout_ms=5000):
        self.client_id = _b(client_id)
        self.server = server
        self.port = port or (8883 if ssl else 1883)
        self.user = _b(user)
        self.pswd = _b(password)
        self.keepalive = keepalive          # seconds, 0 = no pings
        self.ssl = ssl                      # an ssl.SSLContext, True (verifies nothing), or None
        self.ssl_params = ssl_params or {}
        self.backoff_min_ms = backoff_min_ms
        self.backoff_max_ms = backoff_max_ms
        self.connect_timeout_ms = connect_timeout_ms
        self.lw = None                      # last will: (topic, msg, retain, qos)
        self.cb = None                      # cb(topic, msg) like umqtt
        self.on_connect = None              # called after CONNACK and resubscribe
        self.on_disconnect = None           # called once per lost connection
        self.on_puback = None               # on_puback(pid)
        self.on_oversize = None             # on_oversize(topic or None, size)
        self.state = DOWN
        self.error = None                   # last error, for logs/health
        # counters (health metrics)
        self.connects = 0                   # successful CONNACKs
        self.failures = 0                   # connection attempts or links that failed
        self.rx_oversize = 0                # incoming packets skipped for size
        self.pings = 0
        # buffers, allocated once
        self._tx = bytearray(tx_size)
        self._txv = memoryview(self._tx)
        self._tx_n = 0                      # bytes queued
        self._tx_off = 0                    # of which already sent
        self._rx = bytearray(rx_size)
        self._rxv = memoryview(self._rx)
        self._rx_n = 0
        self._skip = 0                      # bytes of an oversize packet still to drop
        self._inflight = [0] * max_inflight  # QoS 1 packet ids, oldest first
        self._n_inflight = 0
        self._pid = 0
        self._subs = []                     # [(topic bytes, qos)]
        self._sock = None
        self._poller = None
        self._addr = None
        self._write = None
        self._readinto = None
        self._want = False                  # connect() was called and not disconnect()
        self._backoff = backoff_min_ms
        self._next_try = ticks_ms()
        self._t_state = 0                   # when the current state began
        self._t_rx = 0                      # last byte received
        self._t_tx = 0                      # last packet sent
        self._ping_out = False
        self._dead = None                   # the error a publish() met: poll() closes the link

    # -- umqtt-like surface -------------------------------------------------
    def set_callback(self, f):
        self.cb = f

    def set_last_will(self, topic, msg, retain=False, qos=0):
        self.lw = (_b(topic), msg, retain, qos)

    def connect(self, clean_session=True):
        # Start connecting now; poll() finishes the job (and reconnects for
        # ever after, with backoff, until disconnect()). Never blocks, except
        # for the first DNS lookup of a host name.
        self._want = True
        self._next_try = ticks_ms()
        self.poll()
        return False

    def disconnect(self):
        # Graceful: queue DISCONNECT, try once to send it, close.
        self._want = False
        if self.state == UP and self._room(2):
            self._put(b"\xe0\x00")
            try:
                self._flush()
            except OSError:
                pass
        self._close(None, False)

    def is_connected(self):
        return self.state == UP

    def inflight(self):
        return self._n_inflight

    def can_publish(self, nbytes=0):
        # True when a QoS 1 publish of that size would be accepted now.
        return self.state == UP and self._dead is None and self._n_inflight < len(self._inflight) and \
            self._room(nbytes + 64)

    def subscribe(self, topic, qos=0):
        # Remembered and (re)sent after every CONNACK.
        topic = _b(topic)
        for t, _ in self._subs:
            if t == topic:
                return
        self._subs.append((topic, qos))
        if self.state == UP:
            self._sub(topic, qos)

    def ping(self):
        if self.state == UP and self._room(2):
            self._put(b"\xc0\x00")
            self._ping_out = True
            self.pings += 1

    def check_msg(self):
        # umqtt name for "process whatever arrived"; same as poll().
        return self.poll()

    def publish(self, topic, msg, retain=False, qos=0, dup=False):
        # -> packet id (QoS 1), 0 (QoS 0), or None: not connected, too many
        # in flight, or no room in the transmit buffer right now.
        if self.state != UP or self._dead is not None or qos and self._n_inflight >= len(self._inflight):
            return None
        topic = _b(topic)
        msg = _b(msg)
        if not self._hdr(0x30 | (qos << 1) | (8 if dup else 0) | (1 if retain else 0),
                         2 + len(topic) + len(msg) + (2 if qos else 0)):
            return None
        self._str(topic)
        pid = 0
        if qos:
            pid = self._pid = self._pid % 65535 + 1
            self._put(bytes((pid >> 8, pid & 255)))
            self._inflight[self._n_inflight] = pid
            self._n_inflight += 1
        self._put(msg)
        try:
            self._flush()
        except OSError as e:
            # the link died under the packet, which may or may not have gone
            # out: the owner takes it as sent (pid), the next poll() closes
            # the link and on_disconnect() has it sent again
            self._dead = e
        return pid

    # -- the state machine ---------------------------------------------------
    def poll(self):
        # Advance connect / send / receive / keepalive. Never blocks. Returns
        # the state. Errors close the link and schedule a reconnect.
        st = self.state
        now = ticks_ms()
        if self._dead is not None:
            self._close(self._dead, True)
            return self.state
        if st == DOWN:
            if self._want and ticks_diff(now, self._next_try) >= 0:
                self._start(now)
            return self.state
        try:
            if st == TCP:
                ev = 0
                for _, e in self._poller.poll(0):
                    ev |= e
                if ev & (select.POLLERR | select.POLLHUP):
                    raise OSError(111)  # refused or unreachable
                if ev & select.POLLOUT:
                    self._up(now)
                elif ticks_diff(now, self._t_state) > self.connect_timeout_ms:
                    raise OSError(110)  # ETIMEDOUT
                return self.state
            self._flush()
            self._read(now)
            if self.state == CONNACK and ticks_diff(now, self._t_state) > self.connect_timeout_ms:
                raise OSError(110)
            if self.state == UP and self.keepalive:
                ka = self.keepalive * 1000
                if ticks_diff(now, self._t_rx) > ka + ka // 2:
                    raise OSError(110)  # broker silent for 1.5 keepalives
                if not self._ping_out and ticks_diff(now, self._t_tx) > ka // 2:
                    self.ping()
                    self._flush()
        except OSError as e:
            self._close(e, True)
        return self.state

    def _start(self, now):
        try:
            if self._addr is None:
                self._addr = socket.getaddrinfo(self.server, self.port)[0][-1]
            s = socket.socket()
            self._sock = s
            s.setblocking(False)
            try:
                s.connect(self._addr)
            except OSError as e:
                if not _again(e):
                    raise
            self._poller = select.poll()
            self._poller.register(s, select.POLLOUT)
            self.state = TCP
            self._t_state = now
        except OSError as e:
            self._close(e, True)

    def _up(self, now):
        # TCP is connected: optional TLS, then CONNECT.
        self._poller.unregister(self._sock)
        self._poller = None
        if self.ssl:
            from edgestream_agent.mqtt_tls import wrap  # only TLS links load it
            self._sock = wrap(self._sock, self.ssl, self.ssl_params, self.server)
        s = self._sock
        # plain sockets have send(); MicroPython's TLS sockets only write()
        self._write = getattr(s, "send", None) or s.write
        self._readinto = getattr(s, "recv_into", None) or s.readinto
        self._tx_n = self._tx_off = self._rx_n = self._skip = self._n_inflight = 0
        self._ping_out = False
        # CONNECT: clean session, keepalive, client id, will, user, password
        flags = 2
        rem = 12 + len(self.client_id)
        lw = self.lw
        if lw:
            flags |= 4 | (lw[3] << 3) | (0x20 if lw[2] else 0)
            rem += 4 + len(lw[0]) + len(lw[1])
        if self.user is not None:
            flags |= 0x80
            rem += 2 + len(self.user)
            if self.pswd is not None:
                flags |= 0x40
                rem += 2 + len(self.pswd)
        if not self._hdr(0x10, rem):
            raise MQTTException("CONNECT does not fit the transmit buffer")
        self._put(b"\x00\x04MQTT\x04" + bytes((flags, self.keepalive >> 8, self.keepalive & 255)))
        self._str(self.client_id)
        if lw:
            self._str(lw[0])
            self._str(lw[1])
        if self.user is not None:
            self._str(self.user)
            if self.pswd is not None:
                self._str(self.pswd)
        self._t_rx = self._t_state = now
        self.state = CONNACK
        self._flush()

    def _close(self, err, retry):
        was_up = self.state == UP
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock = None
        self._poller = None
        if err is not None:
            self.error = err
            self.failures += 1
        self._dead = None
        self._tx_n = self._tx_off = self._rx_n = self._skip = self._n_inflight = 0
        self.state = DOWN
        if retry:
            # wait b/2..b (random: agents that lost the same broker do not
            # all come back at once), then double b up to the cap
            b = self._backoff
            h = b >> 1
            self._next_try = ticks_add(ticks_ms(), h + ((getrandbits(10) * (b - h)) >> 10))
            self._backoff = min(b * 2, self.backoff_max_ms)
        if was_up and self.on_disconnect:
            self.on_disconnect()

    # -- output --------------------------------------------------------------
    def _room(self, n):
        if self._tx_off:
            # compact: move the unsent tail to the front
            rest = self._tx_n - self._tx_off
            if rest:
                self._tx[0:rest] = self._txv[self._tx_off:self._tx_n]
            self._tx_n = rest
            self._tx_off = 0
        return self._tx_n + n <= len(self._tx)

    def _put(self, b):
        n = self._tx_n
        m = n + len(b)
        self._tx[n:m] = b
        self._tx_n = m

    def _str(self, s):
        n = len(s)
        self._put(bytes((n >> 8, n & 255)))
        self._put(s)

    def _hdr(self, first, rem):
        # the fixed header of a packet of `rem` bytes, if the whole packet
        # fits the transmit buffer now -> True (else nothing is written)
        h = bytearray(5)
        h[0] = first
        n = 1
        r = rem
        while True:
            h[n] = r & 0x7F
            r >>= 7
            n += 1
            if not r:
                break
            h[n - 1] |= 0x80
        if not self._room(n + rem):
            return False
        self._put(h[:n])
        return True

    def _sub(self, topic, qos):
        if not self._hdr(0x82, 5 + len(topic)):
            raise OSError(105)  # ENOBUFS: drop the link, the resubscribe retries
        pid = self._pid = self._pid % 65535 + 1
        self._put(bytes((pid >> 8, pid & 255)))
        self._str(topic)
        self._put(bytes((qos,)))

    def _flush(self):
        w = self._write
        while self._tx_off < self._tx_n:
            try:
                n = w(self._txv[self._tx_off:self._tx_n])
            except OSError as e:
                if _again(e):
                    return
                raise
            if not n:
                return  # TLS would block (None) or nothing accepted
            self._tx_off += n
            self._t_tx = ticks_ms()
        self._tx_n = self._tx_off = 0

    # -- input ---------------------------------------------------------------
    def _read(self, now):
        # Bounded: at most a few reads per poll so a flood cannot starve the
        # scheduler; the rest waits for the next poll.
        for _ in range(8):
            if self._sock is None:
                return
            skip = self._skip
            if not skip and self._rx_n >= len(self._rx):
                self._parse(now)  # an oversize header is waiting
                continue
            try:
                if skip:
                    n = self._readinto(self._rxv[0:min(skip, len(self._rx))])
                else:
                    n = self._readinto(self._rxv[self._rx_n:])
            except OSError as e:
                if _again(e):
                    return
                raise
            if n is None:
                return
            if not n:
                raise OSError(104)  # ECONNRESET: broker closed the link
            self._t_rx = now
            if skip:
                self._skip -= n
            else:
                self._rx_n += n
                self._parse(now)

    def _parse(self, now):
        # Handle every complete packet at the front of the receive buffer.
        buf = self._rx
        while self._rx_n >= 2 and self._sock is not None:
            rem = 0
            shift = 0
            i = 1
            while True:
                if i >= self._rx_n:
                    return  # length not complete yet
                b = buf[i]
                rem |= (b & 0x7F) << shift
                i += 1
                if not b & 0x80:
                    break
                shift += 7
                if shift > 21:
                    raise MQTTException("malformed remaining length")
            total = i + rem
            first = buf[0]
            kind = first >> 4
            if total > len(buf):
                # too large to buffer: handle what we can see, skip the rest
                self.rx_oversize += 1
                topic = None
                seen = self._rx_n
                end = 0
                if kind == 3 and i + 2 <= seen:
                    end = i + 2 + ((buf[i] << 8) | buf[i + 1])
                    if end + 2 <= seen:
                        topic = bytes(buf[i + 2:end])
                        if (first >> 1) & 3:
                            if self._room(4):  # QoS 1: still acknowledge it
                                self._put(b"\x40\x02" + buf[end:end + 2])
                            end += 2
                self._skip = total - seen
                self._rx_n = 0
                if self.on_oversize:
                    # (the bytes stay in buf until the next read)
                    self.on_oversize(topic, total, buf, min(end, seen), seen)
                return
            if total > self._rx_n:
                return
            if kind == 2:  # CONNACK
                rc = buf[i + 1] if rem >= 2 else 255
                if rc:
                    self._close(MQTTException(rc), True)
                    return
                self.connects += 1
                self._backoff = self.backoff_min_ms
                self.state = UP
                self._t_state = now
                for t, q in self._subs:
                    self._sub(t, q)
                if self.on_connect:
                    self.on_connect()
                self._flush()
            elif kind == 4:  # PUBACK
                if rem < 2:
                    raise MQTTException("malformed PUBACK")
                pid = (buf[i] << 8) | buf[i + 1]
                n = self._n_inflight
                fl = self._inflight
                for k in range(n):
                    if fl[k] == pid:
                        for m in range(k, n - 1):
                            fl[m] = fl[m + 1]
                        self._n_inflight = n - 1
                        if self.on_puback:
                            self.on_puback(pid)
                        break
            elif kind == 13:  # PINGRESP
                self._ping_out = False
            elif kind == 9:  # SUBACK
                if rem >= 3 and buf[i + 2] == 0x80:
                    self.error = MQTTException("subscription refused")
            elif kind == 3:  # PUBLISH
                qos = (first >> 1) & 3
                tl = (buf[i] << 8) | buf[i + 1] if rem >= 2 else 0
                p = i + 2 + tl
                if rem < 2 + tl + (2 if qos else 0) or qos == 3:
                    raise MQTTException("malformed PUBLISH")
                if qos:
                    if self._room(4):  # PUBACK / PUBREC, written in place (no heap needed)
                        n = self._tx_n
                        tx = self._tx
                        tx[n] = 0x40 if qos == 1 else 0x50
                        tx[n + 1] = 2
                        tx[n + 2] = buf[p]
                        tx[n + 3] = buf[p + 1]
                        self._tx_n = n + 4
                    p += 2
                try:
                    topic = bytes(buf[i + 2:i + 2 + tl])
                    msg = bytes(buf[p:i + rem])
                except MemoryError:
                    # no heap for its copy: skipped like an oversize packet
                    # (never left in the buffer to fail at every poll), and
                    # on_oversize told which subscription it came by
                    topic = msg = None
                    self.rx_oversize += 1
                    for t, _ in self._subs:
                        if len(t) == tl:
                            n = 0
                            while n < tl and t[n] == buf[i + 2 + n]:
                                n += 1
                            if n == tl:
                                topic = t
                                break
                    if self.on_oversize:
                        self.on_oversize(topic, total, buf, p, i + rem)
                if msg is not None and self.cb:
                    self.cb(topic, msg)
            if self._sock is None:
                return  # the packet closed the link (CONNACK refused)
            left = self._rx_n - total
            if left:
                buf[0:left] = self._rxv[total:self._rx_n]
            self._rx_n = left
