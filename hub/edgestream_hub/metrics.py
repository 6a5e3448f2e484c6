"""The engine's Prometheus metrics, created against an injected ``CollectorRegistry``.

Names follow ``edgestream_<subsystem>_<name>_<unit>``; the only label is
``component`` (a configured label, never a raw device field), except
``result`` on config reloads and ``component`` + ``code`` on HTTP refusals.
Imported only by ``hub run``: ``hub check`` never pays for prometheus_client.

Per-device metrics (``DEVICE_METRICS``, label ``device``) come from the device
registry when hub.yaml has a ``devices`` section, read at scrape time by
``DeviceCollector``: one series per tracked device, so their number is bounded
by ``devices.max_devices``; devices beyond it are only counted
(``edgestream_devices_overflow_total``).

Every series exists from the start: ``declare(kind, component)`` creates, at
0, each metric a component of that kind reports (chosen from ``METRICS`` by
the subsystem in the name, see ``scope``), so ``increase()`` and ``rate()``
alert on a component's first event, not its second. The registry also holds
the standard ``process_*``, ``python_gc_*`` and ``python_info`` metrics.
"""

from __future__ import annotations

from typing import Any

#: (name, help, kind) — documented in docs/hub.md.
METRICS: list[tuple[str, str, str]] = [
    ("edgestream_source_records_total", "Records a source emitted into its pipelines.", "counter"),
    ("edgestream_source_decode_errors_total", "Payloads, frames or lines a source could not decode.", "counter"),
    ("edgestream_source_gaps_total", "Sequence gaps seen (a device's seq jumped forward).", "counter"),
    ("edgestream_source_missing_records_total", "Records missing in those gaps (when the gap was seen).", "counter"),
    ("edgestream_source_gap_fills_total", "Records that arrived late into a gap (kept).", "counter"),
    ("edgestream_source_duplicates_total", "Records dropped as duplicates (seq seen again in the same boot).",
     "counter"),
    ("edgestream_source_reboots_total", "Device reboots seen (a new boot id).", "counter"),
    ("edgestream_source_forgotten_gaps_total", "Sequence gaps forgotten because a device had more open at once "
     "than the tracker remembers.", "counter"),
    ("edgestream_source_unchecked_records_total", "Records kept without a duplicate check (their seq fell below a "
     "forgotten gap).", "counter"),
    ("edgestream_source_reconnects_total", "Reconnections or reopens of a source's link.", "counter"),
    ("edgestream_source_unacked_messages", "Messages a source received and has not acknowledged yet (they wait "
     "for a checkpoint; refreshed every 25 ms).", "gauge"),
    ("edgestream_source_http_refusals_total", "Requests or connections an HTTP source refused, by status code.",
     "counter"),
    ("edgestream_pipeline_records_in_total", "Records taken into a pipeline's processors.", "counter"),
    ("edgestream_pipeline_records_out_total", "Records a pipeline handed to its sinks.", "counter"),
    ("edgestream_pipeline_errors_total", "Processor failures (the batch goes to the dead-letter sink).", "counter"),
    ("edgestream_pipeline_queue_records", "Records waiting in a pipeline's input queue.", "gauge"),
    ("edgestream_sink_records_total", "Records a sink wrote.", "counter"),
    ("edgestream_sink_errors_total", "Failed write attempts of a sink (each retried with backoff).", "counter"),
    ("edgestream_sink_dropped_records_total", "Records dropped by a sink's drop_oldest policy, abandoned "
     "at a stop that ran out of time, or for a destination gone for good (a closed stdout).", "counter"),
    ("edgestream_sink_queue_records", "Records waiting in a sink's input queue.", "gauge"),
    ("edgestream_sink_nonfinite_values_total", "Non-finite numbers (NaN, infinities) a sink wrote as null.",
     "counter"),
    ("edgestream_hub_dead_letters_total", "Records rejected by a component (label: the rejecting component).",
     "counter"),
    ("edgestream_hub_late_records_total", "Late event-time records reported by a processor.", "counter"),
    ("edgestream_hub_config_reloads_total", "Config reloads by result (ok, refused, failed).", "counter"),
    ("edgestream_api_requests_total", "REST API and console answers by status code (refusals included).",
     "counter"),
    ("edgestream_processor_live_states", "Windows and groups a stateful processor holds (refreshed every second).",
     "gauge"),
    ("edgestream_processor_state_bytes", "Approximate bytes of state a stateful processor holds (refreshed "
     "every second).", "gauge"),
    ("edgestream_processor_limited_records_total", "Records a stateful processor dead-lettered, and window states "
     "it emitted early, because its state reached max_keys or max_state_bytes.", "counter"),
]
#: Per-device metrics: (name, help, kind, DeviceState field, scale). Counters the agent keeps restart at 0
#: when it reboots (Prometheus' ``rate()`` and ``increase()`` handle that); the hub's own go on.
DEVICE_METRICS: list[tuple[str, str, str, str, float]] = [
    ("edgestream_device_online", "1 while the device is online (status topic, or heard within offline_after).",
     "gauge", "online", 1),
    ("edgestream_device_last_seen_timestamp_seconds", "When the hub last heard from the device (Unix time).",
     "gauge", "last_seen", 0.001),
    ("edgestream_device_reboots_total", "Reboots the hub saw (a new boot id).", "counter", "reboots", 1),
    ("edgestream_device_heap_free_bytes", "Free heap the device reported.", "gauge", "heap_free", 1),
    ("edgestream_device_loop_lag_seconds", "Largest scheduler loop lag the device reported (health lag_max_ms).",
     "gauge", "loop_lag_ms", 0.001),
    ("edgestream_device_link_failures_total", "Failed connection attempts and dropped links, as the device counts "
     "them (this boot).", "counter", "link_failures", 1),
    ("edgestream_device_results_sent_total", "Results the device delivered (confirmed by the broker, or written to "
     "the port), as it counts them (this boot).", "counter", "results_sent", 1),
    ("edgestream_device_results_dropped_total", "Results the device dropped unsent (buffer full), as it counts them "
     "(this boot).", "counter", "results_dropped", 1),
    ("edgestream_device_results_resent_total", "Results the device sent again after a reconnect (this boot).",
     "counter", "results_resent", 1),
    ("edgestream_device_results_received_total", "Results the hub received from the device (duplicates not "
     "counted).", "counter", "results_received", 1),
    ("edgestream_device_gaps_total", "Sequence gaps the hub saw in what the device sent.", "counter", "gaps", 1),
    ("edgestream_device_duplicates_total", "Records of the device the hub dropped as duplicates.", "counter",
     "duplicates", 1),
    ("edgestream_device_missing_records_total", "Records of the device that never arrived: missing in gaps, and "
     "delivered results the hub never received.", "counter", "missing", 1),
    ("edgestream_device_config_desired_version", "Version of the device's desired config.", "gauge",
     "config_desired", 1),
    ("edgestream_device_config_reported_version", "Config version the device reported running.", "gauge",
     "config_reported", 1),
]
#: Device-service metrics without labels: (name, help, kind).
DEVICES_METRICS: list[tuple[str, str, str]] = [
    ("edgestream_devices_tracked", "Devices in the registry.", "gauge"),
    ("edgestream_devices_overflow_total", "Devices not tracked because the registry holds devices.max_devices "
     "(each counted once).", "counter"),
    ("edgestream_devices_config_sends_total", "Desired configs the hub sent to devices.", "counter"),
    ("edgestream_devices_time_sends_total", "Time messages the hub sent to devices.", "counter"),
    ("edgestream_devices_config_refusals_total", "Configs devices refused (nacks), or the hub could not send.",
     "counter"),
    ("edgestream_devices_desired_invalid", "Desired-config files not used now (the log says why).", "gauge"),
    ("edgestream_devices_invalid_health_values_total", "Health values out of the range an agent reports, ignored "
     "(the log says which).", "counter"),
]

