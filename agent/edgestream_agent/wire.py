# The agent's side of the wire protocol (docs/wire.md), small enough to
# stay loaded on a board: the link writes results, status, metrics and acks
# and reads the two kinds the hub sends (config, time) with this module
# alone. The shared package (edgestream_shared.encoder/decoder/topics)
# defines the same messages for every kind and both directions; on the unix
# port its modules would cost ~25 KB of heap (code and interned names), so
# the agent carries this subset instead. tests/agent/test_wire*.py check
# that the shared decoder accepts what this writes, and that wire_in.read
# accepts and refuses what decode_config / decode accept and refuse, with
# the same reasons.
#
#   results(buf, dev, boot, seq, sensor, window, start, end, names, values)
#       one result as a "results" message written into buf -> length, or 0
#       when it does not fit (the caller counts it)
#   message(kind, dev, boot, key, value, ...) -> bytes (status/metrics/ack)
#   wire_in.read(payload, kind) -> the message dict, or ConfigError naming
#       the field (a module of its own: only a message from the hub needs it)
#
# Names (device, sensor, window, aggregate) come from a validated config:
# 1..64 chars of [A-Za-z0-9_.-], so they are written without escaping.

import json

_INF = float("inf")


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
