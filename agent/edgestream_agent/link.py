# The agent's link to the hub: window results -> offline buffer -> transport
# (MQTT or serial), config and time coming back, health going out.
#
#   link = Link(cfg, boot)                 # cfg: validated agent.json
#   agent = Agent(cfg, on_result=link.result)
#   link.attach(scheduler, agent)          # poll task + health task
#
# Every result gets the next per-boot sequence number and is encoded once,
# as an item of the open "results" message (the encode buffer, max_message
# bytes). Results that close together - in the same poll period, e.g. every
# sensor's window at a boundary - share one message: poll() closes it once
# it has been open for poll_ms (or when the next item does not fit, or at
# 255 items) and pushes it into the offline buffer as one record. The hub's
# cost is per message, and so is the board's. poll() (a scheduler task
# every transport.poll_ms) then drives the transport and drains the buffer
# in order while the transport accepts messages. Nothing here blocks: a
# broker that is down or slow only makes the buffer fill.
#
# MQTT topics (the shared layout, edgestream_shared.topics; prefix transport.prefix):
#   <prefix>/<dev>/results     results, QoS transport.mqtt.qos (default 1)
#   <prefix>/<dev>/status      retained "online" after connecting; the last
#                              will is a retained "offline"
#   <prefix>/<dev>/metrics     health, QoS 0, every transport.health_ms
#   <prefix>/<dev>/config      subscribed, QoS 1: new config from the hub
#   <prefix>/<dev>/config/ack  ack / nack of a config, QoS 1
#   <prefix>/<dev>/time        subscribed: time reference from the hub
# Over serial the same messages are frames on one stream; an incoming frame
# says what it is by its "kind" (config or time).
#
# Memory: only the transport in use is imported (mqtt_transport + mqtt, or
# serial_link), WiFi and NTP code only when configured. Messages are written
# and read by the agent's own small wire modules (wire_out.py; wire_in.py for
# messages from the hub), not the shared encoder/decoder. Messages from the
# hub are rare: the code that handles them (wire_in, remote_config, the
# validator, reconfig) is imported for each one and unloaded after it, one
# at a time where it can (see _rx).

from array import array

import sys

from edgestream_agent import need, no_heap, say, unload
from edgestream_agent.clock import Clock
from edgestream_agent.offline_buffer import OfflineBuffer
from edgestream_agent.timebase import ticks_diff, ticks_ms
from edgestream_agent.wire_out import begin, item, message

_CTRL = 4     # control messages (acks) waiting for the link, at most
_BUSY = "busy: %d messages are waiting" % _CTRL
_NEXT = 0  # _rx's kind for "the next message in the inbox"
_ITEMS = 255  # results in one message, at most (an offline buffer record counts them in a byte)
# modules only a message from the hub needs (and the packages that build
# filter chains and sources, which a new config imports again)
_RX_MODULES = ("wire_in", "remote_config", "config", "reconfig", "filters", "sources")


