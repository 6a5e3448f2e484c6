# agent.json: load and validate the agent's configuration, the `transport`
# section included.
#
# validate(dict) returns a normalised copy (every default filled in, every
# filter as {"type": ..., params}) or raises ConfigError whose message starts
# with the path of the bad value: "sensors[1].windows[0].size_ms: must be > 0".
# Everything is checked before anything is built, so an invalid config never
# half-starts an agent. The keys are documented in agent/README.md.
#
# Memory: a board needs this module only while it validates (at start, and
# for a remote config): the agent unloads it once the config is valid
# (edgestream_agent.unload), and loads it again for a config message, next
# to the running agent. So it is kept small: the parameters of sources,
# filters and the transport sections are compact spec lines in one string
# (_SPECS, not a dict of tuples per key), read by one function, _params;
# only the rules that tie keys together are code; and the error texts are
# lines of one string too (_M, formatted when an error is raised): on the
# 64-bit unix port every string constant of a module is a heap object of
# 64+ bytes, so ~100 of them cost more than all the checks together.
# ConfigError lives in the package so that it stays the same class across
# unloads.
#
# A spec line is "name key=kind=default ..." (space separated):
#   kind  n finite number, n0 number >= 0, i integer, u integer >= 0,
#         p integer > 0, t a duration in ms 1..86400000 (one day),
#         t0 one in 0..86400000 (0: off), v a version 0..2**31-1,
#         port 0..65535, b true/false,
#         s non-empty string (<= 256 chars), pin pin number >= 0 or name,
#         a|b|c one of these (numbers where they are digits), @x the object
#         spec _SUB[x]
#   Every integer is <= 2**30 - 1: a small int on a 32-bit board, where a
#   larger one is a heap object; a duration is at most a day, well inside
#   what time.ticks_add takes (< 2**29 ms, 6.2 days; beyond it raises
#   OverflowError, so such a config could never start).
#   default  none (key=kind): required; empty: null (a null value then means "not set"),
#         JSON for numbers and true/false, else the string itself
# A leading "*" marks the parameter a bare value stands for ({"ema": 0.3}).

import json

from edgestream_agent import ConfigError

AGGREGATES = ("count", "sum", "avg", "min", "max", "stddev", "first", "last")
MAX_DECIMALS = 6
MAX_BLOCK = 256  # samples per block read (the pipeline keeps a list of them)
_REQ = ()  # the default of a required key (a marker: compared by identity)
_NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"

# Lines 0-8: the filters (their code is in filters/), 9-13: the sources
# (sources/), then the objects of agent.json: transport (link.py) and its
# sections, a sensor, a window, the top level.
_SPECS = """
range min=n= max=n=
clamp min=n= max=n=
calibrate slope=n=1 offset=n=0
delta *min=n0
throttle *interval_ms=t
median *size=p
ema *alpha=n
round *digits=u
heartbeat *interval_ms=t
sim wave=sine|noise|steps|constant=sine amplitude=n=1 offset=n=0 wave_ms=t=60000 levels=p=4 noise=n0=0 seed=u=1
adc pin=pin scale=n=1 offset=n=0 atten=u=
pin pin=pin mode=level|count=level pull=none|up|down=none edge=rising|falling|both=rising scale=n=1
i2c bus=u=0 scl=pin= sda=pin= freq=p=400000 addr=u reg=u nbytes=1|2=2 signed=b=false byteorder=big|little=big scale=n=1 offset=n=0
internal_temp
transport type=mqtt|serial|none prefix=s=edgestream poll_ms=t=10 health_ms=t0=10000 buffer_bytes=p=4096 max_message=p=1024 spill_path=s= spill_bytes=u=0 mqtt=@mqtt= serial=@serial= wifi=@wifi= ntp=@ntp=
mqtt host=s port=port=0 client_id=s= user=s= password=s= tls=b=false ca_file=s= tls_verify=b=true server_hostname=s= keepalive_s=u=30 qos=0|1=1 backoff_min_ms=t=250 backoff_max_ms=t=3000 connect_timeout_ms=t=5000 max_inflight=p=8 rx_bytes=p=2048 tx_bytes=p=2048
serial port=s=stdio uart=u=0 baud=p=115200 tx=pin= rx=pin=
wifi ssid=s password=s= retry_ms=t=10000
ntp host=s=pool.ntp.org port=port=123 every_ms=t=3600000 timeout_ms=t=2000
sensor name source period_ms decimals block filters windows
window name type size_ms every_ms size every aggregates capacity
agent device device_id version sensors transport watchdog_ms"""

