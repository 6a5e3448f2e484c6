# Validation of the `transport` section of agent.json (the link to the hub).
#
# validate(section, path) returns a normalised copy with every default
# filled in, or raises config.ConfigError whose message starts with the path
# of the bad value ("transport.mqtt.port: must be > 0"). The keys are
# documented in agent/README.md, section "Link". A table per object keeps
# this small: key -> (kind, default); _REQ marks a required key.

from edgestream_agent import ConfigError

_REQ = "required"
_NONE = None

# kinds: "str", "str?" (string or null), "bool", "posint", "uint", "port",
# a tuple of allowed values, or a nested table (an object, null = absent).
MQTT = {
    "host": ("str", _REQ),
    "port": ("port", 0),                 # 0: 1883, or 8883 with tls
    "client_id": ("str?", None),         # default: the device id
    "user": ("str?", None),
    "password": ("str?", None),
    "tls": ("bool", False),
    "keepalive_s": ("uint", 30),
    "qos": ((0, 1), 1),
    "backoff_min_ms": ("posint", 500),
    "backoff_max_ms": ("posint", 30000),
    "connect_timeout_ms": ("posint", 5000),
    "max_inflight": ("posint", 8),
    "rx_bytes": ("posint", 2048),        # largest incoming message (config)
    "tx_bytes": ("posint", 2048),
}

SERIAL = {
    "port": ("str", "stdio"),            # "stdio" (USB CDC), "uart", or a device path
    "uart": ("uint", 0),                 # UART id when port is "uart"
    "baud": ("posint", 115200),
    "tx": ("pin", None),
    "rx": ("pin", None),
}

WIFI = {
    "ssid": ("str", _REQ),
    "password": ("str?", None),
    "retry_ms": ("posint", 10000),
}

NTP = {
    "host": ("str", "pool.ntp.org"),
    "port": ("port", 123),
    "every_ms": ("posint", 3600000),
    "timeout_ms": ("posint", 2000),
}

TRANSPORT = {
    "type": (("mqtt", "serial", "none"), _REQ),
    "prefix": ("str", "edgestream"),
    "poll_ms": ("posint", 10),           # how often the link task runs
    "health_ms": ("uint", 10000),        # 0: no health messages
    "buffer_bytes": ("posint", 4096),
    "max_message": ("posint", 1024),     # largest encoded result message
    "spill_path": ("str?", None),
    "spill_bytes": ("uint", 0),
    "mqtt": (MQTT, None),
    "serial": (SERIAL, None),
    "wifi": (WIFI, None),
    "ntp": (NTP, None),
}


def _check(kind, v, path):
    if isinstance(kind, dict):
        return _table(kind, v, path)
    if isinstance(kind, tuple):
        if v not in kind or isinstance(v, bool):
            raise ConfigError(path, "expected one of %s" % ", ".join(repr(k) for k in kind))
        return v
    if kind in ("str", "str?"):
        if v is None and kind == "str?":
            return v
        if not isinstance(v, str) or not v or len(v) > 256:
            raise ConfigError(path, "expected a non-empty string")
        return v
    if kind == "bool":
        if not isinstance(v, bool):
            raise ConfigError(path, "expected true or false")
        return v
    if kind == "pin":
        if v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0) or \
                (isinstance(v, str) and v):
            return v
        raise ConfigError(path, "expected a pin number or name")
    if not isinstance(v, int) or isinstance(v, bool):
        raise ConfigError(path, "expected an integer")
    if kind == "posint" and v <= 0:
        raise ConfigError(path, "must be > 0")
    if kind == "uint" and v < 0:
        raise ConfigError(path, "must be >= 0")
    if kind == "port" and not 0 <= v <= 65535:
        raise ConfigError(path, "must be in 0..65535")
    return v


def _table(spec, d, path):
    if not isinstance(d, dict):
        raise ConfigError(path, "expected an object")
    for k in d:
        if k not in spec:
            raise ConfigError(path + "." + str(k), "unknown key (expected one of %s)" % ", ".join(spec))
    out = {}
    for k in spec:
        kind, default = spec[k]
        if k in d and not (isinstance(kind, dict) and d[k] is None):
            out[k] = _check(kind, d[k], path + "." + k)
        elif default == _REQ:
            raise ConfigError(path + "." + k, "required")
        else:
            out[k] = default
    return out


def validate(section, path="transport"):
    # -> normalised transport dict; None (no section) means {"type": "none"}.
    if section is None:
        section = {"type": "none"}
    t = _table(TRANSPORT, section, path)
    if t["type"] == "mqtt":
        if t["mqtt"] is None:
            raise ConfigError(path + ".mqtt", "required when type is 'mqtt'")
        m = t["mqtt"]
        if m["backoff_min_ms"] > m["backoff_max_ms"]:
            raise ConfigError(path + ".mqtt.backoff_max_ms", "must be >= backoff_min_ms")
        if m["password"] is not None and m["user"] is None:
            raise ConfigError(path + ".mqtt.password", "needs user")
        if m["max_inflight"] > 64:
            raise ConfigError(path + ".mqtt.max_inflight", "must be <= 64")
        if m["rx_bytes"] < 256 or m["tx_bytes"] < 256:
            raise ConfigError(path + ".mqtt.%s" % ("rx_bytes" if m["rx_bytes"] < 256 else "tx_bytes"),
                              "must be >= 256")
        if m["tx_bytes"] < t["max_message"] + 256:
            raise ConfigError(path + ".mqtt.tx_bytes", "must be >= max_message + 256 (%d)"
                              % (t["max_message"] + 256))
    if t["type"] == "serial" and t["serial"] is None:
        t["serial"] = _table(SERIAL, {}, path + ".serial")
    prefix = t["prefix"]
    for level in prefix.split("/"):
        if not level or "+" in level or "#" in level:
            raise ConfigError(path + ".prefix", "%r has an empty level or a wildcard" % prefix)
    if t["max_message"] < 128 or t["max_message"] > 2037:
        # 2037 + 11 bytes of framing is the serial frame limit (2048)
        raise ConfigError(path + ".max_message", "must be in 128..2037")
    if t["buffer_bytes"] < t["max_message"] + 4:
        raise ConfigError(path + ".buffer_bytes", "must be >= max_message + 4 (%d)" % (t["max_message"] + 4))
    if t["spill_bytes"] and not t["spill_path"]:
        raise ConfigError(path + ".spill_path", "required when spill_bytes > 0")
    if t["spill_path"] and t["spill_bytes"] < 2 * (t["max_message"] + 4):
        raise ConfigError(path + ".spill_bytes", "must be >= 2 * (max_message + 4) (%d)"
                          % (2 * (t["max_message"] + 4)))
    return t
