# Messages from the hub, read as strictly as the shared decoder reads them
# (edgestream_shared.decoder.decode / decode_config, for the two kinds the
# agent receives: config and time). Imported for a message and unloaded
# once it is read (Link._rx), before the validator loads; the agent writes
# its messages with wire_out.py. The error texts are lines of one string (_M):
# each string constant would be a heap object of its own (see config.py).

import json

from edgestream_agent import ConfigError
from edgestream_agent.timebase import EPOCH_MIN

MAX_PAYLOAD = 65536
MAX_VERSION = 2147483647  # config versions: 1..2**31-1 (a long int on a board: compared once per message)
_OTHER = ("results", "readings", "status", "metrics", "ack")
_M = """expected an integer >= 0
expected bytes
%d bytes is over the %d byte limit
empty
not valid UTF-8 JSON (%s)
expected a JSON object
unsupported protocol version %r (expected 1)
expected %r, got %r
unknown message kind %r
missing key %r
unknown key %r
expected 1..64 characters
%r has a character outside [A-Za-z0-9_.-]
expected an object
time for %r sent to %r
expected an integer >= %d (epoch ms, after 2000)
expected an integer in 1..%d
expected true or false"""


def _fail(path, n, *args):
    # line n of _M, found in place (no string per line)
    i = 0
    for _ in range(n):
        i = _M.index("\n", i) + 1
    j = _M.find("\n", i)
    m = _M[i:] if j < 0 else _M[i:j]
    raise ConfigError(path, m % args if args else m)


def read(data, kind=None):
    # A message from the hub -> its dict, checked as strictly as the shared
    # decoder checks it; kind "config" or "time", or None for either (a
    # serial frame says what it is). Raises ConfigError (a ValueError) whose
    # message starts with the field: "payload: empty", "version: ...".
    try:
        n = len(data)
    except TypeError:
        _fail("payload", 1)
    if n > MAX_PAYLOAD:
        _fail("payload", 2, n, MAX_PAYLOAD)
    if not n:
        _fail("payload", 3)
    try:
        if not isinstance(data, str):
            data = bytes(data).decode()
        m = json.loads(data)
    except MemoryError:
        raise  # no heap to read it: the link's memory nack, not "not valid JSON"
    except Exception as e:  # UnicodeError, ValueError, RecursionError...
        _fail("payload", 4, e.__class__.__name__)
    data = None  # the text can go before the caller builds anything
    if type(m) is not dict:
        _fail("payload", 5)
    v = m.get("v")
    if v != 1 or type(v) is not int:
        _fail("v", 6, v)
    k = m.get("kind")
    if k == "config":
        need = ("v", "kind", "dev", "version", "config")
        opt = "force"
    elif k == "time":
        need = ("v", "kind", "epoch_ms")
        opt = "dev"
    elif k in _OTHER:
        _fail("kind", 7, kind or "config", k)
    else:
        _fail("kind", 8, k)
    for x in need:
        if x not in m:
            _fail("message", 9, x)
    for x in m:
        if x not in need and x != opt:
            _fail("message", 10, x)
    if "dev" in m:
        d = m["dev"]
        if type(d) is not str or not 0 < len(d) <= 64:
            _fail("dev", 11)
        for c in d:
            if not (c.isalpha() or c.isdigit() or c in "_.-") or ord(c) > 127:
                _fail("dev", 12, d)
    if k == "time":
        if type(m["epoch_ms"]) is not int or m["epoch_ms"] < 0:
            _fail("epoch_ms", 0)
    else:
        v = m["version"]
        if type(v) is not int or not 0 < v <= MAX_VERSION:
            _fail("version", 16, MAX_VERSION)
        if "force" in m and type(m["force"]) is not bool:
            _fail("force", 17)
        if type(m["config"]) is not dict:
            _fail("config", 13)
    if kind is not None and k != kind:
        _fail("kind", 7, kind, k)
    return m


def time_reference(clock, m, dev):
    # A time message (read()'s dict) for device `dev` sets the clock (source
    # "hub"); raises ConfigError naming the field when it is for another
    # device or before EPOCH_MIN.
    if "dev" in m and m["dev"] != dev:
        _fail("dev", 14, m["dev"], dev)
    e = m["epoch_ms"]
    if e < EPOCH_MIN:
        _fail("epoch_ms", 15, EPOCH_MIN)
    clock.set_reference(e, 2)
