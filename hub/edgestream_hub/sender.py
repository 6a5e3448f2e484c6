"""The hub's sending half of the wire protocol: ``config`` and ``time`` to devices, over MQTT or serial.

Messages are written with the shared encoder (``edgestream_shared.encoder.encode_config`` /
``encode_time``: the bytes the agent's ``wire_in`` is tested against) and go:

- over MQTT (``MqttLink``, the hub's own client on ``devices.connection``): ``config`` retained with
  QoS 1 on ``<prefix>/<device>/config`` (a device that connects later gets it from the broker), ``time``
  with QoS 0 on ``<prefix>/<device>/time``. The same client subscribes to every device's ``status``,
  ``metrics`` and ``config/ack`` and hands each message to an ``Ingest`` (decoded, counted and
  dead-lettered like a source's, and so fed to the device registry);
- over serial, as a frame written to the port of the serial source that hears the device
  (``SerialSource.send``).

``MqttLink`` is also what ``edgestream devices`` uses when no hub runs.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from edgestream_shared.encoder import encode_config, encode_time

log = logging.getLogger("edgestream.hub.devices")

__all__ = ["MqttLink", "config_message", "time_message", "epoch_ms"]


def config_message(dev: str, version: int, config: dict[str, Any], force: bool = False) -> bytes:
    """The wire ``config`` message carrying ``config`` as version ``version`` (``force``: applied even over a
    newer running version)."""
    return bytes(encode_config(dev, version, config, force))


def epoch_ms() -> int:
    return int(time.time() * 1000)


def time_message(dev: str | None = None, now_ms: int | None = None) -> bytes:
    """A wire ``time`` message with the hub's clock (addressed to ``dev`` when given)."""
    return bytes(encode_time(epoch_ms() if now_ms is None else now_ms, dev))


class MqttLink:
    """The hub's MQTT client for devices. ``on_payload(payload, topic)`` gets every message of the
    subscribed filters (``subscribe``); ``publish`` waits for the broker's PUBACK at QoS 1."""

    def __init__(self, conn: dict[str, Any], client_id: str, filters: list[str],
                 on_payload: Callable[[bytes, str], None], label: str = "devices") -> None:
        from edgestream_hub.connectors.mqtt import mqtt_client

        self.conn = conn
        self.filters = list(filters)
        self.on_payload = on_payload
        self.label = label
        self.client, self._tls = mqtt_client(conn, client_id, True, label)
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.why = "not connected yet"
        self._sub_mid: int | None = None
        c = self.client
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_connect_fail = self._on_connect_fail
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        self._stopping = False
        self.closing = threading.Event()  # set by close(): waits in publish end at once

    def open(self) -> None:
        from edgestream_hub.connectors.mqtt import mqtt_connect

        mqtt_connect(self.client, self.conn, True)
        self.client.loop_start()

    def wait_ready(self, timeout_s: float) -> bool:
        """Connected and subscribed (to nothing: connected) within ``timeout_s``."""
        ev = self.subscribed if self.filters else self.connected
        return ev.wait(timeout_s)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any = None) -> None:
        if reason.is_failure:
            self.why = f"the broker refused the connection: {reason}"
            log.error("%s: broker %s:%s refused the connection: %s", self.label, self.conn["host"],
                      self.conn["port"], reason)
            return
        if self._tls is not None:
            self._tls.last = None
        self.connected.set()
        if self.filters:
            self._sub_mid = client.subscribe([(f, 1) for f in self.filters])[1]

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, codes: Any, props: Any = None) -> None:
        if mid == self._sub_mid:
            refused = [f for f, rc in zip(self.filters, codes) if getattr(rc, "is_failure", False)]
            if refused:
                log.error("%s: the broker refused the subscription to %s", self.label, ", ".join(refused))
            self.subscribed.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any = None) -> None:
        self.connected.clear()
        self.subscribed.clear()
        if not self._stopping and reason.is_failure:
            log.warning("%s: lost the broker (%s); reconnecting with backoff", self.label, reason)

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        from edgestream_hub.connectors.mqtt import attempt_failed

        why = attempt_failed(self._tls, self.conn)
        if why != self.why:
            log.warning("%s: cannot connect to broker %s:%s: %s; retrying with backoff", self.label,
                        self.conn["host"], self.conn["port"], why)
        self.why = why

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            self.on_payload(msg.payload, msg.topic)
        except Exception as e:  # an exception here would end paho's network thread
            log.error("%s: a message could not be handled: %s: %s", self.label, type(e).__name__, e)

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
                timeout_s: float = 10.0) -> str | None:
        """Publish; None when the broker has it (QoS 1: acknowledged), else why not. Returns at once
        when the link is closing."""
        deadline = time.monotonic() + timeout_s
        while not self.connected.is_set():
            if self.closing.is_set() or time.monotonic() >= deadline:
                return f"not connected to {self.conn['host']}:{self.conn['port']}: {self.why}"
            self.connected.wait(0.05)
        if self.client is None:
            return "the link is closed"
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != 0:
            return f"publish failed (rc {info.rc})"
        if qos:
            while not info.is_published():
                if self.closing.is_set() or time.monotonic() >= deadline:
                    return f"the broker did not acknowledge within {timeout_s:g}s"
                try:
                    info.wait_for_publish(0.05)
                except (RuntimeError, ValueError) as e:
                    return f"publish failed: {e}"
        return None

    def close(self) -> None:
        self._stopping = True
        self.closing.set()
        c = self.client
        if c is None:
            return
        try:
            c.disconnect()
        finally:
            c.loop_stop()
            # paho closes its sockets only when the client is deleted: let go of it now (its callbacks
            # are this link's methods, so a reference cycle would leave it to the collector)
            c.on_connect = c.on_disconnect = c.on_connect_fail = c.on_message = c.on_subscribe = None
            self.client = None
