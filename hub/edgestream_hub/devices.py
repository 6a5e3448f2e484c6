"""The device registry: what the hub knows of each device, fed by the one ingest path.

Every source that decodes wire messages hands each message it decoded to
``DeviceFeed.observe`` (from ``Ingest``), so the registry sees what the
pipelines see, counted the same way:

- ``status``: online after connecting, offline by the last will. A device the
  hub reaches over MQTT is online or offline by its status alone; one heard
  only over serial or HTTP (no status there) is online while it sends and
  offline after ``offline_after`` of silence.
- ``metrics`` (the agent's health): heap free, loop lag, link failures, the
  results it sent, dropped and resent, its versions, its running config version.
- ``ack``: the config version it applied, or the reason it refused one.
- ``results`` / ``readings``: last seen, the boot id (a new one is a reboot),
  and what sequence tracking counted for the message (gaps, records missing
  in them, duplicates).

**Loss a gap cannot show.** The registry keeps, per device and boot, the
highest result seq the hub has accounted for (``seq_high``: received, or
counted missing), across restarts of the hub. Two losses leave no gap in a
source's sequence tracking, and it counts them itself:

- a jump the tracking could not compare: the source's tracking (re)started (a
  hub restart, a reloaded source, a boot the hub saw begin) and the first
  result it saw is past ``seq_high + 1``: the seqs in between are missing;
- the tail: the agent's health says how many results it delivered this boot
  (``results_sent``: confirmed by the broker, or written to the port);
  ``missing_after`` later (results and health travel separately) the hub must
  have accounted for seq ``results_sent - 1``; the results beyond
  ``seq_high`` are missing. They are *claimed* in the source's tracking
  (``Ingest.claim``), so a later result continues the stream instead of
  showing the same seqs again as a gap, and a claimed one that still arrives
  is a gap fill.

The tail count never counts a result the device did not deliver (the seqs up
to ``seq_high`` hold every result it dropped), so it can under-count, never
over-count; with nothing dropped it is exact.

Bounded: at most ``max_devices`` devices are tracked; messages of others are
left alone and each such device is counted once in ``overflow`` (and
``edgestream_devices_overflow_total``). The registry is a plain JSON file,
written atomically by ``DeviceService`` (``registry_path``), so
``edgestream devices list`` reads it whether or not the hub runs.

    >>> r = DeviceRegistry(10, {"board": "serial"}, clock=lambda: 1000.0)
    >>> r.observe("board", {"kind": "status", "dev": "d1", "boot": 3, "state": "online"}, 1, None)
    >>> d = r.get("d1"); (d.online, d.boot, d.link)
    (True, 3, 'serial:board')
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

from edgestream_hub.wire import SeqStats

log = logging.getLogger("edgestream.hub.devices")

#: What ``edgestream devices list --json`` prints for each device, in order (docs/hub.md names each).
PUBLIC_KEYS = ("device", "online", "last_seen", "link", "boot", "reboots", "agent_version", "firmware", "platform",
               "config_desired", "config_reported", "config_state", "last_nack", "last_nack_version", "last_nack_at",
               "heap_free", "loop_lag_ms", "link_failures", "results_sent", "results_dropped", "results_resent",
               "results_received", "gaps", "duplicates", "missing", "clock_source", "uptime_ms")

FORMAT = 1  # of the registry file
_CHECKS = 8  # pending loss checks kept per device (health messages within missing_after)
_SERIES = 32  # (sensor, window) pairs remembered per device (Home Assistant discovery)
CONTROL = "devices.mqtt"  # label of the hub's own MQTT link in logs and metrics
#: The largest value of each health key an agent can report (its counters and versions are 31-bit small ints,
#: a result count reaches at most 2^31 seqs); the smallest is 0.
_HEALTH_KEYS = (("results_sent", "results_sent"), ("results_dropped", "results_dropped"),
                ("results_resent", "results_resent"), ("link_failures", "link_failures"), ("heap_free", "heap_free"),
                ("lag_max_ms", "loop_lag_ms"), ("config_version", "config_reported"), ("uptime_ms", "uptime_ms"))
_HEALTH_RANGE = {"heap_free": 2**31, "lag_max_ms": 2**31, "link_failures": 2**31, "results_sent": 2**31,
                 "results_dropped": 2**31, "results_resent": 2**31, "uptime_ms": 2**53, "config_version": 2**31 - 1}


@dataclass(slots=True)  # a thousand devices: ~0.3 KiB each instead of ~1.6 KiB with a __dict__
class DeviceState:
    """One device. The first block is what ``devices list`` shows; the rest is bookkeeping that survives a
    restart with it."""

    device: str
    online: bool = False
    last_seen: int | None = None  # epoch ms (hub clock) of its last message
    link: str | None = None  # "mqtt", "serial:<source>" or "http:<source>": how the hub hears (and reaches) it
    boot: int | None = None
    reboots: int = 0
    agent_version: str | None = None  # health "fw"
    firmware: str | None = None  # health "mpy": the MicroPython it runs
    platform: str | None = None
    config_desired: int | None = None
    config_reported: int | None = None
    last_nack: str | None = None
    last_nack_version: int | None = None
    last_nack_at: int | None = None  # epoch ms (hub clock) the nack came
    heap_free: int | None = None
    loop_lag_ms: float | None = None  # health "lag_max_ms"
    link_failures: int | None = None
    results_sent: int | None = None  # as the agent counts them (this boot)
    results_dropped: int | None = None
    results_resent: int | None = None
    results_received: int = 0  # as the hub counts them (unique, every boot)
    gaps: int = 0
    duplicates: int = 0
    missing: int = 0  # records missing in gaps, and delivered ones that never arrived
    clock_source: str | None = None
    uptime_ms: int | None = None
    # -- bookkeeping --
    status_seen: bool = False  # it has a status topic: online goes by it alone
    prev_boot: int | None = None  # messages of the previous boot still in flight are not a reboot
    seq_high: int | None = None  # highest result seq of this boot accounted for (None: joined midway, none yet)
    checks: list[list[int]] = field(default_factory=list)  # [results_sent, due_ms, boot]
    config_sent: int | None = None  # version sent and not answered yet
    config_sent_at: int | None = None
    results_source: str | None = None  # the source its results come through
    series: list[list[Any]] = field(default_factory=list)  # [sensor, window, [aggregates]]

    @property
    def config_state(self) -> str:
        """``none`` (no desired config), ``applied``, ``refused`` (the desired version was nacked) or ``pending``."""
        if self.config_desired is None:
            return "none"
        if self.config_reported == self.config_desired:
            return "applied"
        if self.last_nack_version == self.config_desired:
            return "refused"
        return "pending"

    def public(self) -> dict[str, Any]:
        """The listed fields, keyed as ``PUBLIC_KEYS``."""
        return {k: getattr(self, k) for k in PUBLIC_KEYS}

    def route(self) -> tuple[str, str | None]:
        """How to reach it: ("mqtt", None), ("serial", source label), ("http", label) or ("none", None)."""
        if not self.link:
            return "none", None
        kind, _, label = self.link.partition(":")
        return kind, label or None


_FIELDS = {f.name: f for f in fields(DeviceState)}


@dataclass
class Loss:
    """Results of a device found missing where no sequence gap showed them."""

    device: str
    n: int
    source: str | None  # the source its results come through
    what: str  # for the log line
    claim: tuple[int, int] | None  # (boot, upto): seqs the source's tracking should take as seen


def _int(v: Any) -> int | None:
    return v if type(v) is int else (int(v) if type(v) is float else None)


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


class DeviceRegistry:
    """Per-device state, updated from wire messages; thread-safe. Events for the reconciler
    (``("online", dev)``, ``("reboot", dev)``, ``("answer", dev, version, ok, error)``, ``("new", dev)``,
    ``("series", dev)``) go to ``events``.

    ``source_kinds`` maps a source label to its type (``mqtt``, ``serial``, ``http``); ``control`` is
    the label of the hub's own MQTT link: when there is one, status, health and acks are taken from it
    and not again from MQTT sources that happen to subscribe to them."""

    def __init__(self, max_devices: int, source_kinds: dict[str, str], *, control: str | None = None,
                 missing_after_ms: int = 30_000, offline_after_ms: int = 60_000, series: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        self.max_devices = max_devices
        self.source_kinds = dict(source_kinds)
        self.control = control
        if control is not None:
            self.source_kinds[control] = "mqtt"
        self.missing_after_ms = missing_after_ms
        self.offline_after_ms = offline_after_ms
        self.series = series  # remember each device's (sensor, window) pairs (Home Assistant needs them)
        self._series_keys: dict[str, set[tuple[str, str]]] = {}
        self.clock = clock
        self.devices: dict[str, DeviceState] = {}
        self.overflow = 0  # devices refused because of max_devices
        self.invalid_health = 0  # health values out of range, ignored
        self._invalid_logged_at = -60_000
        self._refused: set[str] = set()
        self.lock = threading.RLock()
        self.events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self.losses: list[Loss] = []  # jumps found while observing, for the service to log and count
        self.changed = threading.Event()  # set on every update; the saver clears it

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def get(self, dev: str) -> DeviceState | None:
        return self.devices.get(dev)

    def device(self, dev: str) -> DeviceState | None:
        """The device's state, created if there is room (else counted in ``overflow``)."""
        d = self.devices.get(dev)
        if d is None:
            if len(self.devices) >= self.max_devices:
                if dev not in self._refused:
                    if len(self._refused) >= 10 * self.max_devices:
                        self._refused.clear()
                    self._refused.add(dev)
                    self.overflow += 1
                    if self.overflow == 1 or self.overflow % 1000 == 0:
                        log.warning("device %s is not tracked: the registry holds devices.max_devices = %d "
                                    "(%d devices refused so far)", dev, self.max_devices, self.overflow)
                return None
            d = self.devices[dev] = DeviceState(dev)
            self.events.put(("new", dev))
        return d

    # -- the feed --
    def observe(self, label: str, msg: dict[str, Any], accepted: int, delta: SeqStats | None) -> None:
        """One decoded wire message from source ``label``: ``accepted`` items kept, ``delta`` what sequence
        tracking counted for it."""
        kind = msg.get("kind")
        skind = self.source_kinds.get(label, "mqtt")
        if kind in ("status", "metrics", "ack") and skind == "mqtt" and self.control is not None \
                and label != self.control:
            return  # the hub's own link reports these: once is enough
        dev = msg.get("dev")
        if not isinstance(dev, str):
            return
        with self.lock:
            d = self.device(dev)
            if d is None:
                return
            now = self.now_ms()
            d.last_seen = now
            link = "mqtt" if skind == "mqtt" else f"{skind}:{label}"
            if skind != "http" or d.link is None or d.link.startswith("http:"):
                d.link = link  # HTTP cannot carry anything back: never replaces a link that can
            boot = msg.get("boot")
            current = True
            if type(boot) is int:
                current = self._boot(d, boot)
            if kind == "status":
                if current:
                    online = msg.get("state") == "online"
                    if online and not d.online:
                        self.events.put(("online", dev))
                    d.online = online
                    d.status_seen = True
            else:
                if not d.status_seen or skind != "mqtt":
                    if not d.online:
                        self.events.put(("online", dev))
                    d.online = True
                if kind == "metrics" and current:
                    self._health(d, msg.get("metrics") or {}, now)
                elif kind == "ack":
                    self._ack(d, msg)
                elif kind in ("results", "readings"):
                    self._items(d, kind, msg, accepted, delta or SeqStats(), current, label)
            self.changed.set()

    def _boot(self, d: DeviceState, boot: int) -> bool:
        """Follow the boot id; False for a late message of the previous boot."""
        if d.boot is None:
            d.boot = boot
        elif boot != d.boot:
            if boot == d.prev_boot:
                return False
            d.prev_boot, d.boot = d.boot, boot
            d.reboots += 1
            d.seq_high = -1  # a boot seen from its start: its results begin at seq 0
            d.checks = []
            d.results_sent = d.results_dropped = d.results_resent = None
            self.events.put(("reboot", d.device))
        return True

    def _health(self, d: DeviceState, m: dict[str, Any], now: int) -> None:
        if m.get("heap_free") == -1:  # CPython agents report -1: no heap to speak of
            d.heap_free = None
        sent: int | None = None
        for key, name in _HEALTH_KEYS:
            v = m.get(key)
            if v is None or (key == "heap_free" and v == -1):
                continue
            ok = self._health_value(d, key, v)
            if ok is not None:
                setattr(d, name, ok)
                if key == "results_sent":
                    sent = int(ok)
        for key, name in (("fw", "agent_version"), ("mpy", "firmware"), ("platform", "platform"),
                          ("clock_source", "clock_source")):
            text = _str(m.get(key))
            if text is not None:
                setattr(d, name, text)
        self._clear_nack(d)
        if sent is not None and d.boot is not None and len(d.checks) < _CHECKS:
            d.checks.append([sent, now + self.missing_after_ms, d.boot])

    def _health_value(self, d: DeviceState, key: str, v: Any) -> int | float | None:
        """A health value within what an agent can report (``_HEALTH_RANGE``), else None: counted in
        ``invalid_health`` and logged (at most once a minute), so a garbled message makes up no loss, version
        or heap."""
        hi = _HEALTH_RANGE[key]
        if type(v) is float and key == "lag_max_ms" and 0 <= v <= hi:
            return v
        n = _int(v) if type(v) is int or (type(v) is float and v == int(v)) else None
        if n is not None and 0 <= n <= hi:
            return n
        self.invalid_health += 1
        now = self.now_ms()
        if now - self._invalid_logged_at >= 60_000:
            self._invalid_logged_at = now
            log.warning("device %s: health %s: %r is out of range (0..%d): ignored (%d such values so far)",
                        d.device, key, v, hi, self.invalid_health)
        return None

    def _ack(self, d: DeviceState, msg: dict[str, Any]) -> None:
        version = msg.get("version")
        ok = msg.get("ok") is True
        error = msg.get("error")
        if version == 0 and not ok and d.config_sent is not None:
            version = d.config_sent  # a config it could not even read (too large, not JSON) is nacked as 0
        if not isinstance(version, int):
            return
        if ok:
            d.config_reported = version
            self._clear_nack(d)
        else:
            d.last_nack = error if isinstance(error, str) and error else "refused (no reason given)"
            d.last_nack_version, d.last_nack_at = version, self.now_ms()
        if d.config_sent is not None and version == d.config_sent:
            d.config_sent = d.config_sent_at = None
        self.events.put(("answer", d.device, version, ok, error))

    @staticmethod
    def _clear_nack(d: DeviceState) -> None:
        if d.last_nack_version is not None and d.config_reported is not None \
                and d.config_reported >= d.last_nack_version and d.config_reported == d.config_desired:
            d.last_nack = d.last_nack_version = d.last_nack_at = None

    def _items(self, d: DeviceState, kind: str, msg: dict[str, Any], accepted: int, delta: SeqStats,
               current: bool, label: str) -> None:
        d.gaps += delta.gaps
        d.duplicates += delta.duplicates
        d.missing += delta.missing
        if kind != "results":
            return
        d.results_received += accepted
        d.results_source = label
        if not current:
            return
        items = msg.get("items") or ()
        if items:
            seqs = [it["seq"] for it in items]
            lo, hi = min(seqs), max(seqs)
            if delta.streams and d.seq_high is not None and lo > d.seq_high + 1:
                # the source's tracking had nothing to compare this with: the jump is the registry's to count
                n = lo - d.seq_high - 1
                d.missing += n
                self.losses.append(Loss(d.device, n, label, f"seq {d.seq_high} was followed by {lo} across a restart "
                                                             "of the source's sequence tracking", None))
            if d.seq_high is None or hi > d.seq_high:
                d.seq_high = hi
        if self.series and len(d.series) < _SERIES:
            keys = self._series_keys.get(d.device)
            if keys is None:
                keys = self._series_keys[d.device] = {(s[0], s[1]) for s in d.series}
            for it in items:
                key = (it["sensor"], it["window"])
                if key not in keys and len(d.series) < _SERIES:
                    keys.add(key)
                    d.series.append([*key, sorted(it["aggs"])])
                    self.events.put(("series", d.device))

    # -- the reconciler's side --
    def expire(self) -> list[str]:
        """Devices without a status topic that were silent for ``offline_after``: now offline."""
        now = self.now_ms()
        gone = []
        with self.lock:
            for d in self.devices.values():
                if d.online and not (d.status_seen and d.link == "mqtt") and d.last_seen is not None \
                        and now - d.last_seen > self.offline_after_ms:
                    d.online = False
                    gone.append(d.device)
            if gone:
                self.changed.set()
        return gone

    def due_missing(self, checks: bool = True) -> list[Loss]:
        """The losses no gap showed: the jumps found since the last call, and (``checks``) the tails of the loss
        checks that are due (see the module doc). A tail's ``claim`` is ``(boot, upto)`` for the source's
        tracking."""
        now = self.now_ms()
        with self.lock:
            out, self.losses = self.losses, []
            for d in self.devices.values() if checks else ():
                while d.checks and d.checks[0][1] <= now:
                    sent, _, boot = d.checks.pop(0)
                    if boot != d.boot or d.seq_high is None:
                        continue
                    tail = sent - (d.seq_high + 1)
                    if tail > 0:
                        out.append(Loss(d.device, tail, d.results_source, f"delivered (results_sent {sent}) but "
                                        f"never arrived after seq {d.seq_high}", (boot, d.seq_high + tail)))
                        d.seq_high += tail
                        d.missing += tail
            if out:
                self.changed.set()
        return out

    def set_desired(self, dev: str, version: int | None) -> DeviceState | None:
        with self.lock:
            d = self.devices.get(dev)
            if d is None and version is not None:
                d = self.device(dev)
            if d is not None and d.config_desired != version:
                d.config_desired = version
                self._clear_nack(d)
                self.changed.set()
            return d

    def record_sent(self, dev: str, version: int) -> None:
        with self.lock:
            d = self.devices.get(dev)
            if d is not None:
                d.config_sent, d.config_sent_at = version, self.now_ms()
                self.changed.set()

    # -- persistence --
    def to_json(self, **extra: Any) -> str:
        with self.lock:
            devices = {k: asdict(d) for k, d in self.devices.items()}
            data = {"format": FORMAT, "saved_ms": self.now_ms(), "overflow": self.overflow,
                    "refused": sorted(self._refused), **extra, "devices": devices}
        return json.dumps(data, separators=(",", ":"))

    def save(self, path: Path, **extra: Any) -> None:
        """Write the registry to ``path`` atomically (a temp file in the same folder, then a rename)."""
        self.changed.clear()
        text = self.to_json(**extra)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def load(self, path: Path) -> int:
        """Read a registry saved by ``save``; returns how many devices it restored (unreadable: 0, logged)."""
        try:
            data = read_registry(path)
        except FileNotFoundError:
            return 0
        except (OSError, ValueError) as e:
            log.error("ignoring the unreadable device registry %s: %s", path, e)
            return 0
        with self.lock:
            self.overflow = data.get("overflow", 0) if type(data.get("overflow")) is int else 0
            refused = data.get("refused")  # counted once: not again when they are heard after the restart
            if isinstance(refused, list):
                self._refused = {r for r in refused[:10 * self.max_devices] if isinstance(r, str)}
            for dev, raw in data["devices"].items():
                d = state_from(dev, raw)
                if d is None:
                    log.error("device registry %s: ignoring the unreadable entry of %r", path, dev)
                    continue
                if not (d.status_seen and d.link == "mqtt"):
                    d.online = False  # online again with its first message (its retained status, over MQTT)
                if len(self.devices) < self.max_devices:
                    self.devices[dev] = d
        return len(self.devices)


