# Device time: milliseconds since the agent started until synced, then
# epoch milliseconds.
#
# Boards without a battery-backed RTC start at an arbitrary time. Windows
# are always computed on the agent's clock (ms since start, from the
# wrap-safe time.ticks_ms); the link turns a result's start/end into epoch ms
# with `offset_ms` once the clock is synced. Sources:
#   - NTP (SNTP over UDP, non-blocking: a request goes out, the reply is
#     picked up by a later poll(); ntptime.settime() would block instead),
#     corrected by half the round trip,
#   - a time reference the hub sends ({"v":1,"kind":"time","epoch_ms":N} on
#     <prefix>/<device>/time or as a serial frame): accurate to the hub's
#     delivery latency (ms on a LAN).
# Which timestamp the hub should trust: values >= EPOCH_MIN (year 2000) are
# epoch ms (the clock was synced); smaller values are ms since the agent's
# boot, which only order the results of one boot id - for those the hub
# should stamp its own receive time. The health message says which source
# set the clock (clock_source) and how long ago (clock_age_ms).

import socket
import struct
import time

try:
    from time import ticks_ms, ticks_diff, ticks_add
except ImportError:  # CPython
    _T0 = time.monotonic()

    def ticks_ms():
        return int((time.monotonic() - _T0) * 1000)

    def ticks_diff(a, b):
        return a - b

    def ticks_add(a, b):
        return a + b

EPOCH_MIN = 946684800000          # 2000-01-01 in epoch ms: below it, ticks
_NTP_DELTA = 2208988800           # seconds from 1900 (NTP) to 1970 (Unix)
SOURCES = ("none", "ntp", "hub")


class _Uptime:
    # ms since construction from the wrapping ticks_ms (never wraps itself)
    def __init__(self):
        self._last = ticks_ms()
        self.ms = 0

    def now(self):
        n = ticks_ms()
        self.ms += ticks_diff(n, self._last)
        self._last = n
        return self.ms


class Clock:
    # now: the agent's clock (ms since start, never wrapping: Agent.clock);
    # results carry its values, so the offset is taken against it.
    def __init__(self, ntp=None, now=None):
        self._now = now or _Uptime().now
        self.offset_ms = None     # epoch_ms - now(), once synced
        self.source = 0           # index into SOURCES
        self.synced_at = 0        # ticks of the last sync
        self.syncs = 0
        self.ntp_failures = 0
        self._ntp = ntp           # {"host","port","every_ms","timeout_ms"} or None
        self._sock = None
        self._addr = None
        self._sent_at = 0
        self._next_ntp = ticks_ms()
        self._pkt = bytearray(48)

    def synced(self):
        return self.offset_ms is not None

    def epoch(self, t_ms):
        # device ms -> epoch ms (or unchanged when not synced)
        if self.offset_ms is None:
            return t_ms
        return t_ms + self.offset_ms

    def now(self):
        return self.epoch(self._now())

    def set_reference(self, epoch_ms, source=2, at=None):
        # epoch_ms was the time at device time `at` (default: now)
        if at is None:
            at = self._now()
        self.offset_ms = epoch_ms - at
        self.source = source
        self.synced_at = at
        self.syncs += 1

    def age_ms(self):
        if self.offset_ms is None:
            return -1
        return self._now() - self.synced_at

    # -- hub reference ------------------------------------------------------
    def hub_message(self, payload):
        # {"v":1,"kind":"time","epoch_ms":N} -> True when applied. Raises
        # ValueError with the field for anything else.
        import json
        try:
            m = json.loads(payload)
        except Exception:
            raise ValueError("payload: not valid JSON")
        if type(m) is not dict or m.get("kind") != "time" or m.get("v") != 1:
            raise ValueError("kind: expected a v1 'time' message")
        e = m.get("epoch_ms")
        if type(e) is not int or e < EPOCH_MIN:
            raise ValueError("epoch_ms: expected an integer >= %d" % EPOCH_MIN)
        self.set_reference(e, 2)
        return True

    # -- NTP ------------------------------------------------------------------
    def poll(self):
        # Drive a non-blocking SNTP exchange; call from a scheduler task.
        # Network errors are counted and retried at the next period.
        n = self._ntp
        if n is None:
            return
        now = ticks_ms()
        try:
            if self._sock is None:
                if ticks_diff(now, self._next_ntp) < 0:
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
                if e.args and e.args[0] in (11, 115, 119):
                    if ticks_diff(now, self._sent_at) > n["timeout_ms"]:
                        raise OSError(110)
                    return
                raise
            self._close(n["every_ms"])
            if not data or len(data) < 48 or data[0] & 7 not in (4, 5):
                self.ntp_failures += 1
                return
            secs, frac = struct.unpack("!II", data[40:48])
            if secs == 0:
                self.ntp_failures += 1  # kiss-o'-death or unsynchronised server
                return
            rtt = ticks_diff(now, self._sent_at)
            epoch_ms = (secs - _NTP_DELTA) * 1000 + (frac * 1000 >> 32)
            # the server's time stamps the middle of the round trip
            self.set_reference(epoch_ms + rtt // 2, 1)
        except OSError:
            self.ntp_failures += 1
            # retry sooner than a full period after a failure
            self._close(min(n["every_ms"], 30000))

    def _close(self, wait_ms):
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock = None
        self._next_ntp = ticks_add(ticks_ms(), wait_ms)
