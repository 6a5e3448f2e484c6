# EdgeStream shared wire protocol: what crosses between agent and hub.
# Runs unchanged on MicroPython and CPython. Submodules load lazily so that
# `import edgestream_shared` costs almost nothing on a board's heap.

PROTOCOL_VERSION = 1

_LAZY = {
    "WireError": "errors",
    "Topics": "topics",
    "Encoder": "encoder",
    "decode": "decoder",
    "decode_config": "decoder",
    "encode_frame": "frame",
    "decode_frame": "frame",
    "FrameReader": "frame",
}


def __getattr__(name):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(name)
    m = __import__("edgestream_shared." + mod, None, None, (name,))
    return getattr(m, name)
