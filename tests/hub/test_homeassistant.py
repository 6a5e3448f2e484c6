"""Home Assistant discovery entries (edgestream_hub.homeassistant) against MQTT discovery's documented keys."""

from __future__ import annotations

import json

from edgestream_hub.devices import DeviceState
from edgestream_hub.homeassistant import entries, slug

# The configuration variables Home Assistant documents for MQTT discovery of these platforms
# (home-assistant.io/integrations/sensor.mqtt, binary_sensor.mqtt, and mqtt/#discovery-messages).
COMMON = {"availability", "availability_mode", "availability_template", "availability_topic", "device",
          "device_class", "enabled_by_default", "encoding", "entity_category", "entity_picture", "expire_after",
          "force_update", "icon", "json_attributes_template", "json_attributes_topic", "name", "object_id",
          "default_entity_id", "payload_available", "payload_not_available", "platform", "qos", "state_topic",
          "unique_id", "value_template", "origin"}
KEYS = {"sensor": COMMON | {"last_reset_value_template", "options", "suggested_display_precision", "state_class",
                            "unit_of_measurement"},
        "binary_sensor": COMMON | {"off_delay", "payload_off", "payload_on"}}
DEVICE_KEYS = {"configuration_url", "connections", "hw_version", "identifiers", "manufacturer", "model", "model_id",
               "name", "serial_number", "suggested_area", "sw_version", "via_device"}
ORIGIN_KEYS = {"name", "sw_version", "support_url"}
SENSOR_DEVICE_CLASSES = {"data_size", "duration"}  # the ones used, both documented sensor device classes
STATE_CLASSES = {"measurement", "total", "total_increasing"}


def check_entry(topic: str, payload: bytes, prefix: str = "edgestream", ha: str = "homeassistant") -> dict:
    """One discovery entry, checked against the documented schema; returns its body."""
    parts = topic.split("/")
    assert len(parts) == 4 and parts[0] == ha and parts[3] == "config", topic
    component, object_id = parts[1], parts[2]
    body = json.loads(payload)
    assert set(body) <= KEYS[component], set(body) - KEYS[component]
    assert body["unique_id"] == object_id and slug(object_id) == object_id
    assert body["state_topic"].startswith(prefix + "/") and body["name"]
    dev = body["device"]
    assert set(dev) <= DEVICE_KEYS and dev["identifiers"] and dev["name"]
    assert set(body["origin"]) <= ORIGIN_KEYS and body["origin"]["name"]
    status = body["availability_topic"]
    assert status.endswith("/status") and body["payload_available"] == "online"
    assert body.get("state_class", "measurement") in STATE_CLASSES
    if component == "sensor":
        assert body.get("device_class", "data_size") in SENSOR_DEVICE_CLASSES
    else:
        assert body["device_class"] == "connectivity" and (body["payload_on"], body["payload_off"]) == \
            ("online", "offline")
    assert body["value_template"].count("{{") == body["value_template"].count("}}") == 1
    return body


def test_every_entry_keeps_to_the_documented_keys():
    d = DeviceState("pump.3", agent_version="0.1.0", firmware="mpy-1.29.0", platform="esp32",
                    series=[["temp", "w10s", ["avg", "count"]], ["flow", "w1m", ["sum"]]])
    got = entries("plant/a", "homeassistant", "pump.3", d, "0.1.0")
    bodies = [check_entry(t, p, prefix="plant/a") for t, p in got]
    uniques = [b["unique_id"] for b in bodies]
    assert len(uniques) == len(set(uniques)) == 1 + 7 + 3
    # a device id with a dot gets an object id HA accepts, and a suffix so it cannot clash with "pump_3"
    assert all(u.startswith(slug("edgestream_pump.3")[:17]) for u in uniques) and slug("pump.3") != "pump_3"
    by_name = {b["name"]: b for b in bodies}
    assert by_name["Heap free"]["value_template"] == "{{ value_json.metrics.heap_free }}"
    assert by_name["Heap free"]["state_topic"] == "plant/a/pump.3/metrics"
    avg = by_name["temp w10s avg"]
    assert avg["state_topic"] == "plant/a/pump.3/results"
    assert "selectattr('sensor', 'eq', 'temp')" in avg["value_template"] and "aggs['avg']" in avg["value_template"]
    assert avg["device"] == {"identifiers": ["edgestream_" + slug("pump.3")], "name": "pump.3",
                             "manufacturer": "EdgeStream", "model": "EdgeStream agent (esp32)",
                             "sw_version": "0.1.0", "hw_version": "mpy-1.29.0"}
