# Sensor sources: a tiny HAL so the same agent runs on boards and on the
# unix port. Each type is one small module with one class:
#   __init__(cfg, factor)  cfg: validated source config; factor: 10**decimals
#   read(t_ms) -> fixed-point int (value * factor), or None for "no reading"
#   deinit()
# Adding a type = one module here + a line in _TYPES + its parameter spec in
# specs.SOURCES (config.py validates with it). Modules load lazily, so a board only
# imports what it uses.

_TYPES = {
    "sim": ("sim", "Sim"),
    "adc": ("adc", "Adc"),
    "pin": ("digital_pin", "DigitalPin"),
    "i2c": ("i2c_register", "I2cRegister"),
    "internal_temp": ("internal_temp", "InternalTemp"),
}

def make(cfg, factor):
    # Validated source config -> source object (imports its module now).
    mod, cls = _TYPES[cfg["type"]]
    m = __import__("edgestream_agent.sources." + mod, None, None, (cls,))
    return getattr(m, cls)(cfg, factor)


def linear(scale, offset, factor):
    # raw -> raw*scale + offset in fixed point, as integers (num, den, off)
    # so that read() needs no float: value = raw * num // den + off.
    from edgestream_agent.fixed import fraction, to_fixed
    num, den = fraction(scale)
    return num * factor, den, to_fixed(offset, factor)


def apply(raw, num, den, off):
    if den == 1:
        return raw * num + off
    q = raw * num
    # round half away from zero without divmod's tuple
    if q >= 0:
        return (q + den // 2) // den + off
    return -((-q + den // 2) // den) + off
