# Non-blocking SNTP for the agent's Clock (only imported when
# transport.ntp is configured). A request goes out, the reply is picked up
# by a later poll(); ntptime.settime() would block instead. The server's
# time stamps the middle of the round trip, so half of it is added.
# Network errors are counted (`failures`) and retried sooner than a full
# period (at most 30 s later).

import socket
import struct

from edgestream_agent.timebase import ticks_add, ticks_diff, ticks_ms

_NTP_DELTA = 2208988800           # seconds from 1900 (NTP) to 1970 (Unix)
_EAGAIN = (11, 115, 119)


class Ntp:
    def __init__(self, clock, cfg):
        # cfg: {"host", "port", "every_ms", "timeout_ms"}
        self.clock = clock
        self.cfg = cfg
        self.failures = 0
        self._sock = None
        self._addr = None
        self._sent_at = 0
        self._next = ticks_ms()
        self._pkt = bytearray(48)

    def poll(self):
        n = self.cfg
        now = ticks_ms()
        try:
            if self._sock is None:
                if ticks_diff(now, self._next) < 0:
                    return
                if self._addr is None:
                    self._addr = socket.getaddrinfo(n["host"], n["port"])[0][-1]
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.setblocking(False)
                self._sock = s
                p = self._pkt
                for i in range(48):
                    p[i] = 0
                p[0] = 0x1B  # LI 0, version 3, mode 3 (client)
                s.sendto(p, self._addr)
                self._sent_at = now
                return
            try:
                data = self._sock.recv(48)
            except OSError as e:
                if e.args and e.args[0] in _EAGAIN:
                    if ticks_diff(now, self._sent_at) > n["timeout_ms"]:
                        raise OSError(110)
                    return
                raise
            self._close(n["every_ms"])
            if not data or len(data) < 48 or data[0] & 7 not in (4, 5):
                self.failures += 1
                return
            secs, frac = struct.unpack("!II", data[40:48])
            if secs == 0:
                self.failures += 1  # kiss-o'-death or unsynchronised server
                return
            rtt = ticks_diff(now, self._sent_at)
            epoch_ms = (secs - _NTP_DELTA) * 1000 + (frac * 1000 >> 32)
            self.clock.set_reference(epoch_ms + rtt // 2, 1)
        except OSError:
            self.failures += 1
            self._close(min(n["every_ms"], 30000))

    def _close(self, wait_ms):
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock = None
        self._next = ticks_add(ticks_ms(), wait_ms)
