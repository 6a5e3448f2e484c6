"""Home Assistant MQTT discovery entries for devices (``devices.homeassistant: true``).

For every device the hub reaches over MQTT it publishes, retained, one discovery entry per entity on
``<discovery prefix>/<component>/<unique id>/config``: a connectivity ``binary_sensor`` on the
device's ``status`` topic, health ``sensor``s on its ``metrics`` topic, and one ``sensor`` per window
aggregate it sends (``temp``/``w10s``/``avg``) on its ``results`` topic. Home Assistant reads the
agent's own topics: the hub republishes no data. Every entity names the device's status topic as its
availability, so a device's entities go unavailable with its last will.

The keys used are the documented ones of MQTT discovery (``tests/hub/test_homeassistant.py`` checks
each entry against them).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")

#: health entities: (metrics key, name, unit, device_class, state_class)
HEALTH = (
    ("heap_free", "Heap free", "B", "data_size", "measurement"),
    ("lag_max_ms", "Loop lag", "ms", "duration", "measurement"),
    ("link_failures", "Link failures", None, None, "total_increasing"),
    ("results_sent", "Results sent", None, None, "total_increasing"),
    ("results_dropped", "Results dropped", None, None, "total_increasing"),
    ("uptime_ms", "Uptime", "ms", "duration", "total_increasing"),
    ("config_version", "Config version", None, None, None),
)


def slug(text: str) -> str:
    """``text`` as a discovery object id ([A-Za-z0-9_-]); a name that needed changing gets a hash suffix,
    so two names never share one."""
    if _SAFE.match(text):
        return text
    return re.sub(r"[^A-Za-z0-9_-]", "_", text) + "_" + hashlib.sha256(text.encode()).hexdigest()[:6]


def _device(dev: str, state: Any) -> dict[str, Any]:
    block: dict[str, Any] = {"identifiers": [f"edgestream_{slug(dev)}"], "name": dev, "manufacturer": "EdgeStream",
                             "model": "EdgeStream agent" + (f" ({state.platform})" if state.platform else "")}
    if state.agent_version:
        block["sw_version"] = state.agent_version
    if state.firmware:
        block["hw_version"] = state.firmware
    return block


def _common(prefix: str, dev: str, state: Any, hub_version: str) -> dict[str, Any]:
    return {"availability_topic": f"{prefix}/{dev}/status", "availability_template": "{{ value_json.state }}",
            "payload_available": "online", "payload_not_available": "offline",
            "device": _device(dev, state), "origin": {"name": "EdgeStream hub", "sw_version": hub_version}}


def entries(prefix: str, ha_prefix: str, dev: str, state: Any, hub_version: str = "0") -> list[tuple[str, bytes]]:
    """The discovery entries of one device: [(config topic, JSON payload)]. ``state`` is its ``DeviceState``."""
    out: list[tuple[str, bytes]] = []
    base = f"edgestream_{slug(dev)}"

    def add(component: str, unique: str, body: dict[str, Any]) -> None:
        body = {**body, "unique_id": unique, **_common(prefix, dev, state, hub_version)}
        out.append((f"{ha_prefix}/{component}/{unique}/config", json.dumps(body, sort_keys=True).encode()))

    add("binary_sensor", f"{base}_online", {
        "name": "Online", "state_topic": f"{prefix}/{dev}/status", "value_template": "{{ value_json.state }}",
        "payload_on": "online", "payload_off": "offline", "device_class": "connectivity",
        "entity_category": "diagnostic"})
    for key, name, unit, dclass, sclass in HEALTH:
        body: dict[str, Any] = {"name": name, "state_topic": f"{prefix}/{dev}/metrics",
                                "value_template": "{{ value_json.metrics." + key + " }}",
                                "entity_category": "diagnostic"}
        if unit:
            body["unit_of_measurement"] = unit
        if dclass:
            body["device_class"] = dclass
        if sclass:
            body["state_class"] = sclass
        add("sensor", f"{base}_{key}", body)
    for sensor, window, aggs in state.series:
        for agg in aggs:
            # the results topic carries one or more items; an entity takes the last of its own, and keeps its
            # state when a message holds none of them
            template = ("{% set r = value_json['items'] | selectattr('sensor', 'eq', '" + sensor + "')"
                        " | selectattr('window', 'eq', '" + window + "') | list %}"
                        "{{ r[-1].aggs['" + agg + "'] if r else this.state }}")
            add("sensor", f"{base}_{slug(sensor)}_{slug(window)}_{slug(agg)}", {
                "name": f"{sensor} {window} {agg}", "state_topic": f"{prefix}/{dev}/results",
                "value_template": template, "state_class": "measurement"})
    return out
