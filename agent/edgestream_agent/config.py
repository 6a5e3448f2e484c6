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
# filters and the transport sections are compact spec strings (one str
# constant each, not a dict of tuples per key, and no interned names), read
# by one function, _params; only the rules that tie keys together are code.
# ConfigError lives in the package so that it stays the same class across
# unloads.
#
# A spec string is "key:kind=default ..." (space separated):
#   kind  n finite number, n0 number >= 0, i integer, u integer >= 0,
#         p integer > 0, port 0..65535, b true/false, s non-empty string
#         (<= 256 chars), pin pin number >= 0 or name, a|b|c one of these
#         (numbers where they are digits), @x the object spec _SUB[x]
#   default  "!" required, empty: null (a null value then means "not set"),
#         JSON for numbers and true/false, else the string itself
# A leading "*" marks the parameter a bare value stands for ({"ema": 0.3}).

import json

from edgestream_agent import ConfigError

AGGREGATES = ("count", "sum", "avg", "min", "max", "stddev", "first", "last")
MAX_DECIMALS = 6
_NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"

# filters: type -> spec (their code is in filters.py)
FILTERS = {
    "range": "min:n= max:n=",
    "clamp": "min:n= max:n=",
    "calibrate": "slope:n=1 offset:n=0",
    "delta": "*min:n0=!",
    "throttle": "*interval_ms:p=!",
    "median": "*size:p=!",
    "ema": "*alpha:n=!",
    "round": "*digits:u=!",
    "heartbeat": "*interval_ms:p=!",
}

# sources: type -> spec (their code is in sources/)
SOURCES = {
    "sim": "wave:sine|noise|steps|constant=sine amplitude:n=1 offset:n=0 wave_ms:p=60000 levels:p=4 "
           "noise:n0=0 seed:u=1",
    "adc": "pin:pin=! scale:n=1 offset:n=0 atten:u=",
    "pin": "pin:pin=! mode:level|count=level pull:none|up|down=none edge:rising|falling|both=rising scale:n=1",
    "i2c": "bus:u=0 scl:pin= sda:pin= freq:p=400000 addr:u=! reg:u=! nbytes:1|2=2 signed:b=false "
           "byteorder:big|little=big scale:n=1 offset:n=0",
    "internal_temp": "",
}

# the transport section (link.py) and its objects
TRANSPORT = ("type:mqtt|serial|none=! prefix:s=edgestream poll_ms:p=10 health_ms:u=10000 buffer_bytes:p=4096 "
             "max_message:p=1024 spill_path:s= spill_bytes:u=0 mqtt:@mqtt= serial:@serial= wifi:@wifi= ntp:@ntp=")
_SUB = {
    "mqtt": "host:s=! port:port=0 client_id:s= user:s= password:s= tls:b=false keepalive_s:u=30 qos:0|1=1 "
            "backoff_min_ms:p=500 backoff_max_ms:p=30000 connect_timeout_ms:p=5000 max_inflight:p=8 "
            "rx_bytes:p=2048 tx_bytes:p=2048",
    "serial": "port:s=stdio uart:u=0 baud:p=115200 tx:pin= rx:pin=",
    "wifi": "ssid:s=! password:s= retry_ms:p=10000",
    "ntp": "host:s=pool.ntp.org port:port=123 every_ms:p=3600000 timeout_ms:p=2000",
}

_SENSOR_KEYS = "name source period_ms decimals filters windows"
_WINDOW_KEYS = "name type size_ms every_ms size every aggregates capacity"


def _spec(text):
    # spec string -> [(key, kind, default)]
    out = []
    for tok in text.split():
        k, rest = tok.lstrip("*").split(":")
        kind, d = rest.split("=")
        if d == "!":
            pass
        elif not d:
            d = None
        elif d[0] in "-0123456789tf":
            d = json.loads(d)
        out.append((k, kind, d))
    return out


def bare(t):
    # the parameter a bare filter value stands for, or None
    s = FILTERS[t]
    return s[1:s.index(":")] if s[:1] == "*" else None