# error texts (and path templates) by line number, formatted with the values they name
_M = """expected a name of 1..64 characters
%r has a character outside [A-Za-z0-9_.-]
expected an object
unknown key (expected one of %s)
expected one of %s
expected true or false
expected a non-empty string
expected a pin number or name
expected a finite number
expected an integer
must be in 0..65535
must be >= 0
must be > 0
required
expected a one-key object like {"range": {"min": 0}}
unknown filter %r (expected one of %s)
needs min, max or both
must be >= min
must be in (0, 1]
must be <= %d
give size_ms (time window) or size (count window), not both
required (or size, for a count window)
a time window slides with every_ms
a count window slides with every
expected tumbling or sliding
required for a sliding window
a tumbling window has no %s
must be <= %s (windows would skip samples)
expected a non-empty list
unknown aggregate %r (expected one of %s)
duplicate aggregate %r
must be >= size (%d)
expected a list
duplicate window name %r (also windows[%d])
required when type is 'mqtt'
must be >= backoff_min_ms
needs user
must be >= 256
must be >= max_message + 256 (%d)
%r has an empty level or a wildcard
must be in 128..2037
must be >= max_message + 4 (%d)
required when spill_bytes > 0
must be >= 2 * (max_message + 4) (%d)
give device or device_id, not both
duplicate sensor name %r (also sensors[%d])
cannot read: %s
not valid JSON: %s
%s.filters[%d]
%s.windows[%d]
w%d
%s[%d]
required when tls is true: the CA certificate (PEM or DER file on the board) that signed the broker's; or tls_verify: false to skip the check (then anyone on the network path can pose as the broker and read the password)
needs tls: true
source %r reads one sample at a time (a block needs sim or adc)
must be <= 86400000 (one day)"""


def _nth(text, n):
    # line n of a table string (found in place: splitting the whole table
    # would make a string per line, garbage that fragments a small heap)
    i = 0
    for _ in range(n):
        i = text.index("\n", i) + 1
    j = text.find("\n", i)
    return text[i:] if j < 0 else text[i:j]


def _fail(path, n, *args):
    m = _nth(_M, n)
    raise ConfigError(path, m % args if args else m)


def _line(name):
    # the words after `name` on its spec line, or None
    n = len(name)
    i = _SPECS.find(name)
    while i >= 0:
        j = i + n
        if _SPECS[i - 1] == "\n" and (j == len(_SPECS) or _SPECS[j] == " " or _SPECS[j] == "\n"):
            # only the line is sliced (not the rest of the table: a 1.3 KB
            # string, more than a fragmented heap may find in one piece)
            k = _SPECS.find("\n", j)
            return (_SPECS[j:] if k < 0 else _SPECS[j:k]).split()
        i = _SPECS.find(name, j)
    return None


def _names(lo, hi):
    # the names of spec lines lo..hi-1
    return [_nth(_SPECS, k + 1).split(" ")[0] for k in range(lo, hi)]


def _spec(name):
    # -> [(key, kind, default, bare)]
    out = []
    for tok in _line(name):
        w = tok.split("=")
        if len(w) < 3:
            d = _REQ
        elif not w[2]:
            d = None
        elif w[2][0] in "-0123456789tf":
            d = json.loads(w[2])
        else:
            d = w[2]
        out.append((w[0].lstrip("*"), w[1], d, w[0][0] == "*"))
    return out


