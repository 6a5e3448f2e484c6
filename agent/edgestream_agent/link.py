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
# MQTT topics (edgestream_shared.topics, prefix from transport.prefix):
#   <prefix>/<dev>/results     results, QoS transport.mqtt.qos (default 1)
#   <prefix>/<dev>/status      retained "online" after connecting; the last
#                              will is a retained "offline"
#   <prefix>/<dev>/metrics     health, QoS 0, every transport.health_ms
#   <prefix>/<dev>/config      subscribed, QoS 1: new config from the hub
#   <prefix>/<dev>/config/ack  ack / nack of a config, QoS 1
#   <prefix>/<dev>/time        subscribed: time reference from the hub
# Over serial the same messages are frames on one stream; incoming frames
# are told apart by their "kind" (config or time).

from edgestream_shared.encoder import Encoder, encode_status
from edgestream_shared.topics import Topics
from edgestream_agent.offline_buffer import OfflineBuffer
from edgestream_agent.clock import Clock, ticks_ms, ticks_diff, ticks_add

_CTRL = 4     # control messages (acks) waiting for the link, at most


class MqttTransport:
    acks = True  # records are released on PUBACK (QoS 1)

    def __init__(self, t, dev, boot, topics, link):
        from edgestream_agent.mqtt import MQTTClient
        m = t["mqtt"]
        self.qos = m["qos"]
        self.topics = topics
        self._link = link
        c = MQTTClient(m["client_id"] or dev, m["host"], m["port"], user=m["user"],
                       password=m["password"], keepalive=m["keepalive_s"],
                       ssl=True if m["tls"] else None, tx_size=m["tx_bytes"],
                       rx_size=m["rx_bytes"], max_inflight=m["max_inflight"],
                       backoff_min_ms=m["backoff_min_ms"], backoff_max_ms=m["backoff_max_ms"],
                       connect_timeout_ms=m["connect_timeout_ms"])
        self.client = c
        self._status = topics.status.encode()
        self._results = topics.results.encode()
        c.set_last_will(self._status, encode_status(dev, boot, "offline"), True, 1)
        self._online = encode_status(dev, boot, "online")
        self._config = topics.config.encode()
        self._time = (topics.prefix + "/" + dev + "/time").encode()
        c.set_callback(self._on_message)
        c.on_connect = self._on_connect
        c.on_disconnect = link._lost
        c.on_puback = link._puback
        c.on_oversize = self._on_oversize
        c.subscribe(self._config, 1)
        c.subscribe(self._time, 0)
        c.connect()

    def _on_connect(self):
        self.client.publish(self._status, self._online, retain=True, qos=1)

    def _on_message(self, topic, msg):
        if topic == self._config:
            self._link._config_message(msg)
        elif topic == self._time:
            self._link._time_message(msg)

    def _on_oversize(self, topic, size):
        self._link.rx_refused += 1
        if topic == self._config:
            self._link._config_refused("payload: %d bytes is over the %d byte limit"
                                       % (size, len(self.client._rx)))

    def up(self):
        return self.client.state == 3

    def poll(self):
        self.client.poll()

    def send(self, payload, dup=False):
        # a results message -> packet id (QoS 1), 0 (QoS 0) or None (later)
        return self.client.publish(self._results, payload, qos=self.qos, dup=dup)

    def control(self, kind, payload):
        # kind: "ack" or "metrics" -> True when handed to the socket
        if kind == "ack":
            return self.client.publish(self.topics.config_ack, payload, qos=1) is not None
        return self.client.publish(self.topics.metrics, payload, qos=0) is not None

    def stats(self, m):
        c = self.client
        m["reconnects"] = c.connects - 1 if c.connects > 1 else 0
        m["link_failures"] = c.failures
        m["rx_oversize"] = c.rx_oversize

    def close(self):
        # a clean stop sends no will: say "offline" ourselves first
        c = self.client
        if c.state == 3:
            c.publish(self._status, encode_status(self._link.dev, self._link.boot, "offline"),
                      retain=True, qos=0)
        c.disconnect()


class SerialLink:
    # adapter: SerialTransport with the Link's transport surface
    acks = False

    def __init__(self, t, link):
        from edgestream_agent.serial_link import SerialTransport
        self.tx = SerialTransport(t["serial"], on_message=link._serial_message)
        self.qos = 0

    def up(self):
        return self.tx.up()

    def poll(self):
        self.tx.poll()

    def send(self, payload, dup=False):
        return 0 if self.tx.send(payload) else None

    def control(self, kind, payload):
        return self.tx.send(payload)

    def stats(self, m):
        m["reconnects"] = 0
        m["link_failures"] = self.tx.failures
        m["frame_errors"] = self.tx.frame_errors

    def close(self):
        self.tx.close()


