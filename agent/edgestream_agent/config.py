# agent.json: load and validate the agent's configuration.
#
# validate(dict) returns a normalised copy (every default filled in, every
# filter as {"type": ..., params}) or raises ConfigError whose message starts
# with the path of the bad value: "sensors[1].windows[0].size_ms: must be > 0".
# Everything is checked before anything is built, so an invalid config never
# half-starts an agent. The keys are documented in agent/README.md.
#
# Source and filter parameters are described by small spec tables, so this
# module never imports hardware modules (`machine`) to validate a config.
# The `transport` section is validated by link_config.py (imported only when
# a config has one).
#
# Memory: this is the biggest module of the agent and a board needs it only
# while it validates (at start, and for a remote config): the agent unloads
# it, with specs and link_config, once the config is valid
# (edgestream_agent.unload). ConfigError lives in the package so that it
# stays the same class across unloads.

import json

from edgestream_agent import ConfigError
from edgestream_agent.specs import FILTERS, SOURCES


AGGREGATES = ("count", "sum", "avg", "min", "max", "stddev", "first", "last")
DEFAULT_AGGREGATES = AGGREGATES
MAX_DECIMALS = 6
_NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"

# Parameter specs (kind, default) of filters and sources are in specs.py. Kinds: num (int or float), num0 (>= 0),
# int, uint (>= 0), posint (> 0), bool, pin (int or str), or a tuple of the
# allowed values. A default of "required" marks a required key.
_REQ = "required"

_TOP_KEYS = ("device", "device_id", "version", "sensors", "transport", "watchdog_ms")
_SENSOR_KEYS = ("name", "source", "period_ms", "decimals", "filters", "windows")
_WINDOW_KEYS = ("name", "type", "size_ms", "every_ms", "size", "every", "aggregates", "capacity")
_WINDOW_TYPES = ("tumbling", "sliding")


def _is_num(v):
    return (isinstance(v, int) or isinstance(v, float)) and not isinstance(v, bool)


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


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


def _no_unknown(d, allowed, path):
    for k in d:
        if k not in allowed:
            raise ConfigError(path + "." + str(k) if path else str(k),
                              "unknown key (expected one of %s)" % ", ".join(allowed))


def _value(kind, v, path):
    if isinstance(kind, tuple):
        if v not in kind or isinstance(v, bool):
            raise ConfigError(path, "expected one of %s" % ", ".join(str(k) for k in kind))
        return v
    if kind == "bool":
        if not isinstance(v, bool):
            raise ConfigError(path, "expected true or false")
        return v
    if kind == "pin":
        if not (_is_int(v) and v >= 0) and not (isinstance(v, str) and v):
            raise ConfigError(path, "expected a pin number or name")
        return v
    if kind in ("int", "uint", "posint"):
        if not _is_int(v):
            raise ConfigError(path, "expected an integer")
        if kind == "uint" and v < 0:
            raise ConfigError(path, "must be >= 0")
        if kind == "posint" and v <= 0:
            raise ConfigError(path, "must be > 0")
        return v
    # num, num0, pos
    if not _is_num(v) or v != v or v in (float("inf"), float("-inf")):
        raise ConfigError(path, "expected a finite number")
    if kind == "num0" and v < 0:
        raise ConfigError(path, "must be >= 0")
    if kind == "pos" and v <= 0:
        raise ConfigError(path, "must be > 0")
    return v


def _params(spec, d, path):
    _no_unknown(d, tuple(spec) + ("type",), path)
    out = {}
    for k in spec:
        kind, default = spec[k]
        if k in d and not (d[k] is None and default is None):  # null = "not set"
            out[k] = _value(kind, d[k], path + "." + k)
        elif default == _REQ:
            raise ConfigError(path + "." + k, "required")
        else:
            out[k] = default
    return out


def _source(v, path):
    if v is None:
        v = {"type": "sim"}
    elif isinstance(v, str):
        v = {"type": v}
    _obj(v, path)
    t = v.get("type")
    if t not in SOURCES:
        raise ConfigError(path + ".type", "expected one of %s" % ", ".join(SOURCES))
    out = _params(SOURCES[t], v, path)
    out["type"] = t
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
    spec, bare = FILTERS[t]
    p = path + "." + str(t) if "type" not in v else path
    if not isinstance(params, dict):
        if bare is None:
            raise ConfigError(p, "expected an object")
        params = {bare: params}
    out = _params(spec, params, p)
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
    _no_unknown(v, _WINDOW_KEYS, path)
    w = {}
    w["name"] = _name(v["name"], path + ".name") if "name" in v else "w%d" % i
    timed = "size_ms" in v
    if timed and "size" in v:
        raise ConfigError(path, "give size_ms (time window) or size (count window), not both")
    if not timed and "size" not in v:
        raise ConfigError(path + ".size_ms", "required (or size, for a count window)")
    if timed and "every" in v:
        raise ConfigError(path + ".every", "a time window slides with every_ms")
    if not timed and "every_ms" in v:
        raise ConfigError(path + ".every_ms", "a count window slides with every")
    return _window_size(v, w, timed, path, period_ms)


