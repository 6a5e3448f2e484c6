# Parameter specs of filters and sources: param -> (kind, default), used by
# config.py to validate agent.json. Kept apart from the code they configure
# so that a board can drop them (with config.py) once its config is valid:
# edgestream_agent.unload("config"); edgestream_agent.unload("specs").
# Kinds: num (int or float), num0 (>= 0), int, uint (>= 0), posint (> 0),
# bool, pin (int or str), or a tuple of the allowed values; a default of
# "required" marks a required key.

_REQ = "required"

# type -> ({param: (kind, default)}, the param a bare value stands for:
# {"ema": 0.3}); config.py validates with these.
FILTERS = {
    "range": ({"min": ("num", None), "max": ("num", None)}, None),
    "clamp": ({"min": ("num", None), "max": ("num", None)}, None),
    "calibrate": ({"slope": ("num", 1), "offset": ("num", 0)}, None),
    "delta": ({"min": ("num0", _REQ)}, "min"),
    "throttle": ({"interval_ms": ("posint", _REQ)}, "interval_ms"),
    "median": ({"size": ("posint", _REQ)}, "size"),
    "ema": ({"alpha": ("num", _REQ)}, "alpha"),
    "round": ({"digits": ("uint", _REQ)}, "digits"),
    "heartbeat": ({"interval_ms": ("posint", _REQ)}, "interval_ms"),
}

# type -> {param: (kind, default)}; kinds as in config.py
SOURCES = {
    "sim": {
        "wave": (("sine", "noise", "steps", "constant"), "sine"),
        "amplitude": ("num", 1),
        "offset": ("num", 0),
        "wave_ms": ("posint", 60000),
        "levels": ("posint", 4),
        "noise": ("num0", 0),
        "seed": ("uint", 1),
    },
    "adc": {
        "pin": ("pin", _REQ),
        "scale": ("num", 1),
        "offset": ("num", 0),
        "atten": ("uint", None),
    },
    "pin": {
        "pin": ("pin", _REQ),
        "mode": (("level", "count"), "level"),
        "pull": (("none", "up", "down"), "none"),
        "edge": (("rising", "falling", "both"), "rising"),
        "scale": ("num", 1),
    },
    "i2c": {
        "bus": ("uint", 0),
        "scl": ("pin", None),
        "sda": ("pin", None),
        "freq": ("posint", 400000),
        "addr": ("uint", _REQ),
        "reg": ("uint", _REQ),
        "nbytes": ((1, 2), 2),
        "signed": ("bool", False),
        "byteorder": (("big", "little"), "big"),
        "scale": ("num", 1),
        "offset": ("num", 0),
    },
    "internal_temp": {},
}
