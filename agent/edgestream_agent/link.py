# The agent's link to the hub: window results -> offline buffer -> transport
# (MQTT or serial), config and time coming back, health going out.
#
#   link = Link(cfg, boot)                 # cfg: validated agent.json
#   agent = Agent(cfg, on_result=link.result)
#   link.attach(scheduler, agent)          # poll task + health task
#
# Every result gets the next per-boot sequence number, is encoded once (wire
# "results" message, one result each) and pushed into the offline buffer;
# poll() (a scheduler task every transport.poll_ms) drives the transport and
# drains the buffer in order while the transport accepts messages. Nothing
# here blocks: a broker that is down or slow only makes the buffer fill.
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
# and read by the agent's own small wire modules (wire.py; wire_in.py for
# messages from the hub), not the shared encoder/decoder. Messages from the
# hub are rare: the code that handles them (wire_in, remote_config, the
# validator, reconfig) is imported for each one and unloaded after it.

from array import array

from edgestream_agent import say, unload
from edgestream_agent.clock import Clock, ticks_diff, ticks_ms
from edgestream_agent.offline_buffer import OfflineBuffer
from edgestream_agent.wire import message, results

_CTRL = 4     # control messages (acks) waiting for the link, at most
# modules only a config message needs
_RX_MODULES = ("wire_in", "remote_config", "config", "reconfig")


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
        self._eb = bytearray(t["max_message"])  # one result message is encoded here
        self._ebv = memoryview(self._eb)
        self.buf = OfflineBuffer(t["buffer_bytes"], t["spill_path"], t["spill_bytes"],
                                 max_record=t["max_message"])
        self.clock = clock or Clock(t["ntp"])
        self.seq = 0
        self.results = 0          # results handed to the link
        self.too_large = 0        # results that did not fit max_message
        self.rx_refused = 0       # incoming messages refused
        self.time_syncs = 0
        self.cfg_accepted = 0     # remote configs applied
        self.cfg_refused = 0      # remote configs nacked
        self.cfg_error = None     # the last nack's reason
        self._ctrl = []           # [(kind, payload)] waiting for the link
        self._inbox = []          # [(payload, kind)] from the hub, handled by poll()
        # packet ids of results in flight, oldest first (at most max_inflight)
        m = t["mqtt"]
        self._rpids = array("H", bytes(2 * (m["max_inflight"] if m is not None else 1)))
        self._n_rpids = 0
        self.scheduler = None
        self.agent = None
        self.health_sent = 0      # health messages handed to the transport
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
        # Agent.on_result: encode with the next seq, buffer, try to send.
        seq = self.seq
        self.seq = seq + 1
        self.results += 1
        c = self.clock
        n = results(self._eb, self._devb, self.boot, seq, sensor.encode(), window.encode(),
                    c.epoch(start), c.epoch(end), names, values)
        if not n:
            self.too_large += 1
            self.buf.dropped += 1
            return
        self.buf.push(self._ebv[:n], 1)

    def poll(self):
        tx = self.tx
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
            self._rx(*self._inbox.pop(0))
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
        return self.tx is None or (not b.records and not self._n_rpids and not self._ctrl and
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

    def inbox(self, payload, kind=None):
        # The transport got a message from the hub: poll() handles it soon,
        # in order. kind "refused": a config message the transport could not
        # take (payload: the reason), nacked in its turn.
        if len(self._inbox) >= _CTRL:
            self.rx_refused += 1  # the hub floods: refuse, keep running
            if kind != "time":
                self._config_refused("busy: %d messages are waiting" % _CTRL)
            return
        self._inbox.append((payload, kind))

    def _rx(self, payload, kind=None):
        # One message from the hub. kind: "config" or "time" from the MQTT
        # topic; None over serial, where the message's own kind decides (a
        # payload that is no valid message at all is nacked as a config).
        if kind == "refused":
            self._config_refused(payload)
            return
        try:
            from edgestream_agent.wire_in import read
            try:
                m = read(payload, kind)
            except ValueError as e:  # ConfigError naming the field
                self.rx_refused += 1
                if kind != "time":
                    self._config_refused(str(e))
                return
            # the JSON text and the reader are not needed any more: their
            # heap is free before the validator loads
            payload = read = None
            if m["kind"] != "time":
                unload("wire_in")
            if m["kind"] == "time":
                self._time_message(m)
            else:
                self._config_message(m)
        except MemoryError:
            # no heap for the code that handles it: refuse, keep running
            self.rx_refused += 1
            if kind != "time":
                self._config_refused("memory: not enough heap to read the message")
        finally:
            unload(*_RX_MODULES)

    def _config_message(self, m):
        try:
            from edgestream_agent.remote_config import RemoteConfig
            agent = self.agent
            apply = (lambda c: agent.apply(c, True)) if agent is not None else None
            rc = RemoteConfig(self.dev, self.boot, self.version, self._path, validate=self._validate,
                              apply=apply)
            version, ok, err, ack = rc.handle(m)
        except MemoryError:
            # the heap could not hold the validator: refuse, keep running
            rc = m = None  # (drop the half-built handler and with it its module)
            self.rx_refused += 1
            self._config_refused("memory: not enough heap to validate a config")
            return
        if ok:
            say("config %d %s" % (version, "already running" if version == self.version else "applied"))
            self.version = version
            self.cfg_accepted += 1
        else:
            say("config %d refused: %s" % (version, err))
            self.rx_refused += 1
            self.cfg_refused += 1
            self.cfg_error = err
        self._queue("ack", ack)

    def _config_refused(self, reason):
        # a config message that could not even be read (oversize): nack it
        say("config refused: " + reason)
        self.cfg_refused += 1
        self.cfg_error = reason
        self._queue("ack", message("ack", self.dev, self.boot, "version", 0, "ok", False, "error", reason))

    def _time_message(self, m):
        try:
            self.clock.hub_message(m, self.dev)
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
        m["link_up"] = 1 if self.tx is not None and self.tx.up() else 0
        if self.tx is not None:
            self.tx.stats(m)

    def collect(self):
        # -> the health metrics dict. health.py is imported for this and
        # unloaded again: it is needed once per health_ms.
        from edgestream_agent.health import Health
        try:
            return Health(self.dev, self.boot, self._started).collect(
                self.scheduler, self.agent, self, self.clock, self.version)
        finally:
            del Health
            unload("health")

    def send_health(self):
        if self.tx is None or not self.tx.up():
            return False
        ok = self.tx.control("metrics", message("metrics", self.dev, self.boot, "metrics", self.collect()))
        if ok:
            self.health_sent += 1
        return ok

    def close(self):
        if self.tx is not None:
            self.tx.close()
