# Remote config handling: ack/nack, versions, persistence, refusal of bad
# payloads. Runs under CPython and MicroPython.
import json
import os

from edgestream_shared.decoder import decode  # the biggest modules first, on an empty heap
import edgestream_agent.config  # noqa: F401
from devtest import MICROPYTHON
from edgestream_agent.remote_config import RemoteConfig
from edgestream_shared.encoder import encode_config


def cfg(size_ms=1000, version=None):
    c = {"device": "d1", "sensors": [{"name": "t", "period_ms": 100,
                                      "windows": [{"name": "w", "size_ms": size_ms}]}]}
    if version is not None:
        c["version"] = version
    return c


def _path(name):
    d = "/tmp" if MICROPYTHON else os.environ.get("TMPDIR", "/tmp")
    return d + "/edgestream-rc-" + name + ".json"


def make(path=None, applied=None):
    # validate=None: the agent's own (config.validate, the transport included)
    return RemoteConfig("d1", 7, 1, path, apply=(applied.append if applied is not None else None))


def test_valid_config_is_applied_persisted_and_acked():
    path = _path("ok")
    applied = []
    rc = make(path, applied)
    version, ok, err, ack = rc.handle(encode_config("d1", 2, cfg(500)))
    assert (version, ok, err) == (2, True, None)
    m = decode(ack)
    assert m["kind"] == "ack" and m["ok"] is True and m["version"] == 2 and m["boot"] == 7
    assert applied[0]["sensors"][0]["windows"][0]["size_ms"] == 500
    with open(path) as f:
        saved = json.loads(f.read())
    assert saved["version"] == 2 and rc.version == 2 and rc.accepted == 1


def test_invalid_config_is_refused_naming_the_field_and_changes_nothing():
    applied = []
    rc = make(None, applied)
    version, ok, err, ack = rc.handle(encode_config("d1", 2, cfg(0)))
    assert not ok and version == 2
    assert err.startswith("sensors[0].windows[0].size_ms: "), err
    assert decode(ack)["error"] == err
    assert applied == [] and rc.version == 1 and rc.refused == 1


def test_transport_section_is_validated_too():
    c = cfg()
    c["transport"] = {"type": "mqtt", "mqtt": {"host": "h", "port": 70000}}
    _, ok, err, _ = make().handle(encode_config("d1", 2, c))
    assert not ok and err.startswith("transport.mqtt.port: "), err


def test_versions_same_is_acked_again_older_is_refused():
    applied = []
    rc = make(None, applied)
    assert rc.handle(encode_config("d1", 1, cfg()))[:3] == (1, True, None)  # retained copy again
    v, ok, err, _ = rc.handle(encode_config("d1", 0, cfg()))
    assert not ok and err.startswith("version: ")
    v, ok, err, _ = rc.handle(encode_config("d1", 3, cfg(version=4)))
    assert not ok and err.startswith("config.version: ")
    assert applied == []


def test_other_device_and_device_change_are_refused():
    rc = make()
    _, ok, err, _ = rc.handle(encode_config("d2", 2, cfg()))
    assert not ok and err.startswith("dev: ")
    c = cfg()
    c["device"] = "d9"
    _, ok, err, _ = rc.handle(encode_config("d1", 2, c))
    assert not ok and err.startswith("device: ")


def test_malformed_payloads_are_nacked_with_the_reason():
    rc = make()
    cases = [(b"", "payload: empty"), (b"{nope", "payload: not valid"),
             (b"[1]", "payload: expected a JSON object"),
             (b'{"v":1,"dev":"d1","kind":"status","boot":1,"state":"online"}', "kind: "),
             (b'{"v":1,"dev":"d1","kind":"config","version":-1,"config":{}}', "version: ")]
    if not MICROPYTHON:  # on a board the MQTT rx_bytes cap refuses these first
        cases.append((b"x" * 70000, "payload: 70000 bytes"))
    for payload, start in cases:
        version, ok, err, ack = rc.handle(payload)
        assert not ok and version == 0 and err.startswith(start), (payload[:20], err)
        assert decode(ack)["ok"] is False
    assert rc.refused == len(cases)


def test_apply_failure_is_a_nack_and_keeps_the_version():
    def boom(c):
        raise OSError("sensor bus down")
    rc = RemoteConfig("d1", 7, 1, None, apply=boom)
    _, ok, err, _ = rc.handle(encode_config("d1", 2, cfg()))
    assert not ok and err.startswith("apply: OSError") and rc.version == 1