def _name(v, path):
    if not isinstance(v, str) or not 0 < len(v) <= 64:
        raise ConfigError(path, "expected a name of 1..64 characters")
    for c in v:
        if c not in _NAME_CHARS:
            raise ConfigError(path, "%r has a character outside [A-Za-z0-9_.-]" % v)
    return v


def _obj(v, path):
    if not isinstance(v, dict):
        raise ConfigError(path, "expected an object")
    return v


def _known(d, allowed, path):
    # allowed: a space separated key list
    keys = allowed.split()
    for k in d:
        if k not in keys:
            raise ConfigError(path + "." + str(k) if path else str(k),
                              "unknown key (expected one of %s)" % ", ".join(keys))


def _value(kind, v, path):
    if "|" in kind:
        ok = [int(c) if c.isdigit() else c for c in kind.split("|")]
        if v not in ok or isinstance(v, bool):
            raise ConfigError(path, "expected one of %s" % ", ".join(str(c) for c in ok))
        return v
    if kind[0] == "@":
        return _params(_SUB[kind[1:]], v, path)
    if kind == "b":
        if not isinstance(v, bool):
            raise ConfigError(path, "expected true or false")
        return v
    if kind == "s":
        if not isinstance(v, str) or not v or len(v) > 256:
            raise ConfigError(path, "expected a non-empty string")
        return v
    if kind == "pin":
        if not (isinstance(v, int) and not isinstance(v, bool) and v >= 0) and not (isinstance(v, str) and v):
            raise ConfigError(path, "expected a pin number or name")
        return v
    if kind[0] == "n":
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v != v or v in (float("inf"), float("-inf")):
            raise ConfigError(path, "expected a finite number")
    elif not isinstance(v, int) or isinstance(v, bool):
        raise ConfigError(path, "expected an integer")
    if kind == "port" and not 0 <= v <= 65535:
        raise ConfigError(path, "must be in 0..65535")
    if kind in ("u", "n0") and v < 0:
        raise ConfigError(path, "must be >= 0")
    if kind == "p" and v <= 0:
        raise ConfigError(path, "must be > 0")
    return v


def _params(spec, d, path, extra=""):
    # an object against a spec string -> normalised dict
    _obj(d, path)
    spec = _spec(spec)
    _known(d, " ".join(s[0] for s in spec) + extra, path)
    out = {}
    for k, kind, default in spec:
        if k in d and not (d[k] is None and default is None):  # null = "not set"
            out[k] = _value(kind, d[k], path + "." + k)
        elif default == "!":
            raise ConfigError(path + "." + k, "required")
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
        raise ConfigError(path, "expected a one-key object like {\"range\": {\"min\": 0}}")
    if t not in FILTERS:
        raise ConfigError(path, "unknown filter %r (expected one of %s)" % (t, ", ".join(FILTERS)))
    p = path + "." + str(t) if "type" not in v else path
    if not isinstance(params, dict):
        b = bare(t)
        if b is None:
            raise ConfigError(p, "expected an object")
        params = {b: params}
    out = _params(FILTERS[t], params, p, " type")
    out["type"] = t
    if t in ("range", "clamp"):
        if out["min"] is None and out["max"] is None:
            raise ConfigError(p, "needs min, max or both")
        if out["min"] is not None and out["max"] is not None and out["min"] > out["max"]:
            raise ConfigError(p + ".max", "must be >= min")
    elif t == "ema" and not 0 < out["alpha"] <= 1:
        raise ConfigError(p + ".alpha", "must be in (0, 1]")
    elif t == "round" and out["digits"] > MAX_DECIMALS:
        raise ConfigError(p + ".digits", "must be <= %d" % MAX_DECIMALS)
    return out


