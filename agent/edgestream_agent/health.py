# Device health: the agent's own metrics, published periodically as a wire
# "metrics" message (wire_out.message, written by the link) on <prefix>/<device>/metrics.
#
# Metric names (all numbers unless noted; the agent README lists them):
#   heap_free, heap_used      bytes (gc.mem_free / gc.mem_alloc)
#   lag_max_ms, lag_mean_ms   scheduler loop lag
#   loop_errors               task exceptions the scheduler isolated
#   samples, results          samples taken, window results produced
#   results_sent              results the transport confirmed (PUBACK / written)
#   results_dropped           results lost without ever being sent (buffer full)
#   results_dropped_unacked   sent but unconfirmed when evicted (may have arrived)
#   results_buffered          results waiting (RAM + spill)
#   results_resent            messages sent again after a reconnect (MQTT DUP)
#   reconnects                successful (re)connections after the first
#   link_failures             failed connection attempts and dropped links
#   link_up                   1 when the transport is up
#   rx_refused                incoming messages refused (malformed, oversize)
#   configs_applied           remote configs applied
#   configs_refused           remote configs nacked
#   time_syncs                time references from the hub applied
#   frame_errors              serial lines refused (garbage, CRC, cut)
#   uptime_ms                 ms since the agent started
#   config_version            version of the running config
#   clock_source              "none", "ntp" or "hub" (string)
#   clock_age_ms              ms since the last time sync, -1 if never
#   fw                        EdgeStream agent version (string)
#   mpy                       MicroPython version (string), "cpython-x.y" elsewhere
#   platform                  sys.platform (string)

import gc
import sys

from edgestream_agent import VERSION
from edgestream_agent.timebase import ticks_diff, ticks_ms


def _mpy_version():
    impl = sys.implementation
    v = impl.version
    return "%s-%d.%d.%d" % ("mpy" if impl.name == "micropython" else impl.name, v[0], v[1], v[2])


def collect(started_ms, scheduler=None, agent=None, link=None, clock=None, config_version=0):
    # -> dict of metric name -> value. Every source but the start is
    # optional. Counters only grow within a boot (samples too, across a
    # remote config: Agent.samples_gone).
    m = {}
    try:
        gc.collect()  # live heap, not garbage (a few ms, once per period)
        m["heap_free"] = gc.mem_free()
        m["heap_used"] = gc.mem_alloc()
    except AttributeError:  # CPython
        m["heap_free"] = -1
        m["heap_used"] = -1
    if scheduler is not None:
        m["lag_max_ms"] = scheduler.lag_max_ms
        m["lag_mean_ms"] = scheduler.lag_mean_ms
        m["loop_errors"] = scheduler.errors
    if agent is not None:
        m["samples"] = agent.samples
        m["results"] = agent.results
    if link is not None:
        link.metrics(m)
    if clock is not None:
        m["clock_source"] = ("none", "ntp", "hub")[clock.source]
        m["clock_age_ms"] = clock.age_ms()
    m["uptime_ms"] = ticks_diff(ticks_ms(), started_ms)
    m["config_version"] = config_version
    m["fw"] = VERSION
    m["mpy"] = _mpy_version()
    m["platform"] = sys.platform
    return m