def _name(v, path):
    if not isinstance(v, str) or not 0 < len(v) <= 64:
        _fail(path, 0)
    for c in v:
        if c not in _NAME_CHARS:
            _fail(path, 1, v)
    return v


def _obj(v, path):
    if not isinstance(v, dict):
        _fail(path, 2)
    return v


def _known(d, keys, path):
    for k in d:
        if k not in keys:
            _fail(path + "." + str(k) if path else str(k), 3, ", ".join(keys))


def _value(kind, v, path):
    if "|" in kind:
        ok = [int(c) if c.isdigit() else c for c in kind.split("|")]
        if v not in ok or isinstance(v, bool):
            _fail(path, 4, ", ".join(str(c) for c in ok))
        return v
    if kind[0] == "@":
        return _params(kind[1:], v, path)
    if kind == "b":
        if not isinstance(v, bool):
            _fail(path, 5)
        return v
    if kind == "s":
        if not isinstance(v, str) or not v or len(v) > 256:
            _fail(path, 6)
        return v
    if kind == "pin":
        if not (isinstance(v, int) and not isinstance(v, bool) and v >= 0) and not (isinstance(v, str) and v):
            _fail(path, 7)
        return v
    if kind[0] == "n":
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v - v != 0:  # (nan and inf give nan)
            _fail(path, 8)
    elif not isinstance(v, int) or isinstance(v, bool):
        _fail(path, 9)
    if kind == "port" and not 0 <= v <= 65535:
        _fail(path, 10)
    if kind in ("u", "n0", "t0", "v") and v < 0:
        _fail(path, 11)
    if kind in ("p", "t") and v <= 0:
        _fail(path, 12)
    if kind[0] == "t" and v > 86400000:
        _fail(path, 55)
    if kind == "v" and v > 2147483647:
        _fail(path, 19, 2147483647)
    if kind[0] != "n" and kind != "v" and v > 1073741823:
        _fail(path, 19, 1073741823)
    return v


def _params(name, d, path, t=False):
    # an object against the spec line `name` -> normalised dict; t: it may
    # carry its "type" (filters, sources)
    _obj(d, path)
    spec = _spec(name)
    keys = [s[0] for s in spec]
    if t:
        keys.append("type")
    _known(d, keys, path)
    out = {}
    for k, kind, default, _ in spec:
        if k in d and not (d[k] is None and default is None):  # null = "not set"
            out[k] = _value(kind, d[k], path + "." + k)
        elif default is _REQ:
            _fail(path + "." + k, 13)
        else:
            out[k] = default
    return out


def _filter(v, path):
    # {"range": {"min": 0}} (one-key form), {"type": "range", "min": 0},
    # or a bare value for one-parameter filters: {"ema": 0.3}.
    _obj(v, path)
    if "type" in v:
        t = v["type"]
        params = v
    elif len(v) == 1:
        t = list(v)[0]
        params = v[t]
    else:
        _fail(path, 14)
    names = _names(0, 9)
    if t not in names:
        _fail(path, 15, t, ", ".join(names))
    p = path + "." + str(t) if "type" not in v else path
    if not isinstance(params, dict):
        bare = [s[0] for s in _spec(t) if s[3]]
        if not bare:
            _fail(p, 2)
        params = {bare[0]: params}
    out = _params(t, params, p, True)
    out["type"] = t
    if t in ("range", "clamp"):
        lo, hi = out["min"], out["max"]
        if lo is None and hi is None:
            _fail(p, 16)
        if lo is not None and hi is not None and lo > hi:
            _fail(p + "." + "max", 17)
    elif t == "ema" and not 0 < out["alpha"] <= 1:
        _fail(p + "." + "alpha", 18)
    elif t == "round" and out["digits"] > MAX_DECIMALS:
        _fail(p + "." + "digits", 19, MAX_DECIMALS)
    return out