def state_from(dev: str, raw: Any) -> DeviceState | None:
    """A ``DeviceState`` from its saved dict (unknown keys ignored), or None if it is not one."""
    if not isinstance(raw, dict):
        return None
    d = DeviceState(dev)
    for k, v in raw.items():
        if k in _FIELDS and k != "device":
            setattr(d, k, v)
    return d


def read_registry(path: Path) -> dict[str, Any]:
    """The registry file as saved: ``{"format", "saved_ms", "pid", "overflow", "refused", "devices": {...}}``.
    Raises OSError, or ValueError naming what is wrong."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("devices"), dict):
        raise ValueError(f"not a device registry of format {FORMAT}")
    return data


def registry_path(state_dir: str | None, base_dir: str) -> Path:
    """Where the registry is kept: ``<state.dir>/devices.json``, or ``.edgestream/devices.json`` in the config
    file's folder when ``state.dir`` is not set (like the MQTT source's subscriptions file)."""
    if state_dir:
        p = Path(state_dir).expanduser()
        return (p if p.is_absolute() else Path(base_dir) / p) / "devices.json"
    return Path(base_dir) / ".edgestream" / "devices.json"


class DeviceFeed:
    """The engine's stable hand-off to the device service (which a reload may replace): sources report
    wire messages here and attach the ports the hub can write to. ``observe`` never raises."""

    def __init__(self) -> None:
        self.service: Any = None
        self.senders: dict[str, Callable[[bytes], bool]] = {}  # serial source label -> write one payload
        self.ingests: dict[str, Any] = {}  # source label -> its Ingest (to claim seqs found lost)
        self._failed_at = 0.0

    def claim(self, label: str | None, device: str, boot: int, upto: int) -> None:
        """Tell source ``label``'s sequence tracking that ``device``'s results up to ``upto`` are counted."""
        ing = self.ingests.get(label) if label is not None else None
        if ing is not None:
            ing.claim(device, boot, upto)

    def observe(self, label: str, msg: dict[str, Any] | None, accepted: int, delta: SeqStats | None) -> None:
        svc = self.service
        if svc is None or msg is None:
            return
        try:
            svc.registry.observe(label, msg, accepted, delta)
        except Exception as e:  # a registry bug must never cost a record
            now = time.monotonic()
            if now - self._failed_at >= 60:
                self._failed_at = now
                log.exception("device registry: could not take a message from %s: %s: %s", label,
                              type(e).__name__, e)

    def attach(self, label: str, send: Callable[[bytes], bool]) -> None:
        """A serial source offers its port: ``send(payload)`` frames and writes one wire message."""
        self.senders[label] = send

    def detach(self, label: str, send: Callable[[bytes], bool] | None = None) -> None:
        if send is None or self.senders.get(label) is send:
            self.senders.pop(label, None)
