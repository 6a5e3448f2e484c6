# Strict decoder for wire messages (both directions). Every malformed payload
# raises WireError with a reason naming the field; anything else escaping from
# here is a bug. Table-driven: adding a message kind is one entry in _KINDS.
#
# Numbers: int or finite float (NaN/inf and bools are refused); aggregate and
# reading values may also be null ("no value").
#
# Speed (the hub decodes ~100K items/s through here): result and reading
# items first go through one inline check per item; only an item that fails
# it (or carries a name not seen yet) takes the detailed per-field path, which
# either raises the WireError naming the field or accepts the item. Names that
# passed check_id are remembered in a small bounded set, so a batch of 100
# results checks "temp" once, not 100 times. The fast check accepts nothing
# the detailed path would refuse.

import json
from edgestream_shared.errors import WireError
from edgestream_shared.topics import check_id

VERSION = 1
MAX_PAYLOAD = 65536     # bytes; larger payloads are refused before parsing
MAX_ITEMS = 1000        # items in one batch message
MAX_VERSION = 2147483647  # config versions are 1..2**31-1 (an ack's is 0 when the message was unreadable)
_INF = float("inf")
_NAMES_MAX = 256        # names remembered as valid (cleared when full)
_names = set()          # names that passed check_id


def _fail(path, what):
    raise WireError(path + ": " + what)


def _int(v, path):
    if type(v) is not int or v < 0:
        _fail(path, "expected an integer >= 0")
    return v


def _num(v, path, nullable):
    t = type(v)
    if t is int:
        return v
    if t is float:
        if v != v or v == _INF or v == -_INF:
            _fail(path, "expected a finite number")
        return v
    if v is None and nullable:
        return v
    _fail(path, "expected a number" + (" or null" if nullable else ""))


def _str(v, path):
    if type(v) is not str:
        _fail(path, "expected a string")
    return v


def _name(v, path):
    if type(v) is str and v in _names:
        return v
    try:
        check_id(v, path)
    except WireError as e:
        raise WireError(e.reason)
    if len(_names) >= _NAMES_MAX:
        _names.clear()
    _names.add(v)
    return v


def _dict(v, path):
    if type(v) is not dict:
        _fail(path, "expected an object")
    return v


def _keys(d, path, required, optional=()):
    for k in required:
        if k not in d:
            _fail(path, "missing key %r" % k)
    for k in d:
        if k not in required and k not in optional:
            _fail(path, "unknown key %r" % (k,))


def _result(it, path):
    _keys(it, path, ("seq", "sensor", "window", "start", "end", "aggs"))
    _int(it["seq"], path + ".seq")
    _name(it["sensor"], path + ".sensor")
    _name(it["window"], path + ".window")
    start = _int(it["start"], path + ".start")
    if _int(it["end"], path + ".end") < start:
        _fail(path + ".end", "is before start")
    aggs = _dict(it["aggs"], path + ".aggs")
    if not aggs:
        _fail(path + ".aggs", "expected at least one aggregate")
    for k in aggs:
        _name(k, path + ".aggs")
        _num(aggs[k], path + ".aggs." + k, True)


def _reading(it, path):
    _keys(it, path, ("seq", "sensor", "t", "value"))
    _int(it["seq"], path + ".seq")
    _name(it["sensor"], path + ".sensor")
    _int(it["t"], path + ".t")
    _num(it["value"], path + ".value", True)


def _results_from(items, i):
    # The index of the first item from i on that the one-expression check
    # does not accept (_result then decides about it), or len(items). One call
    # per batch: the loop, not a call per item.
    names = _names
    n = len(items)
    while i < n:
        it = items[i]
        if type(it) is not dict or len(it) != 6:
            return i
        try:
            seq = it["seq"]
            start = it["start"]
            end = it["end"]
            aggs = it["aggs"]
            sensor = it["sensor"]
            window = it["window"]
        except KeyError:
            return i
        if not (type(seq) is int and seq >= 0 and type(start) is int and start >= 0 and type(end) is int
                and end >= start and type(sensor) is str and sensor in names and type(window) is str
                and window in names and type(aggs) is dict and aggs and names.issuperset(aggs)):
            return i
        for v in aggs.values():
            t = type(v)
            if t is float:
                if v - v != 0:  # nan and +-inf give nan
                    return i
            elif t is not int and v is not None:
                return i
        i += 1
    return n


