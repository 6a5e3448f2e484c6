# What the agent writes on the wire (docs/wire.md): results, status,
# metrics and acks; wire_in.py reads what the hub sends (config, time).
# Small enough to stay loaded on a board: the shared package
# (edgestream_shared.encoder/decoder/topics) defines the same messages for
# every kind and both directions, but on a stock firmware its modules would
# cost ~11 KB of heap (code and interned names), so the agent carries this
# subset. tests/agent/test_wire*.py check that the shared decoder accepts
# what this writes (the same bytes as the shared encoder), and that
# wire_in.read accepts and refuses what the shared decoder does.
#
#   n = begin(buf, dev, boot)           the envelope of a "results" message
#   n = item(buf, n, k, seq, sensor, window, start, end, names, values)
#                                       its item k (0, 1, ...) appended at n
#                                       -> the new length, or 0 when it does
#                                       not fit (room is kept for the end)
#   buf[n:n + 2] = b"]}"                closes it (the link does)
#   message(kind, dev, boot, key, value, ...) -> bytes (status/metrics/ack)
#
# Names (device, sensor, window, aggregate) come from a validated config:
# 1..64 chars of [A-Za-z0-9_.-], so they are written without escaping.

import json

_INF = float("inf")


def begin(buf, dev, boot):
    # {"v":1,"dev":..,"boot":..,"kind":"results","items":[  -> its length
    # (buf is at least 128 bytes: the envelope always fits)
    h = b'{"v":1,"dev":"%s","boot":%d,"kind":"results","items":[' % (dev, boot)
    n = len(h)
    buf[0:n] = h
    return n


def item(buf, n, k, seq, sensor, window, start, end, names, values):
    # Appends {"seq":..,"sensor":..,"window":..,"start":..,"end":..,"aggs":{..}}
    # (after a comma unless k == 0) at n, keeping 2 bytes for the closing
    # "]}". -> the new length, or 0 (buf unchanged past n) when it does not
    # fit. Allocates a few small strings: it runs once per closed window.
    parts = [b'%s{"seq":%d,"sensor":"' % (b"," if k else b"", seq), sensor, b'","window":"', window,
             b'","start":%d,"end":%d,"aggs":{' % (start, end)]
    for i in range(len(names)):
        v = values[i]
        if isinstance(v, float):
            v = b"null" if v != v or v == _INF or v == -_INF else repr(v).encode()
        elif v is None:
            v = b"null"
        else:
            v = b"%d" % v
        parts.append(b'%s"%s":%s' % (b"," if i else b"", names[i], v))
    parts.append(b"}}")
    size = len(buf) - 2
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