def _window(v, i, path, period_ms):
    _obj(v, path)
    _known(v, _WINDOW_KEYS, path)
    w = {"name": _name(v["name"], path + ".name") if "name" in v else "w%d" % i}
    timed = "size_ms" in v
    if timed and "size" in v:
        raise ConfigError(path, "give size_ms (time window) or size (count window), not both")
    if not timed and "size" not in v:
        raise ConfigError(path + ".size_ms", "required (or size, for a count window)")
    if timed and "every" in v:
        raise ConfigError(path + ".every", "a time window slides with every_ms")
    if not timed and "every_ms" in v:
        raise ConfigError(path + ".every_ms", "a count window slides with every")
    sk = "size_ms" if timed else "size"
    ek = "every_ms" if timed else "every"
    size = _value("p", v[sk], path + "." + sk)
    every = _value("p", v[ek], path + "." + ek) if ek in v else None
    kind = v.get("type")
    if kind is not None and kind not in ("tumbling", "sliding"):
        raise ConfigError(path + ".type", "expected tumbling or sliding")
    if kind == "sliding" and every is None:
        raise ConfigError(path + "." + ek, "required for a sliding window")
    if kind == "tumbling" and every is not None and every != size:
        raise ConfigError(path + "." + ek, "a tumbling window has no %s" % ek)
    if every is not None and every == size and kind != "sliding":
        every = None  # sliding by its own size is tumbling
    if every is not None and every > size:
        raise ConfigError(path + "." + ek, "must be <= %s (windows would skip samples)" % sk)
    w["type"] = "tumbling" if every is None else "sliding"
    w[sk] = size
    if every is not None:
        w[ek] = every
    # aggregates: a non-empty list of known names, no repeats
    aggs = v.get("aggregates", AGGREGATES)
    p = path + ".aggregates"
    if not isinstance(aggs, (list, tuple)) or not aggs:
        raise ConfigError(p, "expected a non-empty list")
    seen = []
    for j, a in enumerate(aggs):
        if a not in AGGREGATES:
            raise ConfigError("%s[%d]" % (p, j), "unknown aggregate %r (expected one of %s)"
                              % (a, ", ".join(AGGREGATES)))
        if a in seen:
            raise ConfigError("%s[%d]" % (p, j), "duplicate aggregate %r" % a)
        seen.append(a)
    w["aggregates"] = seen
    # capacity: samples a sliding window holds (tumbling windows hold none)
    if every is None:
        cap = 0
    elif "capacity" in v:
        cap = _value("p", v["capacity"], path + ".capacity")
        if not timed and cap < size:
            raise ConfigError(path + ".capacity", "must be >= size (%d)" % size)
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
    _known(v, _SENSOR_KEYS, path)
    if "name" not in v:
        raise ConfigError(path + ".name", "required")
    s = {"name": _name(v["name"], path + ".name")}
    src = v.get("source")
    if src is None:
        src = {"type": "sim"}
    elif isinstance(src, str):
        src = {"type": src}
    _obj(src, path + ".source")
    t = src.get("type")
    if t not in SOURCES:
        raise ConfigError(path + ".source.type", "expected one of %s" % ", ".join(SOURCES))
    s["source"] = _params(SOURCES[t], src, path + ".source", " type")
    s["source"]["type"] = t
    s["period_ms"] = _value("p", v.get("period_ms", 1000), path + ".period_ms")
    d = _value("u", v.get("decimals", 3), path + ".decimals")
    if d > MAX_DECIMALS:
        raise ConfigError(path + ".decimals", "must be <= %d" % MAX_DECIMALS)
    s["decimals"] = d
    out = []
    for key in ("filters", "windows"):
        items = v.get(key, [])
        if not isinstance(items, list):
            raise ConfigError(path + "." + key, "expected a list")
        out.append(items)
    s["filters"] = [_filter(f, "%s.filters[%d]" % (path, j)) for j, f in enumerate(out[0])]
    ws = []
    for j, w in enumerate(out[1]):
        w = _window(w, j, "%s.windows[%d]" % (path, j), s["period_ms"])
        for k, other in enumerate(ws):
            if other["name"] == w["name"]:
                raise ConfigError("%s.windows[%d].name" % (path, j),
                                  "duplicate window name %r (also windows[%d])" % (w["name"], k))
        ws.append(w)
    s["windows"] = ws
    return s


