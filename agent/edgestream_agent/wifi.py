# Station WiFi for the link, on ports with network.WLAN (imported only when
# transport.wifi is configured). connect() returns at once; poll() checks
# isconnected() and calls connect() again every retry_ms while it is not.

from edgestream_agent.timebase import ticks_add, ticks_diff, ticks_ms


class Wifi:
    def __init__(self, cfg):
        # cfg: {"ssid", "password", "retry_ms"}; ok is False on a port
        # without WiFi (the unix port): the link then skips it.
        self.cfg = cfg
        self.tries = 0
        self.wlan = None
        self.ok = False
        self._next = 0
        try:
            import network
            self.wlan = network.WLAN(network.STA_IF)
            self.wlan.active(True)
            self.ok = True
        except (ImportError, AttributeError, OSError):
            return
        self.poll()

    def poll(self):
        wl = self.wlan
        now = ticks_ms()
        if wl.isconnected() or ticks_diff(now, self._next) < 0:
            return
        try:
            wl.connect(self.cfg["ssid"], self.cfg["password"])
            self.tries += 1
        except OSError:
            pass
        self._next = ticks_add(now, self.cfg["retry_ms"])