def _window(v, i, path, period_ms):
    _obj(v, path)
    _known(v, _line("window"), path)
    w = {"name": _name(v["name"], path + "." + "name") if "name" in v else _nth(_M, 50) % i}
    timed = "size_ms" in v
    if timed and "size" in v:
        _fail(path, 20)
    if not timed and "size" not in v:
        _fail(path + "." + "size_ms", 21)
    if timed and "every" in v:
        _fail(path + "." + "every", 22)
    if not timed and "every_ms" in v:
        _fail(path + "." + "every_ms", 23)
    sk = "size_ms" if timed else "size"
    ek = "every_ms" if timed else "every"
    size = _value("t" if timed else "p", v[sk], path + "." + sk)
    every = _value("t" if timed else "p", v[ek], path + "." + ek) if ek in v else None
    kind = v.get("type")
    if kind is not None and kind not in ("tumbling", "sliding"):
        _fail(path + "." + "type", 24)
    if kind == "sliding" and every is None:
        _fail(path + "." + ek, 25)
    if kind == "tumbling" and every is not None and every != size:
        _fail(path + "." + ek, 26, ek)
    if every is not None and every == size and kind != "sliding":
        every = None  # sliding by its own size is tumbling
    if every is not None and every > size:
        _fail(path + "." + ek, 27, sk)
    w["type"] = "tumbling" if every is None else "sliding"
    w[sk] = size
    if every is not None:
        w[ek] = every
    # aggregates: a non-empty list of known names, no repeats
    aggs = v.get("aggregates", AGGREGATES)
    p = path + "." + "aggregates"
    if not isinstance(aggs, (list, tuple)) or not aggs:
        _fail(p, 28)
    seen = []
    for j, a in enumerate(aggs):
        if a not in AGGREGATES:
            _fail(_nth(_M, 51) % (p, j), 29, a, ", ".join(AGGREGATES))
        if a in seen:
            _fail(_nth(_M, 51) % (p, j), 30, a)
        seen.append(a)
    w["aggregates"] = seen
    # capacity: samples a sliding window holds (tumbling windows hold none)
    if every is None:
        cap = 0
    elif "capacity" in v:
        cap = _value("p", v["capacity"], path + "." + "capacity")
        if not timed and cap < size:
            _fail(path + "." + "capacity", 31, size)
    elif not timed:
        cap = size
    else:
        # samples expected in size_ms at the sensor's period, plus slack for jitter
        n = size // period_ms + 1
        cap = n + n // 4 + 2
    w["capacity"] = cap
    return w


def _sensor(v, path):
    _obj(v, path)
    _known(v, _line("sensor"), path)
    if "name" not in v:
        _fail(path + "." + "name", 13)
    s = {"name": _name(v["name"], path + "." + "name")}
    src = v.get("source")
    if src is None:
        src = {"type": "sim"}
    elif isinstance(src, str):
        src = {"type": src}
    _obj(src, path + "." + "source")
    t = src.get("type")
    names = _names(9, 14)
    if t not in names:
        _fail(path + "." + "source" + "." + "type", 4, ", ".join(names))
    s["source"] = _params(t, src, path + "." + "source", True)
    s["source"]["type"] = t
    s["period_ms"] = _value("t", v.get("period_ms", 1000), path + "." + "period_ms")
    d = _value("u", v.get("decimals", 3), path + "." + "decimals")
    if d > MAX_DECIMALS:
        _fail(path + "." + "decimals", 19, MAX_DECIMALS)
    s["decimals"] = d
    b = _value("p", v.get("block", 1), path + "." + "block")
    if b > MAX_BLOCK:
        _fail(path + "." + "block", 19, MAX_BLOCK)
    if b > 1 and t not in ("sim", "adc"):
        _fail(path + "." + "block", 54, t)
    s["block"] = b
    out = []
    for key in ("filters", "windows"):
        items = v.get(key, [])
        if not isinstance(items, list):
            _fail(path + "." + key, 32)
        out.append(items)
    s["filters"] = [_filter(f, _nth(_M, 48) % (path, j)) for j, f in enumerate(out[0])]
    ws = []
    for j, w in enumerate(out[1]):
        wp = _nth(_M, 49) % (path, j)
        w = _window(w, j, wp, s["period_ms"])
        for k, other in enumerate(ws):
            if other["name"] == w["name"]:
                _fail(wp + "." + "name", 33, w["name"], k)
        ws.append(w)
    s["windows"] = ws
    return s


