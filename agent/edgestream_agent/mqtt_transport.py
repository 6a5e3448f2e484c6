# The link's MQTT transport: the non-blocking client (mqtt.py) wired to the
# shared topic layout (<prefix>/<dev>/<kind>, edgestream_shared.topics).
# Imported only when transport.type is "mqtt".
#
#   results     QoS transport.mqtt.qos; with QoS 1 the offline buffer keeps
#               each record until its PUBACK (on_puback -> Link._puback)
#   status      retained "online" after every CONNACK; the last will is a
#               retained "offline", and a clean stop publishes it itself
#   metrics     QoS 0;  config/ack  QoS 1
#   config      subscribed QoS 1; time  subscribed QoS 0 -> Link.inbox
# An incoming message larger than mqtt.rx_bytes is skipped unbuffered and
# refused (a config one is nacked with its size).

from edgestream_agent import say
from edgestream_agent.link import _version
from edgestream_agent.mqtt import MQTTClient, MQTTException
from edgestream_agent.timebase import ticks_diff, ticks_ms
from edgestream_agent.wire_out import message

# Why a link went down, for the console line: "e<errno> text" for socket
# errors, "c<rc> text" for a CONNACK refusal (one string: one heap object).
_WHY = ("|e111 connection refused|e110 timed out|e104 connection reset by the broker|e113 no route to host"
        "|e101 network unreachable|e103 connection aborted|e32 broken pipe|e105 transmit buffer full"
        "|e-2 host name not found|e-3 host name not found|c1 protocol version refused by the broker"
        "|c2 client id refused|c3 broker unavailable|c4 bad user name or password|c5 not authorised|")


def _why(e):
    if e is None:
        return "closed"
    n = e.args[0] if e.args else None
    if isinstance(n, int):
        k = _WHY.find("|%s%d " % ("c" if isinstance(e, MQTTException) else "e", n))
        if k >= 0:
            return _WHY[_WHY.find(" ", k) + 1:_WHY.find("|", k + 1)]
        return ("broker refused the connection (rc %d)" if isinstance(e, MQTTException) else "error %d") % n
    return str(e)


class MqttTransport:
    acks = True  # records are released on PUBACK (QoS 1)

    def __init__(self, t, dev, boot, base, link):
        # base: "<prefix>/<dev>/", the topics' common start
        m = t["mqtt"]
        self.qos = m["qos"]
        self.base = base
        self._link = link
        ctx = None
        if m["tls"]:
            # the CA is read now: a missing or bad file stops the start, as
            # an invalid config does (nothing is sent unverified meanwhile)
            from edgestream_agent import ConfigError
            from edgestream_agent.mqtt_tls import context
            ca = m["ca_file"]
            if ca and ca[0] != "/" and link._path:
                ca = link._path[:link._path.rfind("/") + 1] + ca  # beside agent.json
            try:
                ctx = context(ca, m["tls_verify"])
            except (OSError, ValueError) as e:
                raise ConfigError("transport.mqtt.ca_file", "cannot use %r: %s" % (ca, e))
        c = MQTTClient(m["client_id"] or dev, m["host"], m["port"], user=m["user"],
                       password=m["password"], keepalive=m["keepalive_s"],
                       ssl=ctx, ssl_params={"server_hostname": m["server_hostname"]}, tx_size=m["tx_bytes"],
                       rx_size=m["rx_bytes"], max_inflight=m["max_inflight"],
                       backoff_min_ms=m["backoff_min_ms"], backoff_max_ms=m["backoff_max_ms"],
                       connect_timeout_ms=m["connect_timeout_ms"])
        self.client = c
        self._status = (base + "status").encode()
        self._results = (base + "results").encode()
        c.set_last_will(self._status, message("status", dev, boot, "state", "offline"), True, 1)
        self._online = message("status", dev, boot, "state", "online")
        self._config = (base + "config").encode()
        self._time = (base + "time").encode()
        c.set_callback(self._on_message)
        c.on_connect = self._on_connect
        c.on_disconnect = link._lost
        c.on_puback = link._puback
        c.on_oversize = self._on_oversize
        c.subscribe(self._config, 1)
        c.subscribe(self._time, 0)
        # console lines: what was said last (up / down), failures seen, when
        self._up = False
        self._fails = 0
        self._t_said = ticks_ms()
        c.connect()

    def _on_connect(self):
        self.client.publish(self._status, self._online, retain=True, qos=1)

    def _on_message(self, topic, msg):
        if topic == self._config:
            self._link.inbox(msg, "config")
        elif topic == self._time:
            self._link.inbox(msg, "time")

    def _on_oversize(self, topic, size, buf, start, end):
        # a message the client skipped: larger than its buffer (buf[start:end]
        # the start of its payload), or no heap for its copy (it fitted the
        # buffer: buf[start:end] is all of it)
        self._link.rx_refused += 1
        if topic == self._config:
            # nacked in turn with the messages before it (Link.inbox), with
            # the version its bytes give (they stay in buf until the next read)
            n = len(self.client._rx)
            version = _version(buf, start, end, size > n)
            why = None  # no heap to read it: the link says so with the free heap
            if size > n:
                try:
                    why = "payload: %d bytes is over the %d byte limit" % (size, n)
                except MemoryError:
                    why = "payload: over transport.mqtt.rx_bytes"
            self._link.inbox(why, "refused", version)

    def up(self):
        return self.client.state == 3

    def poll(self):
        c = self.client
        c.poll()
        if (c.state == 3) != self._up or c.failures != self._fails:
            self._tell(c.state == 3)

    def _tell(self, up):
        # Link up / down on the console: each change; while it stays down,
        # the first failure and then one line a minute.
        # A heap too full for the line costs the line, never the link.
        c = self.client
        now = ticks_ms()
        try:
            if up:
                say("link up mqtt %s:%d" % (c.server, c.port))
            elif self._up:
                self._t_said = now
                say("link down: %s" % _why(c.error))
            elif not self._fails or ticks_diff(now, self._t_said) >= 60000:
                self._t_said = now
                say("link down: %s (%d attempts)" % (_why(c.error), c.failures))
        except MemoryError:
            pass
        self._up = up
        self._fails = c.failures

    def send(self, payload, dup=False):
        # a results message -> packet id (QoS 1), 0 (QoS 0) or None (later)
        return self.client.publish(self._results, payload, qos=self.qos, dup=dup)

    def control(self, kind, payload):
        # kind: "ack" or "metrics" -> True when handed to the socket
        if kind == "ack":
            return self.client.publish(self.base + "config/ack", payload, qos=1) is not None
        return self.client.publish(self.base + "metrics", payload, qos=0) is not None

    def stats(self, m):
        c = self.client
        m["reconnects"] = c.connects - 1 if c.connects > 1 else 0
        m["link_failures"] = c.failures
        m["rx_oversize"] = c.rx_oversize

    def close(self):
        # a clean stop sends no will: say "offline" ourselves first
        c = self.client
        if c.state == 3:
            c.publish(self._status, message("status", self._link.dev, self._link.boot, "state", "offline"),
                      retain=True, qos=0)
        c.disconnect()
