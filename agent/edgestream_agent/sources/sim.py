# Simulated source for the unix port and demos: sine, noise, steps or a
# constant, deterministic for a given seed and sample times. No floats per
# read: the sine is a 65-entry table (one period) in fixed point with
# integer linear interpolation, the noise a 16-bit LCG (values stay small
# ints on every port).
#   value(t) = offset + amplitude * wave(t) + noise * u,  u uniform in [-1, 1)
#   sine: sin(2*pi*t / wave_ms); steps: (t // wave_ms) % levels; constant: 0;
#   noise: 0 (only the noise term).

import math
from array import array

from edgestream_agent.timebase import micropython

_N = 64  # sine table resolution (per period)
_TABLES = {}  # amplitude -> sine table


class Sim:
    def __init__(self, cfg, factor):
        self.wave = cfg["wave"]
        self.period = cfg["wave_ms"]
        self.levels = cfg["levels"]
        self.amp = round(cfg["amplitude"] * factor)
        self.off = round(cfg["offset"] * factor)
        self.noise = round(cfg["noise"] * factor)
        self.x = cfg["seed"] % 65537 or 1
        self.table = None
        if self.wave == "sine":
            a = self.amp
            t = _TABLES.get(a)
            if t is None:
                t = array("i", bytes(4 * (_N + 1)))
                for i in range(_N + 1):  # filled in place: no list of floats
                    t[i] = round(a * math.sin(2 * math.pi * i / _N))
                _TABLES[a] = t
            self.table = t  # shared by every sine of this amplitude (read-only)

    def read(self, t):
        v = self.off
        w = self.wave
        if w == "sine":
            p = self.period
            pos = (t % p) * _N
            i = pos // p
            r = pos - i * p
            a = self.table[i]
            v += a + (self.table[i + 1] - a) * r // p
        elif w == "steps":
            v += self.amp * ((t // self.period) % self.levels)
        if self.noise:
            self.x = (self.x * 75 + 74) % 65537  # ZX81 LCG: x < 2**17
            v += (self.x - 32768) * self.noise // 32768
        return v

    @micropython.native
    def read_block(self, t, period_ms, buf, n):
        # The n samples of the block that ends at t, period_ms apart, into
        # buf -> the first one's time
        t0 = t - (n - 1) * period_ms
        for i in range(n):
            buf[i] = self.read(t0 + i * period_ms)
        return t0

    def deinit(self):
        pass