def validate_transport(v, path="transport"):
    # the transport section -> normalised dict; None (no section) means {"type": "none"}.
    t = _params("transport", {"type": "none"} if v is None else v, path)
    if t["type"] == "mqtt":
        m = t["mqtt"]
        mp = path + "." + "mqtt"
        if m is None:
            _fail(mp, 34)
        if m["backoff_min_ms"] > m["backoff_max_ms"]:
            _fail(mp + "." + "backoff_max_ms", 35)
        if m["password"] is not None and m["user"] is None:
            _fail(mp + "." + "password", 36)
        if m["tls"] and m["tls_verify"] and m["ca_file"] is None:
            _fail(mp + "." + "ca_file", 52)
        if not m["tls"] and m["ca_file"] is not None:
            _fail(mp + "." + "ca_file", 53)
        if m["max_inflight"] > 64:
            _fail(mp + "." + "max_inflight", 19, 64)
        if m["keepalive_s"] > 65535:  # (MQTT's 16-bit field)
            _fail(mp + "." + "keepalive_s", 19, 65535)
        for k in ("rx_bytes", "tx_bytes"):
            if m[k] < 256:
                _fail(mp + "." + k, 37)
        if m["tx_bytes"] < t["max_message"] + 256:
            _fail(mp + "." + "tx_bytes", 38, t["max_message"] + 256)
    if t["type"] == "serial" and t["serial"] is None:
        t["serial"] = _params("serial", {}, path + "." + "serial")
    prefix = t["prefix"]
    for level in prefix.split("/"):
        if not level or "+" in level or "#" in level:
            _fail(path + "." + "prefix", 39, prefix)
    mm = t["max_message"]
    if mm < 128 or mm > 2037:
        # 2037 + 11 bytes of framing is the serial frame limit (2048)
        _fail(path + "." + "max_message", 40)
    if t["buffer_bytes"] < mm + 4:
        _fail(path + "." + "buffer_bytes", 41, mm + 4)
    if t["spill_bytes"] and not t["spill_path"]:
        _fail(path + "." + "spill_path", 42)
    if t["spill_path"] and t["spill_bytes"] < 2 * (mm + 4):
        _fail(path + "." + "spill_bytes", 43, 2 * (mm + 4))
    return t


def validate(cfg):
    # -> normalised config dict, or ConfigError naming the path.
    _obj(cfg, "")
    _known(cfg, _line("agent"), "")
    if "device" in cfg and "device_id" in cfg:
        _fail("device_id", 44)
    dev = cfg.get("device", cfg.get("device_id", "edgestream"))
    out = {"device": _name(dev, "device" if "device_id" not in cfg else "device_id")}
    # (kind v: a remote config's version is 1..2**31-1, compared, never in ticks arithmetic)
    out["version"] = _value("v", cfg.get("version", 0), "version")
    out["watchdog_ms"] = _value("t0", cfg.get("watchdog_ms", 0), "watchdog_ms")
    t = cfg.get("transport")
    out["transport"] = None if t is None else validate_transport(t)  # None: results stay on the board
    sl = cfg.get("sensors")
    if not isinstance(sl, list) or not sl:
        _fail("sensors", 28)
    sensors = []
    for i, s in enumerate(sl):
        s = _sensor(s, "sensors[%d]" % i)
        for k, other in enumerate(sensors):
            if other["name"] == s["name"]:
                _fail("sensors[%d].name" % i, 45, s["name"], k)
        sensors.append(s)
    out["sensors"] = sensors
    return out


def load(path):
    # Read and validate a JSON config file -> normalised dict.
    try:
        with open(path) as f:
            s = f.read()
    except OSError as e:
        _fail(str(path), 46, e)
    try:
        cfg = json.loads(s)
    except ValueError as e:
        _fail(str(path), 47, e)
    s = None  # the text can go before the normalised copy is built
    return validate(cfg)
