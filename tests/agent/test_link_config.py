# transport section validation: defaults and errors naming the path.
# Runs under CPython and MicroPython.
from devtest import raises
from edgestream_agent.config import ConfigError
from edgestream_agent.config import validate_transport as validate


def mqtt(**kw):
    m = {"host": "10.0.0.2"}
    m.update(kw)
    return {"type": "mqtt", "mqtt": m}


def err(section):
    return str(raises(ConfigError, validate, section))


def test_defaults_are_filled_in():
    t = validate(mqtt())
    assert t["prefix"] == "edgestream" and t["buffer_bytes"] == 4096 and t["poll_ms"] == 10
    assert t["mqtt"]["port"] == 0 and t["mqtt"]["qos"] == 1 and t["mqtt"]["keepalive_s"] == 30
    assert t["serial"] is None and t["wifi"] is None and t["ntp"] is None
    assert validate(None)["type"] == "none"
    s = validate({"type": "serial"})
    assert s["serial"]["port"] == "stdio" and s["serial"]["baud"] == 115200


def test_errors_name_the_path():
    assert err({"type": "radio"}).startswith("transport.type: expected one of")
    assert err({"type": "mqtt"}) == "transport.mqtt: required when type is 'mqtt'"
    assert err({"type": "mqtt", "mqtt": {}}) == "transport.mqtt.host: required"
    assert err(mqtt(port=70000)) == "transport.mqtt.port: must be in 0..65535"
    assert err(mqtt(qos=2)).startswith("transport.mqtt.qos: expected one of")
    assert err(mqtt(tls="yes")) == "transport.mqtt.tls: expected true or false"
    assert err(mqtt(colour=1)).startswith("transport.mqtt.colour: unknown key")
    assert err(mqtt(password="x")) == "transport.mqtt.password: needs user"
    assert err(mqtt(backoff_min_ms=5000, backoff_max_ms=100)) == \
        "transport.mqtt.backoff_max_ms: must be >= backoff_min_ms"
    t = mqtt()
    t["buffer_bytes"] = 100
    assert err(t).startswith("transport.buffer_bytes: must be >= max_message + 4")
    t = mqtt()
    t["prefix"] = "a/+/b"
    assert err(t).startswith("transport.prefix: ")
    t = mqtt()
    t["spill_bytes"] = 10000
    assert err(t) == "transport.spill_path: required when spill_bytes > 0"
    t = mqtt()
    t["wifi"] = {"password": "x"}
    assert err(t) == "transport.wifi.ssid: required"
    assert err({"type": "serial", "serial": {"baud": 0}}) == "transport.serial.baud: must be > 0"
    assert err([1]) == "transport: expected an object"
    assert err(mqtt(keepalive_s=True)) == "transport.mqtt.keepalive_s: expected an integer"