#: Checkpoint metrics without labels, read from the engine's ``Checkpointer.stats()`` at scrape time:
#: (name, help, kind, stats key). A gauge with nothing to say yet (no checkpoint) has no sample.
STATE_METRICS: list[tuple[str, str, str, str]] = [
    ("edgestream_state_checkpoints_total", "Checkpoints written.", "counter", "checkpoints"),
    ("edgestream_state_checkpoint_errors_total", "Checkpoints that failed: a write error (a full disk), a snapshot "
     "that failed, or a round abandoned after 60 s. Nothing is acknowledged for them.", "counter", "errors"),
    ("edgestream_state_checkpoint_duration_seconds", "How long the last checkpoint took, from the cut to the "
     "file renamed into place.", "gauge", "duration_s"),
    ("edgestream_state_checkpoint_size_bytes", "Size of the last checkpoint file (a delta holds only what "
     "changed).", "gauge", "size"),
    ("edgestream_state_checkpoint_age_seconds", "Seconds since the newest good checkpoint was written (the one "
     "resumed from, until the first one of this run).", "gauge", "last_good_ms"),
]

#: label names of the metrics not labelled by ``component`` alone
LABELS: dict[str, list[str]] = {"edgestream_hub_config_reloads_total": ["result"],
                                "edgestream_api_requests_total": ["code"],
                                "edgestream_source_http_refusals_total": ["component", "code"]}

