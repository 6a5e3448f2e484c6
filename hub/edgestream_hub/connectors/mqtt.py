"""MQTT source and sink (paho-mqtt), decoding the shared wire protocol.

The source subscribes to topic filters (wildcards allowed) with QoS 0 or 1 on
a persistent session (``clean_session: false`` with a stable client id, the
default), so QoS 1 messages published while the hub is down are queued by
the broker and delivered when it comes back. A message is acknowledged only
after its records are queued in the hub; a full pipeline holds the message
(and the broker's queue grows instead of the hub's memory). It reconnects
with exponential backoff (also when the broker is unreachable at start),
supports TLS and user/password, and MQTT 5 shared subscriptions
(``shared_group``). With ``decode: wire`` each payload is decoded, flattened
and checked against the topic, and per-device boot/seq tracking counts gaps,
duplicates (dropped) and reboots. An undecodable payload goes to the
dead-letter sink with the reason.

The sink publishes one JSON message per record (``topic`` may name record
fields: ``hub/{device}/avg``) or one JSON array per batch and topic.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
from typing import Any

from edgestream_hub.components import ComponentContext, Emit, Sink, Source
from edgestream_hub.errors import ComponentError, StartError
from edgestream_hub.registry import component
from edgestream_hub.spec import Checker, Field, Spec

Record = dict[str, Any]
_FIELD = re.compile(r"\{([A-Za-z0-9_.-]+)\}")


def _client(conn: dict[str, Any], client_id: str, clean: bool, label: str) -> Any:
    import paho.mqtt.client as mqtt

    v5 = conn["protocol"] == "5"
    kw: dict[str, Any] = {"client_id": client_id, "protocol": mqtt.MQTTv5 if v5 else mqtt.MQTTv311}
    if not v5:
        kw["clean_session"] = clean
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kw)
    if conn.get("username") is not None:
        c.username_pw_set(conn["username"], conn.get("password"))
    tls = conn.get("tls")
    if tls is not None:
        try:
            c.tls_set(ca_certs=tls.get("ca_file"), certfile=tls.get("cert_file"), keyfile=tls.get("key_file"),
                      cert_reqs=ssl.CERT_REQUIRED)
        except (OSError, ssl.SSLError, ValueError) as e:
            raise StartError(label, f"TLS setup failed: {e}") from e
        if tls.get("insecure"):
            c.tls_insecure_set(True)
    c.reconnect_delay_set(max(1, conn["reconnect_min"] // 1000), max(1, conn["reconnect_max"] // 1000))
    c.connect_timeout = conn["connect_timeout"] / 1000
    return c


def _connect_async(c: Any, conn: dict[str, Any], clean: bool) -> None:
    kw: dict[str, Any] = {}
    if conn["protocol"] == "5":
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.CONNECT)
        if not clean:
            props.SessionExpiryInterval = 0xFFFFFFFF  # keep the session (and queued messages) forever
        kw = {"clean_start": clean, "properties": props}
    c.connect_async(conn["host"], conn["port"], keepalive=max(1, conn["keepalive"] // 1000), **kw)


def _connection(ctx: ComponentContext, name: str) -> dict[str, Any]:
    conn = ctx.connections.get(name)
    if conn is None:
        raise StartError(ctx.label, f"no MQTT connection {name!r} (define `broker:` or `connections.{name}`)")
    return conn


class MqttSource(Source):
    def __init__(self, config: dict[str, Any], ctx: ComponentContext) -> None:
        self.ctx = ctx
        self.conn = _connection(ctx, config["connection"])
        self.topics = config["topics"]
        self.qos = config["qos"]
        self.clean = config["clean_session"]
        self.client_id = config["client_id"] or f"edgestream-hub-{ctx.label}"
        group = config["shared_group"]
        self.filters = [f"$share/{group}/{t}" if group else t for t in self.topics]
        self.format = config["decode"]
        self.prefix = config["prefix"]
        self.max_payload = config["max_payload"]
        self._decoder: Any = None
        if self.format == "wire":
            from edgestream_hub.wire import WireDecoder

            self._decoder = WireDecoder(prefix=self.prefix)
        self._emit: Emit | None = None
        self._client: Any = None
        self._lock = threading.Lock()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self._was_connected = False
        self._stopping = False

    def open(self) -> None:
        self._client = _client(self.conn, self.client_id, self.clean, self.ctx.label)
        c = self._client
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_connect_fail = self._on_connect_fail
        c.on_message = self._on_message
        c.on_subscribe = lambda *a: self.subscribed.set()

    def start(self, emit: Emit) -> None:
        self._emit = emit
        _connect_async(self._client, self.conn, self.clean)
        self._client.loop_start()

    def stop(self) -> None:
        c = self._client
        if c is not None:
            self._stopping = True
            c.disconnect()
            c.loop_stop()
            self._client = None

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any = None) -> None:
        if reason.is_failure:
            self.ctx.log.error("broker %s:%s refused the connection: %s", self.conn["host"], self.conn["port"], reason)
            return
        if self._was_connected:
            self.ctx.count("edgestream_source_reconnects_total")
        self._was_connected = True
        self.ctx.log.info("connected to %s:%s, subscribing to %s (QoS %d)", self.conn["host"], self.conn["port"],
                          ", ".join(self.filters), self.qos)
        client.subscribe([(f, self.qos) for f in self.filters])
        self.connected.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any = None) -> None:
        self.connected.clear()
        if not self._stopping and reason.is_failure:
            self.ctx.log.warning("lost the broker (%s); reconnecting with backoff", reason)

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        self.ctx.count("edgestream_source_reconnects_total")
        self.ctx.log.warning("broker %s:%s unreachable; retrying with backoff", self.conn["host"], self.conn["port"])

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        payload = msg.payload
        try:
            records = self.decode(payload, msg.topic)
        except ValueError as e:  # WireError is a ValueError
            self.ctx.count("edgestream_source_decode_errors_total")
            self.ctx.dead_letter({"topic": msg.topic, "payload": payload}, f"mqtt {msg.topic}: {e}")
            return
        if records:
            self._emit(records)  # type: ignore[misc]  # blocks while the pipelines are full

    def decode(self, payload: bytes, topic: str) -> list[Record]:
        """Payload -> records; raises ValueError (WireError) naming what was wrong."""
        if len(payload) > self.max_payload:
            raise ValueError(f"payload: {len(payload)} bytes is over the {self.max_payload} byte limit")
        if self._decoder is not None:
            records = self._decoder.decode(payload, topic)
            self._decoder.count_into(self.ctx)
            return records
        if self.format == "raw":
            return [{"topic": topic, "payload": payload.decode("utf-8", "backslashreplace")}]
        try:
            data = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError(f"payload: not JSON ({e})") from None
        items = data if isinstance(data, list) else [data]
        for i, r in enumerate(items):
            if not isinstance(r, dict):
                raise ValueError(f"payload[{i}]: expected a JSON object, got {type(r).__name__}")
        return items


def _topic_problem(topic: str, wildcards: bool) -> str | None:
    """Why ``topic`` is not a valid MQTT topic filter (``wildcards``) or publish topic, or None."""
    if not topic:
        return "is empty"
    if "\0" in topic or len(topic.encode()) > 65535:
        return "has a NUL character or is over 65535 bytes"
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if "+" in level or "#" in level:
            if not wildcards:
                return "has a wildcard (+ or #): a topic to publish to cannot have one"
            if len(level) > 1:
                return f"mixes a wildcard with other characters in level {level!r} (a wildcard is a whole level)"
            if level == "#" and i != len(levels) - 1:
                return "has '#' before its last level ('#' matches the rest, so it must come last)"
    return None


def _check_source(cfg: dict[str, Any], chk: Checker, path: str) -> None:
    for i, t in enumerate(cfg["topics"]):
        problem = _topic_problem(t, wildcards=True)
        if problem:
            chk.issue(f"{path}.topics[{i}]", f"{t!r} is not a valid MQTT topic filter: it {problem}")
    conn = chk.sections.get("connections", {}).get(cfg["connection"])
    if cfg["shared_group"] is not None and conn is not None and conn.get("protocol") != "5":
        chk.issue(f"{path}.shared_group", f"shared_group needs an MQTT 5 connection: set protocol: \"5\" on "
                                          f"connection {cfg['connection']!r}")


@component(Spec("mqtt", "Subscribes to MQTT topics and decodes EdgeStream wire messages (or plain JSON).", [
    Field("connection", "str", "The MQTT connection (`broker:` is `default`).", default="default",
          ref="connections"),
    Field("topics", "list[str]", "Topic filters; `+` and `#` wildcards allowed.", one_or_list=True),
    Field("qos", "int", "Subscription QoS.", default=1, choices=(0, 1)),
    Field("client_id", "str", "Client id; keep it stable for a persistent session (default "
          "`edgestream-hub-<label>`).", default=None),
    Field("clean_session", "bool", "false keeps the session at the broker across restarts, so QoS 1 messages "
          "are queued while the hub is away.", default=False),
    Field("shared_group", "str", "MQTT 5 shared subscription group (`$share/<group>/<filter>`): several hubs "
          "split the messages. Needs `protocol: \"5\"` on the connection.", default=None, name_like=True),
    Field("decode", "str", "`wire`: EdgeStream messages, flattened and sequence-tracked; `json`: an object or "
          "an array of objects per message; `raw`: `{topic, payload}`.", default="wire",
          choices=("wire", "json", "raw")),
    Field("prefix", "str", "Topic prefix of the wire layout (`<prefix>/<device>/<kind>`).", default="edgestream"),
    Field("max_payload", "size", "Largest accepted payload.", default="64KiB"),
], check=_check_source, example="""
broker: {host: 127.0.0.1, port: 1883}
sources:
  devices: {mqtt: {topics: ["edgestream/+/results", "edgestream/+/data"], qos: 1}}