def _window_size(v, w, timed, path, period_ms):
    size_key = "size_ms" if timed else "size"
    every_key = "every_ms" if timed else "every"
    size = _value("posint", v[size_key], path + "." + size_key)
    every = _value("posint", v[every_key], path + "." + every_key) if every_key in v else None
    kind = v.get("type")
    if kind is not None and kind not in _WINDOW_TYPES:
        raise ConfigError(path + ".type", "expected tumbling or sliding")
    if kind == "sliding" and every is None:
        raise ConfigError(path + "." + every_key, "required for a sliding window")
    if kind == "tumbling" and every is not None and every != size:
        raise ConfigError(path + "." + every_key, "a tumbling window has no %s" % every_key)
    if every is not None and every == size and kind != "sliding":
        every = None  # sliding by its own size is tumbling
    if every is not None and every > size:
        raise ConfigError(path + "." + every_key, "must be <= %s (windows would skip samples)" % size_key)
    w["type"] = "tumbling" if every is None else "sliding"
    w[size_key] = size
    if every is not None:
        w[every_key] = every
    w["aggregates"] = _aggregates(v.get("aggregates", DEFAULT_AGGREGATES), path + ".aggregates")
    w["capacity"] = _capacity(v, w["type"], timed, size, period_ms, path)
    return w


def _aggregates(aggs, path):
    if not isinstance(aggs, list) and not isinstance(aggs, tuple) or not aggs:
        raise ConfigError(path, "expected a non-empty list")
    seen = []
    for j, a in enumerate(aggs):
        if a not in AGGREGATES:
            raise ConfigError("%s[%d]" % (path, j), "unknown aggregate %r (expected one of %s)"
                              % (a, ", ".join(AGGREGATES)))
        if a in seen:
            raise ConfigError("%s[%d]" % (path, j), "duplicate aggregate %r" % a)
        seen.append(a)
    return seen


def _capacity(v, kind, timed, size, period_ms, path):
    if kind == "tumbling":
        cap = 0  # tumbling windows keep no samples
    elif "capacity" in v:
        cap = _value("posint", v["capacity"], path + ".capacity")
        if not timed and cap < size:
            raise ConfigError(path + ".capacity", "must be >= size (%d)" % size)
    elif not timed:
        cap = size
    else:
        # samples expected in size_ms at the sensor's period, plus slack for jitter
        n = size // period_ms + 1
        cap = n + n // 4 + 2
    return cap


def _sensor(v, i, path):
    _obj(v, path)
    _no_unknown(v, _SENSOR_KEYS, path)
    if "name" not in v:
        raise ConfigError(path + ".name", "required")
    s = {"name": _name(v["name"], path + ".name")}
    s["source"] = _source(v.get("source"), path + ".source")
    s["period_ms"] = _value("posint", v.get("period_ms", 1000), path + ".period_ms")
    d = _value("uint", v.get("decimals", 3), path + ".decimals")
    if d > MAX_DECIMALS:
        raise ConfigError(path + ".decimals", "must be <= %d" % MAX_DECIMALS)
    s["decimals"] = d
    fl = v.get("filters", [])
    if not isinstance(fl, list):
        raise ConfigError(path + ".filters", "expected a list")
    s["filters"] = [_filter(f, "%s.filters[%d]" % (path, j)) for j, f in enumerate(fl)]
    wl = v.get("windows", [])
    if not isinstance(wl, list):
        raise ConfigError(path + ".windows", "expected a list")
    ws = []
    for j, w in enumerate(wl):
        w = _window(w, j, "%s.windows[%d]" % (path, j), s["period_ms"])
        for k, other in enumerate(ws):
            if other["name"] == w["name"]:
                raise ConfigError("%s.windows[%d].name" % (path, j),
                                  "duplicate window name %r (also windows[%d])" % (w["name"], k))
        ws.append(w)
    s["windows"] = ws
    return s


def validate(cfg):
    # -> normalised config dict, or ConfigError naming the path.
    _obj(cfg, "")
    _no_unknown(cfg, _TOP_KEYS, "")
    out = {}
    if "device" in cfg and "device_id" in cfg:
        raise ConfigError("device_id", "give device or device_id, not both")
    dev = cfg.get("device", cfg.get("device_id", "edgestream"))
    out["device"] = _name(dev, "device" if "device_id" not in cfg else "device_id")
    out["version"] = _value("uint", cfg.get("version", 0), "version")
    out["watchdog_ms"] = _value("uint", cfg.get("watchdog_ms", 0), "watchdog_ms")
    t = cfg.get("transport")
    if t is None:
        out["transport"] = None  # no link: results stay on the board
    else:
        from edgestream_agent.link_config import validate as validate_link
        out["transport"] = validate_link(t, "transport")
    sl = cfg.get("sensors")
    if not isinstance(sl, list) or not sl:
        raise ConfigError("sensors", "expected a non-empty list")
    sensors = []
    for i, s in enumerate(sl):
        s = _sensor(s, i, "sensors[%d]" % i)
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
    return validate(cfg)
