# The protocol's reference encoder. The hub sends config and time with
# encode_config / encode_time (edgestream_hub.sender). The agent->hub writers
# (Encoder, encode_status, encode_metrics, encode_ack) are the reference the
# agent's own small writer (edgestream_agent.wire_out) is tested against, and what
# tests and benchmarks generate agent traffic with; no production code sends
# agent messages with them.
#
# Encoder writes a JSON message straight into one
# preallocated bytearray, so encoding a batch builds no dicts and no big
# strings. Integers are written digit by digit (no allocation for small ints);
# floats go through repr (they are heap objects on boards anyway). Names
# (device, sensor, window, aggregate) are expected as pre-encoded bytes that
# already passed topics.check_id, so they need no escaping.
#
# Message shape (see docs/wire.md):
#   {"v":1,"dev":"d1","boot":7,"kind":"results","items":[
#     {"seq":3,"sensor":"temp","window":"w1","start":0,"end":1000,
#      "aggs":{"count":10,"avg":21.5}}, ...]}
# Readings use items {"seq":4,"sensor":"temp","t":1234,"value":21.5}.
# The one-off messages (status, metrics, ack) are rare and use json.dumps.

import json
from edgestream_shared.topics import check_id

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

VERSION = const(1)
_INF = float("inf")


def _b(name):
    # Accept str or bytes names; str is checked and encoded (allocates, so
    # hot callers pass bytes they encoded once).
    if isinstance(name, str):
        return check_id(name, "name").encode()
    return name


class Encoder:
    def __init__(self, dev, boot, size=1024):
        self.dev = _b(dev)
        self.boot = boot
        self.buf = bytearray(size)
        self._mv = memoryview(self.buf)
        self._size = size
        self.n = 0          # bytes written
        self.count = 0      # items in the current message
        self._over = False  # a write did not fit
        self._kind = None

    # -- low-level writers: each sets _over instead of raising when full --
    def _put(self, b):
        n = self.n
        m = n + len(b)
        if m > self._size:
            self._over = True
            return
        self.buf[n:m] = b
        self.n = m

    def _byte(self, c):
        if self.n >= self._size:
            self._over = True
            return
        self.buf[self.n] = c
        self.n += 1

    def _int(self, v):
        # Digits are written backwards straight into buf: no temporary str.
        if v < 0:
            self._byte(45)  # '-'
            v = -v
        width = 1
        x = v
        while x >= 10:
            x //= 10
            width += 1
        start = self.n
        end = start + width
        if end > self._size:
            self._over = True
            return
        buf = self.buf
        i = end
        while i > start:
            i -= 1
            buf[i] = 48 + v % 10
            v //= 10
        self.n = end

    def _num(self, v):
        if v is None:
            self._put(b"null")
        elif isinstance(v, int) and not isinstance(v, bool):
            self._int(v)
        elif isinstance(v, float):
            if v != v or v == _INF or v == -_INF:
                self._put(b"null")  # JSON has no NaN/inf; null means "no value"
            else:
                self._put(repr(v).encode())
        else:
            raise TypeError("not a number: %r" % (v,))

    def _key(self, k):
        # writes "k":
        self._byte(34)
        self._put(k)
        self._put(b'":')

    # -- message structure --
    def begin(self, kind=b"results"):
        # Start a batch message. kind is b"results" or b"readings".
        self.n = 0
        self.count = 0
        self._over = False
        self._kind = kind
        self._put(b'{"v":1,"dev":"')
        self._put(self.dev)
        self._put(b'","boot":')
        self._int(self.boot)
        self._put(b',"kind":"')
        self._put(kind)
        self._put(b'","items":[')
        if self._over:
            raise ValueError("encoder buffer too small for a header")

    def _item_start(self, seq, sensor):
        mark = self.n
        if self.count:
            self._byte(44)  # ','
        self._put(b'{"seq":')
        self._int(seq)
        self._put(b',"sensor":"')
        self._put(_b(sensor))
        self._byte(34)
        return mark

    def _item_end(self, mark):
        self._byte(125)  # '}'
        # leave room for the closing "]}"
        if self._over or self.n + 2 > self._size:
            self.n = mark
            self._over = False
            return False
        self.count += 1
        return True

    def add_result(self, seq, sensor, window, start, end, names, values):
        # Append one window result; names[i] (bytes) labels values[i].
        # Returns False, leaving the message as it was, when it does not fit:
        # the caller then finish()es this message and begins another.
        mark = self._item_start(seq, sensor)
        self._put(b',"window":"')
        self._put(_b(window))
        self._put(b'","start":')
        self._int(start)
        self._put(b',"end":')
        self._int(end)
        self._put(b',"aggs":{')
        for i in range(len(names)):
            if i:
                self._byte(44)
            self._key(names[i])
            self._num(values[i])
        self._byte(125)
        return self._item_end(mark)

    def add_reading(self, seq, sensor, t, value):
        mark = self._item_start(seq, sensor)
        self._put(b',"t":')
        self._int(t)
        self._put(b',"value":')
        self._num(value)
        return self._item_end(mark)

    def finish(self):
        # Close the message; returns a memoryview valid until the next begin()
        # (the only allocation of a batch: one small memoryview object).
        if not self.count:
            raise ValueError("a message needs at least one item")
        if self._kind is not None:
            self._put(b"]}")  # _item_end always left room for these
            self._kind = None
        return self._mv[0:self.n]


# -- rare messages: plain json.dumps, allocation is fine here --

def _envelope(kind, dev, boot):
    return {"v": VERSION, "dev": check_id(dev), "boot": boot, "kind": kind}


def encode_status(dev, boot, state):
    # state is "online" or "offline"; published retained, offline as last will.
    if state not in ("online", "offline"):
        raise ValueError("status state must be online or offline")
    m = _envelope("status", dev, boot)
    m["state"] = state
    return json.dumps(m).encode()


def encode_metrics(dev, boot, metrics):
    m = _envelope("metrics", dev, boot)
    m["metrics"] = metrics
    return json.dumps(m).encode()


def encode_ack(dev, boot, version, ok, error=None):
    m = _envelope("ack", dev, boot)
    m["version"] = version
    m["ok"] = bool(ok)
    if error is not None:
        m["error"] = error
    return json.dumps(m).encode()


def encode_config(dev, version, config, force=False):
    # Hub -> agent: a whole agent config with its version number (1..2**31-1).
    # force=True: applied even when the agent runs a higher version (the way
    # back from a version set too high; docs/wire.md).
    m = {"v": VERSION, "dev": check_id(dev), "kind": "config", "version": version, "config": config}
    if force:
        m["force"] = True
    return json.dumps(m).encode()


def encode_time(epoch_ms, dev=None):
    # Hub -> agent time reference (for boards without RTC or NTP).
    m = {"v": VERSION, "kind": "time", "epoch_ms": epoch_ms}
    if dev is not None:
        m["dev"] = check_id(dev)
    return json.dumps(m).encode()
