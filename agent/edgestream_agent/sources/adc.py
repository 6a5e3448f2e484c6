# ADC input (machine.ADC): value = read_u16() * scale + offset.
# `atten` (ESP32) sets the input attenuation (machine.ADC.ATTN_* value).
# read_block() reads a burst for a sensor's `block`: n readings period_ms
# apart, the first at once, into the pipeline's buffer; the scheduler waits
# for it ((n - 1) * period_ms), so a block suits short periods.

import time

from edgestream_agent.timebase import ticks_add, ticks_diff, ticks_ms
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

    def read_block(self, t, period_ms, buf, n):
        # n readings, period_ms apart on the ticks clock, the first now (at
        # t), into buf -> t, the first one's time
        adc = self.adc
        due = ticks_ms()
        for i in range(n):
            if i:
                due = ticks_add(due, period_ms)
                d = ticks_diff(due, ticks_ms())
                if d > 0:
                    time.sleep_ms(d) if hasattr(time, "sleep_ms") else time.sleep(d / 1000)
            buf[i] = apply(adc.read_u16(), self.num, self.den, self.off)
        return t

    def deinit(self):
        self.adc = None