#: The reload results, each a series from the start.
RELOAD_RESULTS = ("ok", "refused", "failed")

#: What a processor's ``state_stats()`` key is exported as.
STATE_GAUGES = {"live_states": "edgestream_processor_live_states", "held_bytes": "edgestream_processor_state_bytes"}

#: Metrics whose subsystem does not say which components report them ("stateful": a processor
#: with a ``state_stats()`` method).
_SCOPES: dict[str, tuple[str, ...]] = {
    "edgestream_hub_dead_letters_total": ("source", "pipeline", "processor", "sink"),
    "edgestream_hub_late_records_total": ("processor",),
    **{name: ("stateful",) for name in STATE_GAUGES.values()},
    "edgestream_processor_limited_records_total": ("stateful",),
}


def scope(name: str) -> tuple[str, ...]:
    """The kinds of component a metric has a series for: ``edgestream_source_*`` every source, and
    likewise pipelines, sinks and processors; hub-wide ones as ``_SCOPES`` says (none: by ``result``).

    >>> scope("edgestream_sink_errors_total"), scope("edgestream_hub_late_records_total")
    (('sink',), ('processor',))
    """
    if name in _SCOPES:
        return _SCOPES[name]
    if name in LABELS:  # labelled by more than the component: the component makes its own series
        return ()
    sub = name.split("_")[1]
    return (sub,) if sub in ("source", "pipeline", "processor", "sink") else ()


class HubMetrics:
    """All engine metrics in one place; ``child(name, component)`` caches label children."""

    def __init__(self, registry: Any = None) -> None:
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Gauge,
            GCCollector,
            PlatformCollector,
            ProcessCollector,
        )

        self.registry = registry if registry is not None else CollectorRegistry()
        self._m: dict[str, Any] = {}
        self._by_kind: dict[str, list[str]] = {}
        for name, doc, kind in METRICS:
            label = LABELS.get(name, ["component"])
            if kind == "counter":
                # prometheus_client appends _total itself
                self._m[name] = Counter(name[: -len("_total")], doc, label, registry=self.registry)
            else:
                self._m[name] = Gauge(name, doc, label, registry=self.registry)
            for k in scope(name):
                self._by_kind.setdefault(k, []).append(name)
        self._children: dict[tuple[str, ...], Any] = {}
        self._devices = False
        for result in RELOAD_RESULTS:
            self.child("edgestream_hub_config_reloads_total", result)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

    def declare(self, kind: str, component: str) -> None:
        """Create, at 0, every series a component of this kind reports (``source``, ``pipeline``,
        ``processor``, ``stateful``, ``sink``)."""
        for name in self._by_kind.get(kind, ()):
            self.child(name, component)

    def child(self, name: str, component: str) -> Any:
        key = (name, component)
        c = self._children.get(key)
        if c is None:
            c = self._children[key] = self._m[name].labels(component)
        return c

    def labelled(self, name: str, *values: str) -> Any:
        """The child of a metric with several labels (``LABELS``), cached like ``child``."""
        key = (name, *values)
        c = self._children.get(key)
        if c is None:
            c = self._children[key] = self._m[name].labels(*values)
        return c

    def inc(self, name: str, component: str, n: float = 1) -> None:
        if n:
            self.child(name, component).inc(n)

    def value(self, name: str, **labels: str) -> float:
        """Current sample value (0 when never set): for tests and the CLI."""
        v = self.registry.get_sample_value(name, labels)
        return v or 0.0

    def add_devices(self, feed: Any) -> None:
        """Export the device registry behind ``feed`` (a ``DeviceFeed``) at every scrape."""
        if not self._devices:
            self.registry.register(DeviceCollector(feed))
            self._devices = True

    def add_state(self, checkpointer: Any) -> None:
        """Export the checkpoint metrics (``STATE_METRICS``) of ``checkpointer`` at every scrape."""
        self.registry.register(StateCollector(checkpointer))

    def serve(self, listen: str, *, read_timeout_s: float = 10.0, max_connections: int = 16) -> Any:
        """Start the /metrics HTTP endpoint on ``host:port``; returns the running server (``stop()``)."""
        return serve_registry(self.registry, listen, read_timeout_s=read_timeout_s, max_connections=max_connections)