def validate_transport(section, path="transport"):
    # -> normalised transport dict; None (no section) means {"type": "none"}.
    t = _params(TRANSPORT, {"type": "none"} if section is None else section, path)
    if t["type"] == "mqtt":
        m = t["mqtt"]
        if m is None:
            raise ConfigError(path + ".mqtt", "required when type is 'mqtt'")
        if m["backoff_min_ms"] > m["backoff_max_ms"]:
            raise ConfigError(path + ".mqtt.backoff_max_ms", "must be >= backoff_min_ms")
        if m["password"] is not None and m["user"] is None:
            raise ConfigError(path + ".mqtt.password", "needs user")
        if m["max_inflight"] > 64:
            raise ConfigError(path + ".mqtt.max_inflight", "must be <= 64")
        for k in ("rx_bytes", "tx_bytes"):
            if m[k] < 256:
                raise ConfigError(path + ".mqtt." + k, "must be >= 256")
        if m["tx_bytes"] < t["max_message"] + 256:
            raise ConfigError(path + ".mqtt.tx_bytes", "must be >= max_message + 256 (%d)"
                              % (t["max_message"] + 256))
    if t["type"] == "serial" and t["serial"] is None:
        t["serial"] = _params(_SUB["serial"], {}, path + ".serial")
    prefix = t["prefix"]
    for level in prefix.split("/"):
        if not level or "+" in level or "#" in level:
            raise ConfigError(path + ".prefix", "%r has an empty level or a wildcard" % prefix)
    mm = t["max_message"]
    if mm < 128 or mm > 2037:
        # 2037 + 11 bytes of framing is the serial frame limit (2048)
        raise ConfigError(path + ".max_message", "must be in 128..2037")
    if t["buffer_bytes"] < mm + 4:
        raise ConfigError(path + ".buffer_bytes", "must be >= max_message + 4 (%d)" % (mm + 4))
    if t["spill_bytes"] and not t["spill_path"]:
        raise ConfigError(path + ".spill_path", "required when spill_bytes > 0")
    if t["spill_path"] and t["spill_bytes"] < 2 * (mm + 4):
        raise ConfigError(path + ".spill_bytes", "must be >= 2 * (max_message + 4) (%d)" % (2 * (mm + 4)))
    return t


def validate(cfg):
    # -> normalised config dict, or ConfigError naming the path.
    _obj(cfg, "")
    _known(cfg, "device device_id version sensors transport watchdog_ms", "")
    if "device" in cfg and "device_id" in cfg:
        raise ConfigError("device_id", "give device or device_id, not both")
    dev = cfg.get("device", cfg.get("device_id", "edgestream"))
    out = {"device": _name(dev, "device" if "device_id" not in cfg else "device_id")}
    for k in ("version", "watchdog_ms"):
        out[k] = _value("u", cfg.get(k, 0), k)
    t = cfg.get("transport")
    out["transport"] = None if t is None else validate_transport(t)  # None: results stay on the board
    sl = cfg.get("sensors")
    if not isinstance(sl, list) or not sl:
        raise ConfigError("sensors", "expected a non-empty list")
    sensors = []
    for i, s in enumerate(sl):
        s = _sensor(s, "sensors[%d]" % i)
        for k, other in enumerate(sensors):
            if other["name"] == s["name"]:
                raise ConfigError("sensors[%d].name" % i, "duplicate sensor name %r (also sensors[%d])"
                                  % (s["name"], k))
        sensors.append(s)
    out["sensors"] = sensors
    return out


def load(path):
    # Read and validate a JSON config file -> normalised dict.
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(str(path), "cannot read: %s" % e)
    try:
        cfg = json.loads(text)
    except ValueError as e:
        raise ConfigError(str(path), "not valid JSON: %s" % e)
    text = None  # the text can go before the normalised copy is built
    return validate(cfg)