"""))
def mqtt_source(config: dict[str, Any], ctx: ComponentContext) -> MqttSource:
    return MqttSource(config, ctx)


class MqttSink(Sink):
    def __init__(self, config: dict[str, Any], ctx: ComponentContext) -> None:
        self.ctx = ctx
        self.conn = _connection(ctx, config["connection"])
        self.topic = config["topic"]
        self.fields = _FIELD.findall(self.topic)
        self.qos = config["qos"]
        self.retain = config["retain"]
        self.per = config["per"]
        self.timeout_s = config["timeout"] / 1000
        self.client_id = config["client_id"] or f"edgestream-hub-{ctx.label}"
        self._client: Any = None
        self.connected = threading.Event()
        from edgestream_hub.connectors.files import json_line_encoder

        self._encode, self._reset = json_line_encoder(ensure_ascii=True)  # one encoder, not one per record

    def open(self) -> None:
        self._client = _client(self.conn, self.client_id, True, self.ctx.label)
        self._client.on_connect = lambda c, u, f, rc, p=None: (not rc.is_failure) and self.connected.set()
        self._client.on_disconnect = lambda c, u, f, rc, p=None: self.connected.clear()
        self._client.max_queued_messages_set(0)
        _connect_async(self._client, self.conn, True)
        self._client.loop_start()

    def _topic(self, r: Record) -> str:
        if not self.fields:
            return self.topic
        vals = {}
        for f in self.fields:
            v = r.get(f)
            if v is None or not re.match(r"^[A-Za-z0-9_.-]{1,64}$", str(v)):
                raise ValueError(f"topic {self.topic!r}: field {f!r} is {v!r}, not a 1-64 character name")
            vals[f] = str(v)
        return _FIELD.sub(lambda m: vals[m.group(1)], self.topic)

    def write(self, records: list[Record]) -> list[tuple[Any, str]]:
        if not self.connected.wait(self.timeout_s):
            raise ComponentError(self.ctx.label, f"not connected to {self.conn['host']}:{self.conn['port']}")
        rejected: list[tuple[Any, str]] = []
        out: dict[str, list[str]] = {}
        for r in records:
            try:
                out.setdefault(self._topic(r), []).append("".join(self._encode(r)))
            except (TypeError, ValueError, RecursionError) as e:
                self._reset()
                rejected.append((r, f"mqtt sink {self.ctx.label}: {e}"))
        infos = []
        for topic, items in out.items():
            payloads = ["[" + ",".join(items) + "]"] if self.per == "batch" else items
            for p in payloads:
                infos.append(self._client.publish(topic, p, qos=self.qos, retain=self.retain))
        for info in infos:
            if info.rc != 0:
                raise ComponentError(self.ctx.label, f"publish failed (rc {info.rc})")
            if self.qos:
                info.wait_for_publish(self.timeout_s)
                if not info.is_published():
                    raise ComponentError(self.ctx.label, "publish not acknowledged in time")
        return rejected

    def close(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None


def _check_sink(cfg: dict[str, Any], chk: Checker, path: str) -> None:
    t = cfg["topic"]
    bare = _FIELD.sub("x", t)
    problem = "has a '{' or '}' that is not a {field} placeholder" if "{" in bare or "}" in bare else \
        _topic_problem(bare, wildcards=False)
    if problem:
        chk.issue(f"{path}.topic", f"{t!r} is not a valid MQTT topic: it {problem}")


@component(Spec("mqtt", "Publishes records as JSON to an MQTT topic.", [
    Field("connection", "str", "The MQTT connection (`broker:` is `default`).", default="default",
          ref="connections"),
    Field("topic", "str", "Topic; `{field}` is replaced by the record's field (a 1-64 character name, else the "
          "record goes to the dead-letter sink)."),
    Field("qos", "int", "Publish QoS (1 waits for the broker's ack before the batch counts as written).",
          default=1, choices=(0, 1)),
    Field("retain", "bool", "Publish retained.", default=False),
    Field("per", "str", "`record`: one message per record; `batch`: one JSON array per batch and topic.",
          default="record", choices=("record", "batch")),
    Field("timeout", "duration", "How long a batch may wait for the connection or acks before it is retried.",
          default="10s"),
    Field("client_id", "str", "Client id (default `edgestream-hub-<label>`).", default=None),
], check=_check_sink, example="sinks:\n  upstream: {mqtt: {topic: \"hub/{device}/results\", qos: 1}}"))
def mqtt_sink(config: dict[str, Any], ctx: ComponentContext) -> MqttSink:
    return MqttSink(config, ctx)
