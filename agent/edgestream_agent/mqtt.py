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
#   no payload is ever held twice.
# - Reconnecting is built in: capped exponential backoff with jitter.
# - Subscriptions are remembered and sent again after every CONNACK (the
#   session is clean, so the broker forgets them).
# - Incoming packets larger than rx_size are skipped without buffering them;
#   on_oversize(topic, size) is called (topic None if it did not fit either)
#   and a QoS 1 one is still acknowledged.
# - DNS: getaddrinfo() blocks on boards; it runs once per server and the
#   address is cached. Use an IP address to avoid it entirely.
#
# Runs unchanged under CPython (tests, host tools).

import socket
import time

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

try:
    from time import ticks_ms, ticks_diff, ticks_add
except ImportError:  # CPython
    _T0 = time.monotonic()

    def ticks_ms():
        return int((time.monotonic() - _T0) * 1000)

    def ticks_diff(a, b):
        return a - b

    def ticks_add(a, b):
        return a + b

try:
    import select
except ImportError:  # pragma: no cover - every port we target has select
    select = None

try:
    from random import getrandbits
except ImportError:  # ports without random: a cheap LCG is enough for jitter
    _seed = [12345]

    def getrandbits(n):
        _seed[0] = (_seed[0] * 1103515245 + 12345) & 0x7FFFFFFF
        return _seed[0] & ((1 << n) - 1)

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


def _varlen_size(n):
    s = 1
    while n > 127:
        n >>= 7
        s += 1
    return s


