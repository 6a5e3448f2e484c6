"""Live views behind the REST API: the event bus of ``/api/events`` and the watcher that feeds it.

``EventBus`` fans events out to event-stream clients. Each client has a
bounded queue (``api.event_queue``): publishing never blocks, and a client
that falls that far behind is dropped: its queue is emptied and it gets one
final ``close`` event saying why. ``close(reason)`` (at hub stop) ends every
client the same way. An event is encoded once, whatever the number of clients.

``LiveView`` runs one thread (``api-live``) beside the engine. Four times a
second it turns what the engine's ``Taps`` took since the last turn into
events (``results`` per pipeline, ``dead_letters``, ``device_results``); once a
second it compares every device's registry entry with the last one it saw
(``devices``: the changed ones), keeps each device's health and window results
over time for the console's plots (``api.history`` points per device, for at
most ``MAX_HISTORY_DEVICES`` devices), and samples the metrics for the rates
of ``/api/pipelines`` (``pipelines``). Work per turn is bounded by the ring
sizes, not by the record rate: at high rates the plots are a sample.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from typing import Any

from edgestream_hub import jsonio

log = logging.getLogger("edgestream.hub.api")

EPOCH_MIN_MS = 946_684_800_000  # 2000-01-01: a smaller time is a board's uptime clock, not epoch
MAX_HISTORY_DEVICES = 1000  # devices whose plots are kept (least recently heard ones forgotten first)
EVENT_RECORDS = 20  # records (or points per device) one event carries at most; the count says how many came
_TICK_S = 0.25
_SLOW_EVERY = 4  # turns between device, health and rate updates (1 s)
_FIXED = frozenset(("device", "boot", "seq", "sensor", "window", "start", "end", "ts", "t", "kind", "_stream"))


def encode(name: str, data: Any, seq: int) -> bytes:
    """One Server-Sent Event: ``id``, ``event`` and one ``data`` line of strict JSON."""
    text, _ = jsonio.dumps(data)
    return f"id: {seq}\nevent: {name}\ndata: {text}\n\n".encode()


class Client:
    """One event-stream client: a bounded queue of encoded events, ended by a final ``close`` event."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._q: deque[bytes] = deque()
        self._cv = threading.Condition()
        self.done = False  # the final event is queued: nothing else will be

    def put(self, event: bytes) -> bool:
        """Queue an event; False if the client is done (or was just dropped for falling behind)."""
        with self._cv:
            if self.done:
                return False
            if len(self._q) >= self.limit:
                self._q.clear()
                self._end_locked(f"too slow: {self.limit} events were waiting (api.event_queue); reconnect")
                return False
            self._q.append(event)
            self._cv.notify()
            return True

    def end(self, reason: str) -> None:
        with self._cv:
            if not self.done:
                self._end_locked(reason)

    def _end_locked(self, reason: str) -> None:
        self._q.append(encode("close", {"reason": reason}, 0))
        self.done = True
        self._cv.notify()

    def take(self, timeout_s: float) -> list[bytes]:
        """Every queued event, waiting up to ``timeout_s`` for one; [] on timeout."""
        with self._cv:
            if not self._q:
                self._cv.wait(timeout_s)
            out = list(self._q)
            self._q.clear()
            return out


class EventBus:
    """Fan-out of events to clients; see the module doc."""

    def __init__(self, queue_size: int) -> None:
        self.queue_size = queue_size
        self._clients: set[Client] = set()
        self._lock = threading.Lock()
        self._seq = 0
        self.closed: str | None = None
        self.dropped = 0  # clients dropped for falling behind

    def subscribe(self) -> Client | None:
        """A new client, or None once the bus is closed."""
        with self._lock:
            if self.closed is not None:
                return None
            c = Client(self.queue_size)
            self._clients.add(c)
            return c

    def unsubscribe(self, c: Client) -> None:
        with self._lock:
            self._clients.discard(c)

    def __len__(self) -> int:
        return len(self._clients)

    def publish(self, name: str, data: Any) -> None:
        if not self._clients:
            return
        with self._lock:
            self._seq += 1
            event = encode(name, data, self._seq)
            clients = list(self._clients)
        for c in clients:
            if not c.put(event) and c.done:
                with self._lock:
                    if c in self._clients:
                        self._clients.discard(c)
                        self.dropped += 1
                log.warning("event stream: a client fell %d events behind and was dropped", self.queue_size)

    def close(self, reason: str) -> None:
        """End every client with a final ``close`` event; later subscriptions are refused."""
        with self._lock:
            self.closed = reason
            clients, self._clients = list(self._clients), set()
        for c in clients:
            c.end(reason)