def _readings_from(items, i):
    # As _results_from, for reading items (value may be null, but must be there).
    names = _names
    n = len(items)
    while i < n:
        it = items[i]
        if type(it) is not dict or len(it) != 4:
            return i
        try:
            seq = it["seq"]
            t = it["t"]
            v = it["value"]
            sensor = it["sensor"]
        except KeyError:
            return i
        tv = type(v)
        if not (type(seq) is int and seq >= 0 and type(t) is int and t >= 0 and type(sensor) is str
                and sensor in names and (tv is int or (tv is float and v - v == 0) or v is None)):
            return i
        i += 1
    return n


def _batch(check, fast_from):
    def body(m):
        items = m["items"]
        if type(items) is not list or not items:
            _fail("items", "expected a non-empty list")
        n = len(items)
        if n > MAX_ITEMS:
            _fail("items", "more than %d items" % MAX_ITEMS)
        i = fast_from(items, 0)
        while i < n:
            path = "items[%d]" % i
            check(_dict(items[i], path), path)
            i = fast_from(items, i + 1)
    return body


def _status(m):
    if m["state"] not in ("online", "offline"):
        _fail("state", "expected 'online' or 'offline'")


def _metrics(m):
    d = _dict(m["metrics"], "metrics")
    for k in d:
        _name(k, "metrics")
        v = d[k]
        if type(v) is not str:
            _num(v, "metrics." + k, True)


def _ack(m):
    if _int(m["version"], "version") > MAX_VERSION:
        _fail("version", "expected an integer in 0..%d" % MAX_VERSION)
    if type(m["ok"]) is not bool:
        _fail("ok", "expected true or false")
    if "error" in m:
        _str(m["error"], "error")


def _config(m):
    v = m["version"]
    if type(v) is not int or not 0 < v <= MAX_VERSION:
        _fail("version", "expected an integer in 1..%d" % MAX_VERSION)
    if "force" in m and type(m["force"]) is not bool:
        _fail("force", "expected true or false")
    _dict(m["config"], "config")


def _time(m):
    _int(m["epoch_ms"], "epoch_ms")


# kind -> (required keys besides v/kind, optional keys, body check[, every required key as a set])
_KINDS = {
    "results": (("dev", "boot", "items"), (), _batch(_result, _results_from)),
    "readings": (("dev", "boot", "items"), (), _batch(_reading, _readings_from)),
    "status": (("dev", "boot", "state"), (), _status),
    "metrics": (("dev", "boot", "metrics"), (), _metrics),
    "ack": (("dev", "boot", "version", "ok"), ("error",), _ack),
    "config": (("dev", "version", "config"), ("force",), _config),
    "time": (("epoch_ms",), ("dev",), _time),  # hub -> agent time reference
}
for _k in _KINDS:  # the fast envelope check: a message holding exactly the required keys
    _KINDS[_k] = _KINDS[_k] + (set(("v", "kind") + _KINDS[_k][0]),)


def decode(data, max_size=MAX_PAYLOAD, loads=None):
    # bytes/str -> validated message dict. Raises WireError, nothing else.
    # `loads` (bytes or str -> object) replaces bytes.decode and json.loads:
    # the hub passes its strict parser, which reads bytes without a copy to
    # str and refuses NaN/Infinity tokens with a reason it can log.
    try:
        n = len(data)
    except TypeError:
        raise WireError("payload: expected bytes")
    if n > max_size:
        raise WireError("payload: %d bytes is over the %d byte limit" % (n, max_size))
    if not n:
        raise WireError("payload: empty")
    try:
        if loads is not None:
            m = loads(data)  # bytes or str: the caller's parser checks UTF-8 (raising UnicodeError) itself
        else:
            if not isinstance(data, str):
                data = bytes(data).decode()
            m = json.loads(data)
    except Exception as e:  # UnicodeError, ValueError, RecursionError...
        raise WireError("payload: not valid UTF-8 JSON (%s: %s)" % (e.__class__.__name__, e))
    if type(m) is not dict:
        _fail("payload", "expected a JSON object")
    if m.get("v") != VERSION or type(m.get("v")) is not int:
        _fail("v", "unsupported protocol version %r (expected %d)" % (m.get("v"), VERSION))
    kind = m.get("kind")
    spec = _KINDS.get(kind) if type(kind) is str else None
    if spec is None:
        _fail("kind", "unknown message kind %r" % (kind,))
    if m.keys() != spec[3]:  # not exactly the required keys (or no set compare, as on MicroPython)
        _keys(m, "message", ("v", "kind") + spec[0], spec[1])
    if "dev" in m:
        _name(m["dev"], "dev")
    if "boot" in m:
        _int(m["boot"], "boot")
    spec[2](m)
    return m


def decode_config(data, max_size=MAX_PAYLOAD):
    # Decode a hub -> agent config message (kind "config").
    m = decode(data, max_size)
    if m["kind"] != "config":
        _fail("kind", "expected 'config', got %r" % m["kind"])
    return m
