# Digital input: mode "level" reads the pin (0/1); mode "count" counts edges
# in an interrupt handler and reports the count since the previous read
# (pulses per period, times scale). The handler only increments an int: it
# allocates nothing.

from edgestream_agent.sources.scale import apply, linear

try:
    import machine
except ImportError:  # CPython
    machine = None


class DigitalPin:
    def __init__(self, cfg, factor):
        if machine is None or not hasattr(machine, "Pin"):
            raise OSError("source pin: this port has no machine.Pin")
        P = machine.Pin
        pull = {"none": None, "up": P.PULL_UP, "down": P.PULL_DOWN}[cfg["pull"]]
        self.pin = P(cfg["pin"], P.IN, pull)
        self.count_mode = cfg["mode"] == "count"
        self.count = 0
        self.num, self.den, self.off = linear(cfg["scale"], 0, factor)
        if self.count_mode:
            edge = {"rising": P.IRQ_RISING, "falling": P.IRQ_FALLING,
                    "both": P.IRQ_RISING | P.IRQ_FALLING}[cfg["edge"]]
            self._cb = self._edge  # bound once: the IRQ must not allocate
            self.pin.irq(self._cb, edge)

    def _edge(self, pin):
        self.count += 1

    def read(self, t):
        if self.count_mode:
            raw = self.count
            self.count = 0  # an edge between these two lines is lost (documented)
        else:
            raw = self.pin.value()
        return apply(raw, self.num, self.den, self.off)

    def deinit(self):
        if self.count_mode and self.pin is not None:
            self.pin.irq(None)
        self.pin = None