def serve_registry(registry: Any, listen: str, *, read_timeout_s: float = 10.0, max_connections: int = 16) -> Any:
    """Serve a prometheus_client registry's /metrics on ``host:port``; returns the running server (``stop()``).

    Served by the HTTP source's ``BoundedHTTPServer`` and ``DeadlineHandler``: a request whose head
    has not all arrived after ``read_timeout_s`` is cut (however slowly it trickles in), more than
    ``max_connections`` at once are answered 503, and a stop never waits for a client. Answers as
    prometheus_client does (text or OpenMetrics, gzip if asked).
    """
    import logging

    from prometheus_client.exposition import MetricsHandler

    from edgestream_hub.httpserver import BoundedHTTPServer, DeadlineHandler
    from edgestream_hub.spec import parse_hostport

    host, port = parse_hostport(listen)  # the config check already refused what this would

    class Handler(DeadlineHandler, MetricsHandler):
        pass

    Handler.registry = registry
    server = BoundedHTTPServer((host, port), Handler, max_connections=max_connections,
                               read_timeout_s=read_timeout_s, log=logging.getLogger("edgestream.hub.metrics"),
                               name="metrics")
    server.serve()
    return server


class DeviceCollector:
    """Reads the device registry at scrape time: ``DEVICE_METRICS`` per device, ``DEVICES_METRICS`` once.
    Yields nothing while no device service runs."""

    def __init__(self, feed: Any) -> None:
        self.feed = feed

    def describe(self) -> list[Any]:
        return []  # names are fixed and disjoint from the engine's; nothing to check at registration

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        svc = self.feed.service
        if svc is None:
            return
        reg = svc.registry
        with reg.lock:
            rows = [(d.device, d) for d in reg.devices.values()]
            fams = []
            for name, doc, kind, attr, scale in DEVICE_METRICS:
                fam: Any = (CounterMetricFamily(name[: -len("_total")], doc, labels=["device"]) if kind == "counter"
                            else GaugeMetricFamily(name, doc, labels=["device"]))
                for dev, d in rows:
                    v = getattr(d, attr)
                    if v is not None:
                        fam.add_metric([dev], float(v) * scale)
                fams.append(fam)
            tracked, overflow, invalid = len(rows), reg.overflow, reg.invalid_health
        values = {"edgestream_devices_tracked": tracked, "edgestream_devices_overflow_total": overflow,
                  "edgestream_devices_config_sends_total": svc.config_sends,
                  "edgestream_devices_time_sends_total": svc.time_sends,
                  "edgestream_devices_config_refusals_total": svc.config_refusals,
                  "edgestream_devices_desired_invalid": len(svc.desired.errors),
                  "edgestream_devices_invalid_health_values_total": invalid}
        for name, doc, kind in DEVICES_METRICS:
            f: Any = (CounterMetricFamily(name[: -len("_total")], doc) if kind == "counter"
                      else GaugeMetricFamily(name, doc))
            f.add_metric([], float(values[name]))
            fams.append(f)
        yield from fams


class StateCollector:
    """Reads a ``Checkpointer``'s ``stats()`` at scrape time (``STATE_METRICS``)."""

    def __init__(self, checkpointer: Any) -> None:
        self.checkpointer = checkpointer

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Any:
        import time

        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        st = self.checkpointer.stats()
        for name, doc, kind, key in STATE_METRICS:
            v = st.get(key)
            if kind == "counter":
                c = CounterMetricFamily(name[: -len("_total")], doc)
                c.add_metric([], float(v or 0))
                yield c
                continue
            g = GaugeMetricFamily(name, doc)
            if v is not None:
                g.add_metric([], max(0.0, time.time() - v / 1000) if key == "last_good_ms" else float(v))
            yield g