class Link:
    def __init__(self, cfg, boot, path=None, clock=None, validate=None):
        t = cfg["transport"]
        if t is None or "poll_ms" not in t:
            from edgestream_agent.config import validate_transport
            t = validate_transport(t)
        self.poll_ms = t["poll_ms"]      # (the transport dict itself is not kept)
        self.health_ms = t["health_ms"]
        self.dev = cfg["device"]
        self.boot = boot
        self.version = cfg.get("version", 0)
        self.base = t["prefix"] + "/" + self.dev + "/"  # topic of kind k: base + k
        self._devb = self.dev.encode()
        # the transport's code first, its buffers after: long-lived blocks
        # allocated in that order leave the heap less fragmented
        kind = t["type"]
        if kind == "serial" and t["serial"]["port"] == "stdio":
            import edgestream_agent
            edgestream_agent.console = False  # the console is the link: no text on it
        if kind == "mqtt":
            from edgestream_agent.mqtt_transport import MqttTransport as tx
        elif kind == "serial":
            from edgestream_agent.serial_link import SerialTransport as tx
        else:
            tx = None
        self._eb = bytearray(t["max_message"])  # the open results message is encoded here
        self._ebv = memoryview(self._eb)
        self._bn = 0              # its length so far (0: no message open)
        self._bk = 0              # its items
        self._bt = 0              # ticks_ms when it was opened
        self.buf = OfflineBuffer(t["buffer_bytes"], t["spill_path"], t["spill_bytes"],
                                 max_record=t["max_message"])
        self.clock = clock or Clock(t["ntp"])
        self.seq = 0
        self.results = 0          # results handed to the link
        self.rx_refused = 0       # incoming messages refused
        self.time_syncs = 0       # time references applied
        self.cfg_applied = 0      # remote configs applied
        self.cfg_refused = 0      # remote configs nacked
        self._ctrl = []           # [(kind, payload)] waiting for the link
        self._inbox = []          # [(payload, kind, version)] from the hub, handled by poll()
        # packet ids of results in flight, oldest first (at most max_inflight)
        m = t["mqtt"]
        self._rpids = array("H", bytes(2 * (m["max_inflight"] if m is not None else 1)))
        self._n_rpids = 0
        self.scheduler = None
        self.agent = None
        self._started = ticks_ms()
        self._err_t = None        # when the last task error was printed
        self._err_n = 0           # task errors not printed since
        self._path = path
        self._validate = validate  # remote config: raw dict -> normalised (default config.validate)
        self.wifi = None
        if t["wifi"] is not None:
            from edgestream_agent.wifi import Wifi
            self.wifi = Wifi(t["wifi"])
            if not self.wifi.ok:
                self.wifi = None  # this port has no WiFi: nothing to do
        if kind == "mqtt":
            self.tx = tx(t, self.dev, boot, self.base, self)
        elif kind == "serial":
            self.tx = tx(t["serial"], on_message=self.inbox)
        else:
            self.tx = None

    # -- wiring ----------------------------------------------------------------
    def attach(self, scheduler, agent=None):
        # Register the link's tasks; with an agent, remote config applies to
        # it and health reports its counters.
        self.scheduler = scheduler
        self.agent = agent
        if agent is not None and getattr(agent, "clock", None) is not None:
            self.clock._now = agent.clock
        self._started = ticks_ms()
        scheduler.on_error = self._task_error
        scheduler.every(self.poll_ms, self.poll, "link")
        if self.health_ms:
            scheduler.every(self.health_ms, self.send_health, "health")

    def _task_error(self, task, e):
        # A task raised (the scheduler runs on): one console line per 10 s
        # at most, saying how many more there were.
        now = ticks_ms()
        if self._err_t is not None and ticks_diff(now, self._err_t) < 10000:
            self._err_n += 1
            return
        n = self._err_n
        self._err_t = now
        self._err_n = 0
        say("error in task %s: %s: %s%s" % (task.name, e.__class__.__name__, e,
                                             " (and %d more in the last 10 s)" % n if n else ""))

    # -- results -----------------------------------------------------------------
    def result(self, sensor, window, start, end, names, values):
        # Agent.on_result: the result, with the next seq, becomes an item of
        # the open message (poll() pushes it into the buffer). A result that
        # does not fit a message of its own is counted as dropped.
        seq = self.seq
        self.seq = seq + 1
        self.results += 1
        c = self.clock
        sensor = sensor.encode()
        window = window.encode()
        for _ in range(2):
            if not self._bk:
                self._bn = begin(self._eb, self._devb, self.boot)
                self._bt = ticks_ms()
            n = item(self._eb, self._bn, self._bk, seq, sensor, window, c.epoch(start), c.epoch(end),
                     names, values)
            if n:
                self._bn = n
                self._bk += 1
                if self._bk >= _ITEMS:
                    self._close()
                return
            if not self._bk:
                break  # too large even alone
            self._close()  # full: out it goes, the result opens the next one
        self.buf.dropped += 1

    def _close(self):
        # the open message -> one offline buffer record
        n = self._bn
        self._eb[n:n + 2] = b"]}"
        self.buf.push(self._ebv[:n + 2], self._bk)
        self._bn = self._bk = 0

    def poll(self):
        tx = self.tx
        if self._bk and ticks_diff(ticks_ms(), self._bt) >= self.poll_ms:
            self._close()
        if self.wifi is not None:
            self.wifi.poll()
        self.clock.poll()
        if tx is None:
            # no transport: results only count (and drop) in the buffer
            return
        tx.poll()
        if self._inbox:
            # one message from the hub per poll, outside the transport's
            # receive path (whose frames and buffers are gone by now)
            # (taken off the inbox by _rx itself, so that no frame here
            # holds the message's bytes while it is handled)
            self._rx(None, _NEXT)
        if not tx.up():
            return
        while self._ctrl:
            kind, payload = self._ctrl[0]
            if not tx.control(kind, payload):
                break
            self._ctrl.pop(0)
        buf = self.buf
        for _ in range(32):  # bounded per poll
            mv = buf.peek()
            if mv is None:
                break
            if tx.acks and tx.qos and self._n_rpids >= len(self._rpids):
                break
            pid = tx.send(mv, buf.peek_dup)
            if pid is None:
                break  # window or socket buffer full: next poll
            buf.mark_sent()
            if pid:
                self._rpids[self._n_rpids] = pid
                self._n_rpids += 1
            else:
                buf.ack()  # QoS 0 / serial: sent is as good as it gets

    def drained(self):
        # True when nothing waits to be sent or confirmed (or there is no
        # transport to send it).
        b = self.buf
        return self.tx is None or (not self._bk and not b.records and not self._n_rpids and not self._ctrl and
                                   (b._spill is None or not b._spill.records))

    def _puback(self, pid):
        n = self._n_rpids
        if n and self._rpids[0] == pid:
            r = self._rpids
            for i in range(n - 1):
                r[i] = r[i + 1]
            self._n_rpids = n - 1
            self.buf.ack()

    def _lost(self):
        # the connection dropped: everything unacknowledged goes again
        self._n_rpids = 0
        self.buf.rewind()

    # -- messages from the hub -------------------------------------------------------
    def _queue(self, kind, payload):
        if len(self._ctrl) >= _CTRL:
            self._ctrl.pop(0)
        self._ctrl.append((kind, payload))

    def inbox(self, payload, kind=None, version=0):
        # The transport got a message from the hub: poll() handles it soon,
        # in order. kind "refused": a config message the transport could not
        # take (payload: the reason, None for no heap to read it; version:
        # read from the bytes that came), nacked in its turn. Never raises.
        if len(self._inbox) >= _CTRL:
            self.rx_refused += 1  # the hub floods: refuse, keep running
            if kind != "time":
                self.cfg_refused += 1
                self._answer(version if kind == "refused" else _version(payload), None, _BUSY)
            return
        try:
            self._inbox.append((payload, kind, version))
        except MemoryError:
            self.rx_refused += 1  # a heap too full even for that: counted, not nacked
            if kind != "time":
                self.cfg_refused += 1

    def _rx(self, payload, kind=None, version=0):
        # One message from the hub. kind: "config" or "time" from the MQTT
        # topic; None over serial, where the message's own kind decides (a
        # payload that is no valid message at all is nacked as a config).
        # version: a refused one's, read by the transport. Never raises, and
        # leaves the heap as it found it: the code loaded for the message is
        # unloaded after it, and what a refused config loaded (filter,
        # window, source modules) too. kind _NEXT: the inbox's next message.
        if kind is _NEXT:
            payload, kind, version = self._inbox.pop(0)
        if kind == "refused":
            self.cfg_refused += 1
            self._answer(version, None, payload, None if payload else "read the message")
            return
        if kind != "time":
            # the version first, from the bytes (allocates nothing): a nack
            # for any reason, memory included, carries it
            version = _version(payload)
        before = cfg = cfg2 = None
        done = None  # "applied" / "already running" once the agent runs it: an ack, whatever comes after
        err = None
        what = "read the message"
        try:
            before = [k for k in sys.modules if k.startswith("edgestream_agent.")]
            read = need("wire_in", "read")
            try:
                m = read(payload, kind)
            except ValueError as e:  # ConfigError naming the field
                m = None
                err = str(e)
            # the JSON text and the reader are gone before the validator loads
            payload = read = None
            if m is not None and m["kind"] == "time":
                self._time_message(m)
                return
            unload("wire_in")
            if m is not None:
                what = "load the config code"
                version, cfg, err = need("remote_config", "admit")(m, self.dev, self.version)
                m = None
                if cfg is None and err is None:
                    done = "already running"
                # the validator comes next: remote_config leaves the heap first
                unload("remote_config")
            if cfg is not None:
                what = "validate the config"
                loaded = "edgestream_agent.config" in sys.modules
                try:
                    cfg2 = (self._validate or need("config", "validate"))(cfg)
                except ValueError as e:  # ConfigError: the message starts with the field
                    cfg2 = None
                    err = str(e)
                # the validator's code leaves before the new sensors are
                # built (unless it was loaded before the message came)
                if not loaded:
                    unload("config")
                if cfg2 is not None:
                    # the raw config waits for the file as JSON text (smaller)
                    if self._path:
                        from json import dumps
                        cfg = dumps(cfg)
                    else:
                        cfg = None
                    what = "apply the config"
                    agent = self.agent
                    ok, err = need("remote_config", "commit")(
                        cfg2, cfg, self._path, (lambda c: agent.apply(c, True)) if agent is not None else None)
                    if ok:
                        done = "applied"
                cfg = cfg2 = None
        except MemoryError:
            # no heap for the code or the data: refused (below, once the code
            # is unloaded), unless the agent already runs the config
            m = cfg = cfg2 = None
            if done is None:
                err = None
        finally:
            unload(*_RX_MODULES)
            if done is None and before is not None:
                # a refused config may have loaded modules that nothing uses
                unload(*[k for k in sys.modules if k.startswith("edgestream_agent.") and k not in before])
            before = None
        if done is not None:
            self.version = version
            self.cfg_applied += 1
            self._answer(version, done, err)  # (err: a note when agent.json could not be written)
            return
        self.rx_refused += 1
        if kind == "time":
            return
        self.cfg_refused += 1
        self._answer(version, None, err, None if err else what)

    def _answer(self, version, done, err, what=None):
        # The ack of a config message, queued for the link, and its console
        # line: done "applied" / "already running", or None for a nack whose
        # reason is err, or with `what` the step the heap could not hold.
        # Never raises: a heap too full even for the ack costs the ack (the
        # refusal is counted in configs_refused), never the link.
        try:
            if what is not None:
                err = no_heap(what)
            self._queue("ack", message("ack", self.dev, self.boot, "version", version, "ok", done is not None,
                                       "error", err))
            say("config %d %s" % (version, done if done is not None else "refused: " + err))
        except MemoryError:
            pass

    def _time_message(self, m):
        from edgestream_agent.wire_in import time_reference
        try:
            time_reference(self.clock, m, self.dev)
            self.time_syncs += 1
        except ValueError:
            self.rx_refused += 1

    # -- health --------------------------------------------------------------------
    def metrics(self, m):
        b = self.buf
        m["results_sent"] = b.acked
        m["results_dropped"] = b.dropped
        m["results_dropped_unacked"] = b.dropped_unacked
        m["results_buffered"] = b.items + (b._spill.records if b._spill is not None else 0)
        m["results_resent"] = b.resent
        m["rx_refused"] = self.rx_refused
        m["configs_applied"] = self.cfg_applied
        m["configs_refused"] = self.cfg_refused
        m["time_syncs"] = self.time_syncs
        m["link_up"] = 1 if self.tx is not None and self.tx.up() else 0
        if self.tx is not None:
            self.tx.stats(m)

    def collect(self):
        # -> the health metrics dict. health.py is imported for this and
        # unloaded again: it is needed once per health_ms.
        collect = need("health", "collect")
        try:
            return collect(self._started, self.scheduler, self.agent, self, self.clock, self.version)
        finally:
            del collect
            unload("health")

    def send_health(self):
        if self.tx is None or not self.tx.up():
            return False
        return self.tx.control("metrics", message("metrics", self.dev, self.boot, "metrics", self.collect()))

    def close(self):
        if self.tx is not None:
            self.tx.close()


