# Sensor sources: a tiny HAL so the same agent runs on boards and on the
# unix port. Each type is one small module with one class:
#   __init__(cfg, factor)  cfg: validated source config; factor: 10**decimals
#   read(t_ms) -> fixed-point int (value * factor), or None for "no reading"
#   read_block(t_ms, period_ms, buf, n) -> t0   (sim, adc: a sensor's `block`):
#       n readings period_ms apart into buf, buf[i] at t0 + i * period_ms
#       (sim: the block that ends at t; adc: a burst from t on)
#   deinit()
# Hardware sources scale raw readings with scale.py. Adding a type = one
# module here + a line in _TYPES + its parameter spec in config.SOURCES
# (config.py validates with it). Modules load lazily, so a board only
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
    from edgestream_agent import need
    mod, cls = _TYPES[cfg["type"]]
    return need("sources." + mod, cls)(cfg, factor)
