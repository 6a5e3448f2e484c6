# ADC input (machine.ADC): value = read_u16() * scale + offset.
# `atten` (ESP32) sets the input attenuation (machine.ADC.ATTN_* value).

from edgestream_agent.sources.scale import apply, linear

try:
    import machine
except ImportError:  # CPython
    machine = None


class Adc:
    def __init__(self, cfg, factor):
        if machine is None or not hasattr(machine, "ADC"):
            raise OSError("source adc: this port has no machine.ADC")
        # a GPIO number or name: ESP32 ADC pins 32-39, RP2040 GPIO 26-29
        self.adc = machine.ADC(machine.Pin(cfg["pin"]))
        if cfg["atten"] is not None and hasattr(self.adc, "atten"):
            self.adc.atten(cfg["atten"])
        self.num, self.den, self.off = linear(cfg["scale"], cfg["offset"], factor)

    def read(self, t):
        return apply(self.adc.read_u16(), self.num, self.den, self.off)

    def deinit(self):
        self.adc = None