def _version(p, i=0, n=-1, cut=False):
    # The "version" of a config message, read from its JSON bytes p[i:n]
    # (all of p by default) before anything that can run out of heap
    # (nothing here allocates, for versions below 2**30): the key at the top
    # level (not config.version), in 1..2**31-1 -> int, else 0. cut: the
    # message goes on past n (a number that reaches n is not whole).
    if n < 0:
        try:
            n = len(p)
        except TypeError:
            return 0
    key = b'"version"'
    d = 0
    s = False
    while i < n:
        c = p[i]
        if s:
            if c == 92:  # backslash: skip the escaped byte
                i += 1
            elif c == 34:
                s = False
        elif c == 34:
            s = True
            if d == 1:
                j = 0
                while j < 9 and i + j < n and p[i + j] == key[j]:
                    j += 1
                if j == 9:
                    i += 8  # on the closing quote
                    s = False
                    k = i + 1
                    while k < n and (p[k] == 32 or 9 <= p[k] <= 13):
                        k += 1
                    if k < n and p[k] == 58:  # a key (not a value that reads "version")
                        k += 1
                        while k < n and (p[k] == 32 or 9 <= p[k] <= 13):
                            k += 1
                        v = 0
                        while k < n and 48 <= p[k] <= 57 and v < 214748365:
                            v = v * 10 + p[k] - 48
                            k += 1
                        return v if 0 < v < 2147483648 and (not cut if k >= n else not 48 <= p[k] <= 57) else 0
        elif c == 123 or c == 91:
            d += 1
        elif c == 125 or c == 93:
            d -= 1
        i += 1
    return 0