class Link:
    def __init__(self, cfg, boot, path=None, clock=None, validate=None):
        t = cfg["transport"]
        if t is None or "poll_ms" not in t:
            from edgestream_agent.link_config import validate as lv
            t = lv(t)
        self.t = t
        self.dev = cfg["device"]
        self.boot = boot
        self.version = cfg.get("version", 0)
        self.topics = Topics(self.dev, t["prefix"])
        self.enc = Encoder(self.dev, boot, t["max_message"])
        self.buf = OfflineBuffer(t["buffer_bytes"], t["spill_path"], t["spill_bytes"],
                                 max_record=t["max_message"])
        self.clock = clock or Clock(t["ntp"])
        self.seq = 0
        self.results = 0          # results handed to the link
        self.too_large = 0        # results that did not fit max_message
        self.rx_refused = 0       # incoming messages refused
        self.time_syncs = 0
        self._ctrl = []           # [(kind, payload)] waiting for the link
        self._rpids = [0] * 64    # packet ids of results in flight, oldest first
        self._n_rpids = 0
        self.scheduler = None
        self.agent = None
        self.health = None
        self.remote = None
        self._path = path
        self._validate = validate
        self._wlan = None
        self._wifi_next = 0
        self._wifi_tries = 0
        self._wifi()
        kind = t["type"]
        if kind == "mqtt":
            self.tx = MqttTransport(t, self.dev, boot, self.topics, self)
        elif kind == "serial":
            self.tx = SerialLink(t, self)
        else:
            self.tx = None

    # -- wiring ----------------------------------------------------------------
    def attach(self, scheduler, agent=None):
        # Register the link's tasks; with an agent, remote config applies to
        # it and health reports its counters.
        from edgestream_agent.health import Health
        from edgestream_agent.remote_config import RemoteConfig
        self.scheduler = scheduler
        self.agent = agent
        if agent is not None and getattr(agent, "clock", None) is not None:
            self.clock._now = agent.clock
        self.health = Health(self.dev, self.boot)
        self.remote = RemoteConfig(self.dev, self.boot, self.version, self._path,
                                   validate=self._validate,
                                   apply=agent.apply if agent is not None else None)
        scheduler.every(self.t["poll_ms"], self.poll, "link")
        if self.t["health_ms"]:
            scheduler.every(self.t["health_ms"], self.send_health, "health")

    # -- results -----------------------------------------------------------------
    def result(self, sensor, window, start, end, names, values):
        # Agent.on_result: encode with the next seq, buffer, try to send.
        seq = self.seq
        self.seq = seq + 1
        self.results += 1
        e = self.enc
        e.begin(b"results")
        c = self.clock
        if not e.add_result(seq, sensor, window, c.epoch(start), c.epoch(end), names, values):
            self.too_large += 1
            self.buf.dropped += 1
            return
        self.buf.push(e.finish(), 1)

    def poll(self):
        tx = self.tx
        if self._wlan is not None:
            self._wifi()
        self.clock.poll()
        if tx is None:
            # no transport: results only count (and drop) in the buffer
            return
        tx.poll()
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

    # -- control messages ----------------------------------------------------------
    def _queue(self, kind, payload):
        if len(self._ctrl) >= _CTRL:
            self._ctrl.pop(0)
        self._ctrl.append((kind, payload))

    def _config_message(self, payload):
        if self.remote is None:
            self.rx_refused += 1
            return
        version, ok, err, ack = self.remote.handle(payload)
        if not ok:
            self.rx_refused += 1
        else:
            self.version = version
        self._queue("ack", ack)

    def _config_refused(self, reason):
        from edgestream_shared.encoder import encode_ack
        if self.remote is not None:
            self.remote.refused += 1
        self._queue("ack", encode_ack(self.dev, self.boot, 0, False, reason))

    def _time_message(self, payload):
        try:
            self.clock.hub_message(payload)
            self.time_syncs += 1
        except ValueError:
            self.rx_refused += 1

    def _serial_message(self, payload):
        # frames from the hub: a time reference or a config
        if b'"kind":"time"' in payload or b'"kind": "time"' in payload:
            self._time_message(payload)
        else:
            self._config_message(payload)

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
        return self.health.collect(self.scheduler, self.agent, self, self.clock, self.version)

    def send_health(self):
        if self.tx is None or self.health is None or not self.tx.up():
            return False
        return self.tx.control("metrics", self.health.encode(self.collect()))

    # -- WiFi ----------------------------------------------------------------------
    def _wifi(self):
        # (Re)connect the station interface on ports with network.WLAN;
        # connect() returns at once, isconnected() is polled here.
        w = self.t["wifi"]
        if w is None:
            return
        if self._wlan is None:
            try:
                import network
                self._wlan = network.WLAN(network.STA_IF)
                self._wlan.active(True)
            except (ImportError, AttributeError, OSError):
                self.t["wifi"] = None  # this port has no WiFi: nothing to do
                return
        wl = self._wlan
        now = ticks_ms()
        if wl.isconnected() or ticks_diff(now, self._wifi_next) < 0:
            return
        try:
            wl.connect(w["ssid"], w["password"])
            self._wifi_tries += 1
        except OSError:
            pass
        self._wifi_next = ticks_add(now, w["retry_ms"])

    def close(self):
        if self.tx is not None:
            self.tx.close()