class MQTTClient:
    def __init__(self, client_id, server, port=0, user=None, password=None,
                 keepalive=30, ssl=None, ssl_params=None, tx_size=2048,
                 rx_size=2048, max_inflight=8, backoff_min_ms=500,
                 backoff_max_ms=30000, connect_timeout_ms=5000):
        self.client_id = client_id.encode() if isinstance(client_id, str) else client_id
        self.server = server
        self.port = port or (8883 if ssl else 1883)
        self.user = user.encode() if isinstance(user, str) else user
        self.pswd = password.encode() if isinstance(password, str) else password
        self.keepalive = keepalive          # seconds, 0 = no pings
        self.ssl = ssl                      # an ssl.SSLContext, True, or None
        self.ssl_params = ssl_params or {}
        self.backoff_min_ms = backoff_min_ms
        self.backoff_max_ms = backoff_max_ms
        self.connect_timeout_ms = connect_timeout_ms
        self.lw_topic = None
        self.lw_msg = None
        self.lw_qos = 0
        self.lw_retain = False
        self.cb = None                      # cb(topic, msg) like umqtt; (topic, msg, retained) if cb3
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
        self.rx_packets = 0
        self.tx_packets = 0
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

    # -- umqtt-like surface -------------------------------------------------
    def set_callback(self, f):
        self.cb = f

    def set_last_will(self, topic, msg, retain=False, qos=0):
        self.lw_topic = topic.encode() if isinstance(topic, str) else topic
        self.lw_msg = msg
        self.lw_retain = retain
        self.lw_qos = qos

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
            self._tx_put2(0xE0, 0)
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
        return self.state == UP and self._n_inflight < len(self._inflight) and \
            self._room(nbytes + 64)

    def subscribe(self, topic, qos=0):
        # Remembered and (re)sent after every CONNACK.
        topic = topic.encode() if isinstance(topic, str) else topic
        for t, _ in self._subs:
            if t == topic:
                return
        self._subs.append((topic, qos))
        if self.state == UP:
            self._send_subscribe(topic, qos)

    def ping(self):
        if self.state == UP and self._room(2):
            self._tx_put2(0xC0, 0)
            self._ping_out = True
            self.pings += 1

    def check_msg(self):
        # umqtt name for "process whatever arrived"; same as poll().
        return self.poll()

    def publish(self, topic, msg, retain=False, qos=0, dup=False):
        # -> packet id (QoS 1), 0 (QoS 0), or None: not connected, too many
        # in flight, or no room in the transmit buffer right now.
        if self.state != UP:
            return None
        if isinstance(topic, str):
            topic = topic.encode()
        if isinstance(msg, str):
            msg = msg.encode()
        if qos and self._n_inflight >= len(self._inflight):
            return None
        tl = len(topic)
        rem = 2 + tl + len(msg) + (2 if qos else 0)
        if not self._room(1 + _varlen_size(rem) + rem):
            return None
        self._tx_hdr(0x30 | (qos << 1) | (8 if dup else 0) | (1 if retain else 0), rem)
        self._tx_str(topic)
        pid = 0
        if qos:
            pid = self._next_pid()
            self._tx_u16(pid)
            self._inflight[self._n_inflight] = pid
            self._n_inflight += 1
        self._tx_raw(msg)
        self.tx_packets += 1
        try:
            self._flush()
        except OSError as e:
            # the packet is lost with the link; on_disconnect tells the owner
            self._close(e, True)
        return pid

    # -- the state machine ---------------------------------------------------
    def poll(self):
        # Advance connect / send / receive / keepalive. Never blocks. Returns
        # the state. Errors close the link and schedule a reconnect.
        st = self.state
        now = ticks_ms()
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
                    self._tcp_up(now)
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
                if _errno(e) not in _EAGAIN:
                    raise
            self._poller = select.poll()
            self._poller.register(s, select.POLLOUT)
            self._set(TCP, now)
        except OSError as e:
            self._close(e, True)

    def _tcp_up(self, now):
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
        self._tx_n = self._tx_off = 0
        self._rx_n = self._skip = 0
        self._n_inflight = 0
        self._ping_out = False
        self._send_connect()
        self._t_rx = now
        self._set(CONNACK, now)
        self._flush()

    def _set(self, st, now):
        self.state = st
        self._t_state = now

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
        self._tx_n = self._tx_off = 0
        self._rx_n = self._skip = 0
        self._n_inflight = 0
        self.state = DOWN
        now = ticks_ms()
        if retry:
            # exponential backoff, capped, with up to 50 % jitter either way
            b = self._backoff
            j = getrandbits(16) * b // 65536
            self._next_try = ticks_add(now, b // 2 + j)
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

    def _tx_raw(self, b):
        n = self._tx_n
        m = n + len(b)
        self._tx[n:m] = b
        self._tx_n = m

    def _tx_byte(self, b):
        self._tx[self._tx_n] = b
        self._tx_n += 1

    def _tx_u16(self, v):
        self._tx_byte(v >> 8)
        self._tx_byte(v & 0xFF)

    def _tx_str(self, s):
        self._tx_u16(len(s))
        self._tx_raw(s)

    def _tx_hdr(self, first, rem):
        self._tx_byte(first)
        while True:
            b = rem & 0x7F
            rem >>= 7
            if rem:
                self._tx_byte(b | 0x80)
            else:
                self._tx_byte(b)
                return

    def _tx_put2(self, first, second):
        self._tx_byte(first)
        self._tx_byte(second)

    def _next_pid(self):
        self._pid = self._pid % 65535 + 1
        return self._pid

    def _send_connect(self):
        flags = 0x02  # clean session
        rem = 10 + 2 + len(self.client_id)
        if self.lw_topic:
            flags |= 0x04 | (self.lw_qos << 3) | (0x20 if self.lw_retain else 0)
            rem += 4 + len(self.lw_topic) + len(self.lw_msg)
        if self.user is not None:
            flags |= 0x80
            rem += 2 + len(self.user)
            if self.pswd is not None:
                flags |= 0x40
                rem += 2 + len(self.pswd)
        if not self._room(1 + _varlen_size(rem) + rem):
            raise MQTTException("CONNECT does not fit the transmit buffer")
        self._tx_hdr(0x10, rem)
        self._tx_raw(b"\x00\x04MQTT\x04")
        self._tx_byte(flags)
        self._tx_u16(self.keepalive)
        self._tx_str(self.client_id)
        if self.lw_topic:
            self._tx_str(self.lw_topic)
            self._tx_str(self.lw_msg)
        if self.user is not None:
            self._tx_str(self.user)
            if self.pswd is not None:
                self._tx_str(self.pswd)

    def _send_subscribe(self, topic, qos):
        rem = 2 + 2 + len(topic) + 1
        if not self._room(1 + _varlen_size(rem) + rem):
            raise OSError(105)  # ENOBUFS: drop the link, the resubscribe retries
        self._tx_hdr(0x82, rem)
        self._tx_u16(self._next_pid())
        self._tx_str(topic)
        self._tx_byte(qos)

    def _flush(self):
        w = self._write
        while self._tx_off < self._tx_n:
            try:
                n = w(self._txv[self._tx_off:self._tx_n])
            except OSError as e:
                if _errno(e) in _EAGAIN or _want_io(e):
                    return
                raise
            if not n:
                return  # TLS would block (None) or nothing accepted
            self._tx_off += n
            self._t_tx = ticks_ms()
        self._tx_n = self._tx_off = 0

    # -- input ---------------------------------------------------------------
    def _recv(self, mv):
        # -> bytes read (>0), 0 on EOF, None when nothing is ready
        try:
            n = self._readinto(mv)
        except OSError as e:
            if _errno(e) in _EAGAIN or _want_io(e):
                return None
            raise
        return n

    def _read(self, now):
        # Bounded: at most a few reads per poll so a flood cannot starve the
        # scheduler; the rest waits for the next poll.
        for _ in range(8):
            if self._sock is None:
                return
            if self._skip:
                n = self._recv(self._rxv[0:min(self._skip, len(self._rx))])
                if n is None:
                    return
                if n == 0:
                    raise OSError(104)  # ECONNRESET: broker closed the link
                self._skip -= n
                self._t_rx = now
                continue
            if self._rx_n >= len(self._rx):
                self._parse(now)  # an oversize header is waiting
                continue
            n = self._recv(self._rxv[self._rx_n:])
            if n is None:
                return
            if n == 0:
                raise OSError(104)
            self._rx_n += n
            self._t_rx = now
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
            if total > len(buf):
                # too large to buffer: handle what we can see, skip the rest
                self._oversize(i, rem, total)
                return
            if total > self._rx_n:
                return
            self.rx_packets += 1
            self._packet(buf[0], i, rem, now)
            if self._sock is None:
                return  # the packet closed the link (CONNACK refused)
            left = self._rx_n - total
            if left:
                buf[0:left] = self._rxv[total:self._rx_n]
            self._rx_n = left

    def _oversize(self, i, rem, total):
        self.rx_oversize += 1
        topic = None
        first = self._rx[0]
        if first >> 4 == 3 and i + 2 <= self._rx_n:
            tl = (self._rx[i] << 8) | self._rx[i + 1]
            end = i + 2 + tl
            if end + 2 <= self._rx_n:
                topic = bytes(self._rx[i + 2:end])
                if (first >> 1) & 3:  # QoS 1: still acknowledge it
                    pid = (self._rx[end] << 8) | self._rx[end + 1]
                    self._ack(0x40, pid)
        self._skip = total - self._rx_n
        self._rx_n = 0
        if self.on_oversize:
            self.on_oversize(topic, total)

    def _ack(self, kind, pid):
        if self._room(4):
            self._tx_put2(kind, 2)
            self._tx_u16(pid)

    def _packet(self, first, i, rem, now):
        kind = first >> 4
        buf = self._rx
        if kind == 2:  # CONNACK
            rc = buf[i + 1] if rem >= 2 else 255
            if rc:
                e = MQTTException(rc)
                self._close(e, True)
                return
            self.connects += 1
            self._backoff = self.backoff_min_ms
            self._set(UP, now)
            for t, q in self._subs:
                self._send_subscribe(t, q)
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
            topic = bytes(buf[i + 2:p])
            if qos:
                pid = (buf[p] << 8) | buf[p + 1]
                p += 2
                self._ack(0x40 if qos == 1 else 0x50, pid)
            msg = bytes(buf[p:i + rem])
            if self.cb:
                self.cb(topic, msg)


def _errno(e):
    return e.args[0] if e.args else 0


def _want_io(e):
    # CPython's ssl raises SSLWantReadError/SSLWantWriteError
    return "Want" in e.__class__.__name__