def point(rec: dict[str, Any], seen_ms: int) -> dict[str, Any] | None:
    """A plot point of a device's window result (or reading): time, series and numeric values; None if the
    record is not one. Times before 2000 (a board's uptime clock) are replaced by when the hub saw it.

    >>> point({"device": "d", "sensor": "temp", "window": "w", "end": 2000, "ts": 2000, "avg": 20.5, "n": 3}, 7)
    {'t': 7, 'sensor': 'temp', 'window': 'w', 'values': {'avg': 20.5, 'n': 3}}
    """
    if not isinstance(rec.get("device"), str) or not isinstance(rec.get("sensor"), str):
        return None
    t = rec.get("ts")
    if not isinstance(t, (int, float)) or isinstance(t, bool) or t < EPOCH_MIN_MS:
        t = seen_ms
    values = {k: v for k, v in rec.items() if k not in _FIXED and type(v) in (int, float)}
    if not values:
        return None
    return {"t": t, "sensor": rec["sensor"], "window": rec.get("window"), "values": values}


def metric_values(registry: Any) -> dict[tuple[str, str], float]:
    """Every sample labelled by ``component`` alone, by (sample name, component): one collection."""
    out: dict[tuple[str, str], float] = {}
    for fam in registry.collect():
        for s in fam.samples:
            if len(s.labels) == 1 and "component" in s.labels and not s.name.endswith("_created"):
                out[(s.name, s.labels["component"])] = s.value
    return out


