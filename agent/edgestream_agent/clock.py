# Device time: milliseconds since the agent started until synced, then
# epoch milliseconds.
#
# Boards without a battery-backed RTC start at an arbitrary time. Windows
# are always computed on the agent's clock (ms since start, from the
# wrap-safe time.ticks_ms); the link turns a result's start/end into epoch ms
# with `offset_ms` once the clock is synced. Sources:
#   - NTP (ntp.py: SNTP over UDP, non-blocking, corrected by half the round
#     trip), loaded only when transport.ntp is configured,
#   - a time reference from the hub: the shared wire message kind "time"
#     ({"v":1,"kind":"time","epoch_ms":N}, "dev" optional; encoder.encode_time)
#     on <prefix>/<dev>/time or as a serial frame, read by wire_in.read and
#     checked by wire_in.time_reference (the link calls it):
#     accurate to the hub's delivery latency (ms on a LAN).
# Which timestamp the hub should trust: values >= EPOCH_MIN (timebase.py) are
# epoch ms (the clock was synced); smaller values are ms since the agent's
# boot, which only order the results of one boot id - for those the hub
# should stamp its own receive time. The health message says which source
# set the clock (clock_source) and how long ago (clock_age_ms).

from edgestream_agent.timebase import ticks_diff, ticks_ms

SOURCES = ("none", "ntp", "hub")


class Uptime:
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
        self._now = now or Uptime().now
        self.offset_ms = None     # epoch_ms - now(), once synced
        self.source = 0           # index into SOURCES
        self.synced_at = 0        # device ms of the last sync
        self.syncs = 0
        self.ntp = None
        if ntp is not None:
            from edgestream_agent.ntp import Ntp
            self.ntp = Ntp(self, ntp)

    @property
    def ntp_failures(self):
        return self.ntp.failures if self.ntp is not None else 0

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

    def poll(self):
        # Drive NTP (if configured); call from a scheduler task.
        if self.ntp is not None:
            self.ntp.poll()
