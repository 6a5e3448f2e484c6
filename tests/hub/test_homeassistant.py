"""Home Assistant discovery entries (edgestream_hub.homeassistant) against MQTT discovery's documented keys."""

from __future__ import annotations

from hubtest import check_entry

from edgestream_hub.devices import DeviceState
from edgestream_hub.homeassistant import entries, slug


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
