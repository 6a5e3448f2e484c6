# Generic I2C register read: `nbytes` (1 or 2) from register `reg` of device
# `addr`, big- or little-endian, signed or not, then raw * scale + offset.
# Reads go into a preallocated bytearray (readfrom_mem_into): no allocation.

from edgestream_agent.sources.scale import apply, linear

try:
    import machine
except ImportError:  # CPython
    machine = None


class I2cRegister:
    def __init__(self, cfg, factor):
        if machine is None or not hasattr(machine, "I2C"):
            raise OSError("source i2c: this port has no machine.I2C")
        if cfg["scl"] is not None and cfg["sda"] is not None:
            self.i2c = machine.I2C(cfg["bus"], scl=machine.Pin(cfg["scl"]), sda=machine.Pin(cfg["sda"]),
                                   freq=cfg["freq"])
        else:
            self.i2c = machine.I2C(cfg["bus"], freq=cfg["freq"])
        self.addr = cfg["addr"]
        self.reg = cfg["reg"]
        self.buf = bytearray(cfg["nbytes"])
        self.big = cfg["byteorder"] == "big"
        self.signed = cfg["signed"]
        self.num, self.den, self.off = linear(cfg["scale"], cfg["offset"], factor)

    def read(self, t):
        b = self.buf
        self.i2c.readfrom_mem_into(self.addr, self.reg, b)
        if len(b) == 1:
            raw = b[0]
            if self.signed and raw > 127:
                raw -= 256
        else:
            raw = (b[0] << 8 | b[1]) if self.big else (b[1] << 8 | b[0])
            if self.signed and raw > 32767:
                raw -= 65536
        return apply(raw, self.num, self.den, self.off)

    def deinit(self):
        self.i2c = None
