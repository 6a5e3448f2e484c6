# The agent's side of the wire protocol (docs/wire.md), small enough to
# stay loaded on a board: the link writes results, status, metrics and acks
# and reads the two kinds the hub sends (config, time) with this module
# alone. The shared package (edgestream_shared.encoder/decoder/topics)
# defines the same messages for every kind and both directions; on the unix
# port its modules would cost ~25 KB of heap (code and interned names), so
# the agent carries this subset instead. tests/agent/test_wire.py checks
# that the shared decoder accepts what this writes, and that read() accepts
# and refuses what decode_config / decode accept and refuse, with the same
# reasons.
#
#   results(buf, dev, boot, seq, sensor, window, start, end, names, values)
#       one result as a "results" message written into buf -> length, or 0
#       when it does not fit (the caller counts it)
#   message(kind, dev, boot, key, value, ...) -> bytes (status/metrics/ack)
#   read(payload, kind) -> the message dict, or ConfigError("<field>: ...")
#
# Names (device, sensor, window, aggregate) come from a validated config:
# 1..64 chars of [A-Za-z0-9_.-], so they are written without escaping.

import json

from edgestream_agent import ConfigError

MAX_PAYLOAD = 65536
_INF = float("inf")
_OTHER = ("results", "readings", "status", "metrics", "ack")


def results(buf, dev, boot, seq, sensor, window, start, end, names, values):
    # Writes {"v":1,"dev":..,"boot":..,"kind":"results","items":[{"seq":..,
    # "sensor":..,"window":..,"start":..,"end":..,"aggs":{..}}]}.
    # Allocates a few small strings: it runs once per closed window.
    parts = [b'{"v":1,"dev":"', dev, b'","boot":%d,"kind":"results","items":[{"seq":%d,"sensor":"' % (boot, seq),
             sensor, b'","window":"', window, b'","start":%d,"end":%d,"aggs":{' % (start, end)]
    for i in range(len(names)):
        v = values[i]
        if isinstance(v, float):
            v = b"null" if v != v or v == _INF or v == -_INF else repr(v).encode()
        elif v is None:
            v = b"null"
        else:
            v = b"%d" % v
        parts.append(b'%s"%s":%s' % (b"," if i else b"", names[i], v))
    parts.append(b"}}]}")
    n = 0
    size = len(buf)
    for p in parts:
        m = n + len(p)
        if m > size:
            return 0
        buf[n:m] = p
        n = m
    return n


def message(kind, dev, boot, *kv):
    # A rare message (status, metrics, ack) -> bytes; kv: key, value, ...
    m = {"v": 1, "dev": dev, "boot": boot, "kind": kind}
    for i in range(0, len(kv), 2):
        if kv[i + 1] is not None:
            m[kv[i]] = kv[i + 1]
    return json.dumps(m).encode()


def _fail(path, what):
    raise ConfigError(path, what)


def _uint(m, k):
    v = m[k]
    if type(v) is not int or v < 0:
        _fail(k, "expected an integer >= 0")
    return v


def read(data, kind=None):
    # A message from the hub -> its dict, checked as strictly as the shared
    # decoder checks it; kind "config" or "time", or None for either (a
    # serial frame says what it is). Raises ConfigError (a ValueError) whose
    # message starts with the field: "payload: empty", "version: ...".
    try:
        n = len(data)
    except TypeError:
        _fail("payload", "expected bytes")
    if n > MAX_PAYLOAD:
        _fail("payload", "%d bytes is over the %d byte limit" % (n, MAX_PAYLOAD))
    if not n:
        _fail("payload", "empty")
    try:
        if not isinstance(data, str):
            data = bytes(data).decode()
        m = json.loads(data)
    except Exception as e:  # UnicodeError, ValueError, RecursionError...
        _fail("payload", "not valid UTF-8 JSON (%s)" % (e.__class__.__name__,))
    data = None  # the text can go before the caller builds anything
    if type(m) is not dict:
        _fail("payload", "expected a JSON object")
    v = m.get("v")
    if v != 1 or type(v) is not int:
        _fail("v", "unsupported protocol version %r (expected 1)" % (v,))
    k = m.get("kind")
    if k == "config":
        need = ("v", "kind", "dev", "version", "config")
    elif k == "time":
        need = ("v", "kind", "epoch_ms")
    elif k in _OTHER:
        _fail("kind", "expected %r, got %r" % (kind or "config", k))
    else:
        _fail("kind", "unknown message kind %r" % (k,))
    for x in need:
        if x not in m:
            _fail("message", "missing key %r" % x)
    for x in m:
        if x not in need and not (x == "dev" and k == "time"):
            _fail("message", "unknown key %r" % (x,))
    if "dev" in m:
        d = m["dev"]
        if type(d) is not str or not 0 < len(d) <= 64:
            _fail("dev", "expected 1..64 characters")
        for c in d:
            if not (c.isalpha() or c.isdigit() or c in "_.-") or ord(c) > 127:
                _fail("dev", "%r has a character outside [A-Za-z0-9_.-]" % (d,))
    if k == "config":
        _uint(m, "version")
        if type(m["config"]) is not dict:
            _fail("config", "expected an object")
    else:
        _uint(m, "epoch_ms")
    if kind is not None and k != kind:
        _fail("kind", "expected %r, got %r" % (kind, k))
    return m
