"""The device service: desired state on the hub, reported state from devices, the hub reconciling the two.

One thread (``devices``) runs beside the engine when hub.yaml has a ``devices`` section. It owns the
device registry (``edgestream_hub.devices``, fed by the sources' ingest), the desired configs
(``edgestream_hub.desired``) and the ways to devices (``edgestream_hub.sender``), and:

- **reconciles configs**: when a device's reported config version differs from its desired one, it
  sends the desired config (MQTT: retained, QoS 1, so a device that is offline gets it when it
  connects; serial: a frame on the port it is heard on) and tracks the answer. It sends again when
  the desired config changes, when the device comes online again or reboots, and when a send got no
  answer within ``config_retry`` while the device was online; a nack's reason is kept (``last_nack``)
  and logged, and the config is not sent again until one of those happens;
- **syncs time** (``time: true``): a ``time`` message to a device when it comes online, and to every
  online device every ``time_sync`` (not to one whose health says NTP sets its clock);
- **watches the desired-config folder** (every second) and the CLI's requests, so ``edgestream devices
  push-config`` and ``sync-time`` work through a running hub too;
- **reports loss a gap cannot show** (see ``edgestream_hub.devices``): logged as data loss and counted
  in the device's ``missing`` and in ``edgestream_source_missing_records_total`` of the source its
  results come through;
- marks devices heard only over serial or HTTP offline after ``offline_after`` of silence;
- publishes Home Assistant discovery entries (``devices.homeassistant``);
- keeps the registry in ``registry_path`` (written atomically when something changed, at most once a
  second, and at stop), so it survives a restart and ``edgestream devices list`` can read it.

Contract: ``start()`` loads the registry and opens the MQTT link (an unreachable broker is retried in
the background); ``stop()`` saves the registry and closes the link; neither raises for a device's
fault. The engine's ``DeviceFeed`` hands messages to ``registry`` from the sources' threads.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any

from edgestream_hub.desired import Desired, DesiredConfigError, DesiredConfigs, desired_dir
from edgestream_hub.devices import CONTROL, DeviceFeed, DeviceRegistry, registry_path
from edgestream_hub.workers import share_of

log = logging.getLogger("edgestream.hub.devices")

_TICK_S = 0.1
_SCAN_S = 1.0
_SAVE_S = 1.0


def requests_dir(registry: Path) -> Path:
    """Where ``edgestream devices`` leaves requests for a running hub (one JSON file each)."""
    return registry.parent / "device-requests"


class DeviceService:
    """See the module doc. ``config`` is the parsed ``devices`` section; ``hub`` the whole ``HubConfig``."""

    def __init__(self, config: dict[str, Any], hub: Any, feed: DeviceFeed, metrics: Any = None,
                 dead_letter: Any = None, share: Any = None) -> None:
        self.config = config
        self.prefix = config["prefix"]
        self.metrics = metrics
        self.feed = feed
        # the devices this hub process follows (hub.workers): the engine's, fixed at its start
        self.share = share if share is not None else share_of(hub.hub)
        state_dir = hub.state.get("dir")
        self.path = registry_path(state_dir, hub.base_dir)
        self.requests = requests_dir(self.path)
        self.desired = DesiredConfigs(desired_dir(config["desired_dir"], state_dir, hub.base_dir), config["desired"])
        kinds = {cc.label: cc.type for cc in hub.sources.values()}
        conn = hub.connections.get(config["connection"]) if config["connection"] else None
        self.registry = DeviceRegistry(config["max_devices"], kinds, control=CONTROL if conn else None,
                                       missing_after_ms=config["missing_after"],
                                       offline_after_ms=config["offline_after"], series=config["homeassistant"])
        self.link: Any = None
        self._wanted: dict[str, Desired] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._ha_done: set[str] = set()  # devices whose discovery entries went out since the link connected
        self._unreachable_logged: set[tuple[str, str, str | None]] = set()
        self.config_sends = 0
        self.time_sends = 0
        self.config_refusals = 0
        if conn is not None:  # built now: a TLS file that cannot be read fails here, before anything starts
            from edgestream_hub.components import ComponentContext
            from edgestream_hub.ingest import Ingest
            from edgestream_hub.sender import MqttLink

            ctx = ComponentContext("source", CONTROL, CONTROL, metrics=metrics, dead_letter=dead_letter, devices=feed)
            ingest = Ingest(ctx, "wire", prefix=self.prefix)
            filters = [f"{self.prefix}/+/{k}" for k in ("status", "metrics", "config/ack")]
            if config["homeassistant"]:
                filters.append(f"{config['homeassistant_prefix']}/status")
            client_id = self.share.client_id(config["client_id"] or f"edgestream-hub-{CONTROL}")
            self.link = MqttLink(conn, client_id, filters, lambda p, t: self._on_mqtt(ingest, p, t), label=CONTROL)

    # -- lifecycle --
    def start(self) -> "DeviceService":
        n = self.registry.load(self.path)
        if not self.share.whole:  # left by an earlier split: another worker follows them now
            with self.registry.lock:
                for dev in [d for d in self.registry.devices if not self.share.owns(d)]:
                    del self.registry.devices[dev]
            n = len(self.registry.devices)
        log.info("device registry: %s (%d devices), desired configs: %s", self.path, n, self.desired.folder)
        self._wanted, _ = self._desired_scan()
        for dev, des in self._wanted.items():
            self.registry.set_desired(dev, des.version)
        if self.link is not None:
            if self.metrics is not None:
                self.metrics.declare("source", CONTROL)
            self.link.open()
        self.feed.service = self
        self._thread = threading.Thread(target=self._run, name="devices", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self.feed.service is self:
            self.feed.service = None
        self._stop.set()
        if self.link is not None:
            self.link.closing.set()  # a publish under way gives up now
        if self._thread is not None:
            self._thread.join(10)
        if self.link is not None:
            self.link.close()
        self._save()

    def _on_mqtt(self, ingest: Any, payload: bytes, topic: str) -> None:
        if topic == f"{self.config['homeassistant_prefix']}/status":
            if payload == b"online":  # Home Assistant restarted: its discovery state is gone
                self._ha_done.clear()
            return
        if self.share.owns_topic(topic, self.prefix):  # another worker's device: that worker follows it
            ingest.payload(payload, f"mqtt {topic}", topic)

    # -- the loop --
    def _run(self) -> None:
        next_scan = next_save = 0.0
        period = self.config["time_sync"] if self.config["time"] else 0
        next_time = time.monotonic() + period / 1000 if period else float("inf")
        link_up = False
        if self.link is None:
            self._reconcile_all()
        while not self._stop.is_set():
            try:
                if self.link is not None and self.link.connected.is_set() != link_up:
                    link_up = not link_up
                    if link_up:  # (re)connected: whatever could not go out while it was down goes now
                        self._ha_done.clear()  # a broker without persistence lost the retained entries
                        self._reconcile_all()
                        if period:
                            self.sync_time()
                self._events()
                if self.registry.losses:
                    self._losses(checks=False)  # a jump seen while observing: logged and counted now
                now = time.monotonic()
                if now >= next_scan:
                    next_scan = now + _SCAN_S
                    self._scan()
                    self._requests()
                    self._retry()
                    for dev in self.registry.expire():
                        log.info("device %s is offline (silent for %gs)", dev, self.config["offline_after"] / 1000)
                    self._losses(checks=True)
                    if self.link is not None and self.config["homeassistant"]:
                        self._discovery()
                if now >= next_time:
                    next_time = now + period / 1000
                    self.sync_time()
                if now >= next_save and self.registry.changed.is_set():
                    next_save = now + _SAVE_S
                    self._save()
            except Exception as e:  # one bad turn must not end the service
                log.exception("device service: %s: %s", type(e).__name__, e)
            self._stop.wait(_TICK_S)

    def _save(self) -> None:
        try:
            self.registry.save(self.path, pid=os.getpid(), desired_dir=str(self.desired.folder))
        except OSError as e:
            log.error("cannot write the device registry %s: %s", self.path, e.strerror or e)

    def _events(self) -> None:
        save = False
        for _ in range(10_000):
            try:
                ev = self.registry.events.get_nowait()
            except queue.Empty:
                break
            kind, dev = ev[0], ev[1]
            if kind in ("online", "reboot"):
                what = "came online" if kind == "online" else "rebooted"
                d = self.registry.get(dev)
                log.info("device %s %s (boot %s)", dev, what, d.boot if d else "?")
                if self.config["time"]:
                    self.sync_time(dev)
                self._reconcile(dev)
            elif kind == "answer":
                _, _, version, ok, error = ev
                save = True
                if ok:
                    log.info("device %s applied config version %d%s", dev, version, f" ({error})" if error else "")
                else:
                    self.config_refusals += 1
                    log.warning("device %s refused config version %d: %s", dev, version, error)
            elif kind in ("new", "series"):
                self._ha_done.discard(dev)
        if save:
            self._save()  # an answer is what `devices push-config` waits for

    # -- configs --
    def _scan(self) -> None:
        self._wanted, changed = self._desired_scan()
        for dev in sorted(changed):
            des = self._wanted.get(dev)
            d = self.registry.set_desired(dev, des.version if des else None)
            if des is not None and d is not None:
                log.info("device %s: desired config is now version %d (%s)", dev, des.version, des.origin)
                self._reconcile(dev)

    def _desired_scan(self) -> tuple[dict[str, Desired], set[str]]:
        """The desired configs of this process's devices, and which of them changed."""
        wanted, changed = self.desired.scan()
        if self.share.whole:
            return wanted, changed
        return ({d: v for d, v in wanted.items() if self.share.owns(d)}, {d for d in changed if self.share.owns(d)})

    def _reconcile_all(self) -> None:
        for dev in sorted(self._wanted):
            self._reconcile(dev)

    def _retry(self) -> None:
        now = self.registry.now_ms()
        with self.registry.lock:
            devices = list(self.registry.devices.items())
        for dev, d in devices:
            if d.config_sent is not None and d.online and d.config_sent_at is not None \
                    and now - d.config_sent_at >= self.config["config_retry"]:
                log.info("device %s did not answer config version %d within %gs: sending it again", dev,
                         d.config_sent, self.config["config_retry"] / 1000)
                self._reconcile(dev)

    def _reconcile(self, dev: str) -> None:
        """Send the desired config if the device does not run it."""
        d = self.registry.get(dev)
        des = self._wanted.get(dev)
        if d is None or des is None or d.config_reported == des.version or not self.share.owns(dev):
            return
        kind, label = d.route()
        if kind == "none":
            if self.link is None:
                return  # sent when it is first heard
            kind = "mqtt"  # never heard of yet: the retained config waits for it at the broker
        if kind == "serial" and not d.online:
            return  # sent when it is heard again
        if kind == "mqtt" and self.link is not None:
            self._send_mqtt_config(dev)
        elif kind == "serial" and label in self.feed.senders:
            self._send_serial_config(dev, label)
        elif (dev, kind, label) not in self._unreachable_logged:
            self._unreachable_logged.add((dev, kind, label))
            how = {"http": f"it is only heard over HTTP source {label}", "serial": f"serial source {label} is closed",
                   "mqtt": "devices.connection is not set"}
            log.warning("device %s: cannot send its desired config version %d: %s", dev, des.version, how[kind])

    def _send_mqtt_config(self, dev: str) -> None:
        from edgestream_hub.sender import config_message

        if not self.link.connected.is_set():
            return  # sent when the link is up again (no wait here: other devices come first)
        with self.desired.lock():  # the newest desired config, never an older one after the CLI's
            des = self.desired.get(dev)
            if des is None:
                return
            msg = config_message(dev, des.version, des.config, des.force)
            err = self.link.publish(f"{self.prefix}/{dev}/config", msg, qos=1, retain=True)
        if err:
            log.warning("device %s: config version %d not published: %s (retrying)", dev, des.version, err)
            return
        self.config_sends += 1
        self.registry.record_sent(dev, des.version)

    def _send_serial_config(self, dev: str, label: str) -> None:
        from edgestream_hub.sender import config_message
        from edgestream_shared.errors import WireError

        des = self._wanted[dev]
        try:
            ok = self.feed.senders[label](config_message(dev, des.version, des.config, des.force))
        except WireError as e:
            ok = False
            d = self.registry.get(dev)
            if d is not None and d.last_nack != f"not sent: {e}":
                with self.registry.lock:
                    d.last_nack, d.last_nack_version = f"not sent: {e}", des.version
                    d.last_nack_at = self.registry.now_ms()
                    self.registry.changed.set()
                self.config_refusals += 1
                log.error("device %s: config version %d cannot go over serial: %s", dev, des.version, e)
        if ok:
            self.config_sends += 1
            self.registry.record_sent(dev, des.version)

    # -- time --
    def sync_time(self, dev: str | None = None, asked: bool = False) -> int:
        """Send the hub's clock to ``dev`` (or every online device); returns how many got it. A device whose
        clock NTP sets is left alone unless ``asked`` (NTP is the better reference)."""
        from edgestream_hub.sender import time_message

        with self.registry.lock:
            targets = [dev] if dev is not None else [k for k, d in self.registry.devices.items() if d.online]
        n = 0
        for t in targets:
            d = self.registry.get(t)
            if d is None or (d.clock_source == "ntp" and not asked):
                continue
            kind, label = d.route()
            if kind == "mqtt" and self.link is not None:
                ok = self.link.connected.is_set() and self.link.publish(
                    f"{self.prefix}/{t}/time", time_message(t), qos=0, timeout_s=2) is None
            elif kind == "serial" and label in self.feed.senders:
                ok = self.feed.senders[label](time_message(t))
            else:
                ok = False
            n += ok
        self.time_sends += n
        return n

    # -- requests from `edgestream devices` --
    def _requests(self) -> None:
        try:
            names = sorted(p for p in os.listdir(self.requests) if p.endswith(".json"))
        except FileNotFoundError:
            return
        for name in names[:100]:
            p = self.requests / name
            try:
                req = json.loads(p.read_text())
                p.unlink()
            except (OSError, ValueError) as e:
                log.warning("ignoring the unreadable request %s: %s", p, e)
                p.unlink(missing_ok=True)
                continue
            if isinstance(req, dict) and req.get("kind") == "time":
                dev = req.get("device")
                n = self.sync_time(dev if isinstance(dev, str) else None, asked=True)
                log.info("time sent to %d device%s on request", n, "" if n == 1 else "s")

    # -- loss --
    def _losses(self, checks: bool) -> None:
        found = self.registry.due_missing(checks)
        if not found:
            return
        parts = []
        for loss in found:
            if loss.source and self.metrics is not None:
                self.metrics.inc("edgestream_source_missing_records_total", loss.source, loss.n)
            if loss.claim is not None:
                self.feed.claim(loss.source, loss.device, *loss.claim)
            parts.append(f"device {loss.device}: {loss.n} result{'s' if loss.n != 1 else ''} missing, in no gap: "
                         f"{loss.what}")
        log.warning("data loss: %s", "; ".join(parts))

    # -- Home Assistant --
    def _discovery(self) -> None:
        from importlib.metadata import PackageNotFoundError, version

        from edgestream_hub import homeassistant

        if not self.link.connected.is_set():
            return
        try:
            hub_version = version("edgestream")
        except PackageNotFoundError:
            hub_version = "0"
        with self.registry.lock:
            devices = list(self.registry.devices.items())
        for dev, d in devices:
            if dev in self._ha_done or d.link != "mqtt":
                continue
            with self.registry.lock:
                items = homeassistant.entries(self.prefix, self.config["homeassistant_prefix"], dev, d, hub_version)
            for topic, payload in items:
                err = self.link.publish(topic, payload, qos=1, retain=True, timeout_s=5)
                if err:
                    log.warning("Home Assistant discovery for %s not published: %s", dev, err)
                    break
            else:
                self._ha_done.add(dev)


__all__ = ["DeviceService", "DesiredConfigError", "requests_dir"]