class LiveView:
    """The watcher of the module doc. ``engine`` is read afresh on every turn (a reload may change what
    it runs); ``api`` is the parsed ``api`` section."""

    def __init__(self, engine: Any, api: dict[str, Any], bus: EventBus) -> None:
        self.engine = engine
        self.bus = bus
        self.history = api["history"]
        self.health: OrderedDict[str, deque[list[Any]]] = OrderedDict()
        self.points: OrderedDict[str, deque[dict[str, Any]]] = OrderedDict()
        self._seen: dict[tuple[str, str], int] = {}
        self._devices: dict[str, dict[str, Any]] = {}
        self._health_key: dict[str, Any] = {}
        self._samples: deque[tuple[float, dict[tuple[str, str], float]]] = deque(maxlen=2)
        self._lock = threading.Lock()  # histories and samples: written here, read by request threads
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "LiveView":
        self._thread = threading.Thread(target=self._run, name="api-live", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        turn = 0
        while not self._stop.is_set():
            try:
                self.turn(slow=turn % _SLOW_EVERY == 0)
            except Exception as e:  # one bad turn must not end the live views
                log.exception("api: live view turn failed: %s: %s", type(e).__name__, e)
            turn += 1
            self._stop.wait(_TICK_S)

    # -- one turn --
    def turn(self, slow: bool) -> None:
        taps = self.engine.taps
        if taps is not None:
            self._results(taps)
            self._dead_letters(taps)
            self._sources(taps)
        if slow:
            self._sample_metrics()
            self._watch_devices()
            if len(self.bus):
                self.bus.publish("pipelines", self.pipelines(dead_letters=False))

    def _new(self, taps: Any, kind: str, name: str) -> tuple[list[Any], int]:
        """What ring ``kind``/``name`` took since the last turn, and how many that was (some may be gone)."""
        seen = self._seen.get((kind, name), 0)
        items, total = taps.since(kind, name, seen)
        self._seen[(kind, name)] = total
        return items, total - seen

    def _results(self, taps: Any) -> None:
        for name in taps.names("emitted"):
            items, n = self._new(taps, "emitted", name)
            if n:
                self.bus.publish("results", {"pipeline": name, "count": n, "records": items[-EVENT_RECORDS:]})

    def _dead_letters(self, taps: Any) -> None:
        items, n = self._new(taps, "dead_letter", "")
        if n:
            self.bus.publish("dead_letters", {"count": n, "entries": items[-EVENT_RECORDS:]})

    def _sources(self, taps: Any) -> None:
        now = int(time.time() * 1000)
        fresh: dict[str, list[dict[str, Any]]] = {}
        for name in taps.names("source"):
            items, n = self._new(taps, "source", name)
            for rec in items[-n:] if n else ():
                p = point(rec, now) if isinstance(rec, dict) else None
                if p is not None:
                    fresh.setdefault(rec["device"], []).append(p)
        if not fresh or not self.history:
            return
        with self._lock:
            for dev, pts in fresh.items():
                ring = self.points.get(dev)
                if ring is None:
                    ring = self.points[dev] = deque(maxlen=self.history)
                    if len(self.points) > MAX_HISTORY_DEVICES:
                        self.points.popitem(last=False)
                else:
                    self.points.move_to_end(dev)
                ring.extend(pts)
        self.bus.publish("device_results", {dev: pts[-EVENT_RECORDS:] for dev, pts in fresh.items()})

    def _sample_metrics(self) -> None:
        values = metric_values(self.engine.metrics.registry)
        with self._lock:
            self._samples.append((time.monotonic(), values))

    def _watch_devices(self) -> None:
        svc = self.engine.device_service
        if svc is None:
            return
        reg = svc.registry
        with reg.lock:
            rows = {dev: d.public() for dev, d in reg.devices.items()}
        changed = [row for dev, row in rows.items() if self._devices.get(dev) != row]
        self._devices = rows
        now = int(time.time() * 1000)
        if self.history:
            with self._lock:
                for row in changed:
                    dev = row["device"]
                    key = (row["boot"], row["uptime_ms"], row["heap_free"], row["loop_lag_ms"])
                    if row["uptime_ms"] is None or self._health_key.get(dev) == key:
                        continue
                    self._health_key[dev] = key
                    ring = self.health.get(dev)
                    if ring is None:
                        ring = self.health[dev] = deque(maxlen=self.history)
                        if len(self.health) > MAX_HISTORY_DEVICES:
                            gone, _ = self.health.popitem(last=False)
                            self._health_key.pop(gone, None)
                    else:
                        self.health.move_to_end(dev)
                    ring.append([now, row["heap_free"], row["loop_lag_ms"], row["online"]])
        if changed:
            self.bus.publish("devices", {"devices": changed})

    # -- views for the request handlers --
    def device_history(self, dev: str) -> tuple[list[list[Any]], list[dict[str, Any]]]:
        """(health points ``[t_ms, heap_free, loop_lag_ms, online]``, window-result points) of a device."""
        with self._lock:
            return list(self.health.get(dev, ())), list(self.points.get(dev, ()))

    def rates(self) -> tuple[dict[tuple[str, str], float], dict[tuple[str, str], float]]:
        """(the latest metric values, per-second rates between the last two samples)."""
        with self._lock:
            samples = list(self._samples)
        if not samples:
            values = metric_values(self.engine.metrics.registry)
            return values, {}
        t1, now = samples[-1]
        if len(samples) < 2:
            return now, {}
        t0, before = samples[0]
        dt = max(t1 - t0, 1e-3)
        return now, {k: max(0.0, (v - before.get(k, 0.0)) / dt) for k, v in now.items()}

    def pipelines(self, dead_letters: bool = True) -> dict[str, Any]:
        """Sources, pipelines and sinks with their counts, rates, queues and errors (``/api/pipelines``)."""
        eng = self.engine
        cfg = eng.config
        values, rates = self.rates()

        def v(name: str, comp: str) -> float:
            x = values.get((name, comp), 0.0)
            return int(x) if x.is_integer() else x  # counts read as counts

        def r(name: str, comp: str) -> float:
            return round(rates.get((name, comp), 0.0), 3)

        dl, late = "edgestream_hub_dead_letters_total", "edgestream_hub_late_records_total"
        sources = [{"name": n, "label": c.label, "type": c.type, "records": v("edgestream_source_records_total",
                    c.label), "rate": r("edgestream_source_records_total", c.label),
                    "decode_errors": v("edgestream_source_decode_errors_total", c.label),
                    "gaps": v("edgestream_source_gaps_total", c.label),
                    "missing": v("edgestream_source_missing_records_total", c.label),
                    "duplicates": v("edgestream_source_duplicates_total", c.label),
                    "dead_letters": v(dl, c.label)} for n, c in cfg.sources.items()]
        sinks = [{"name": n, "label": c.label, "type": c.type, "records": v("edgestream_sink_records_total", c.label),
                  "rate": r("edgestream_sink_records_total", c.label),
                  "errors": v("edgestream_sink_errors_total", c.label),
                  "dropped": v("edgestream_sink_dropped_records_total", c.label),
                  "queue": v("edgestream_sink_queue_records", c.label),
                  "dead_letters": v(dl, c.label)} for n, c in cfg.sinks.items()]
        pipes = []
        for n, p in cfg.pipelines.items():
            labels = [c.label for c in p.processors]
            pipes.append({"name": n, "from": p.sources, "to": p.sinks,
                          "processors": [{"label": c.label, "type": c.type} for c in p.processors],
                          "records_in": v("edgestream_pipeline_records_in_total", n),
                          "records_out": v("edgestream_pipeline_records_out_total", n),
                          "rate_in": r("edgestream_pipeline_records_in_total", n),
                          "rate_out": r("edgestream_pipeline_records_out_total", n),
                          "queue": v("edgestream_pipeline_queue_records", n),
                          "errors": v("edgestream_pipeline_errors_total", n),
                          "dead_letters": v(dl, n) + sum(v(dl, x) for x in labels),
                          "late": sum(v(late, x) for x in labels)})
        out: dict[str, Any] = {"sources": sources, "pipelines": pipes, "sinks": sinks,
                               "dead_letters_total": int(sum(x for (name, _), x in values.items() if name == dl))}
        if dead_letters:
            taps = eng.taps
            out["dead_letters"] = taps.dead_letters(taps.sizes["dead_letter"]) if taps is not None else []
        return out

