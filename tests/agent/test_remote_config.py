# Remote config through the link, as the hub's messages arrive: ack/nack,
# versions (bounds and the forced way back), persistence, refusal of bad
# payloads, and a heap too small for a config. Runs under CPython and
# MicroPython (the esp32 heap of the board build).
import json
import os

from edgestream_shared.decoder import decode  # the biggest modules first, on an empty heap
import edgestream_agent.config  # noqa: F401
from devtest import MICROPYTHON
from edgestream_agent.link import Link
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


class Applied:
    # stands in for Agent.apply: records the configs, or raises `fail`
    def __init__(self, fail=None):
        self.configs = []
        self.fail = fail

    def apply(self, c, validated=False):
        if self.fail is not None:
            raise self.fail
        self.configs.append(c)


def make(path=None, version=1, fail=None):
    lk = Link({"device": "d1", "version": version, "transport": None}, 7, path=path)
    lk.agent = Applied(fail)
    return lk


def send(lk, payload):
    # -> the ack the link queued for it (exactly one per message)
    lk._ctrl = []  # (no transport takes them away here)
    lk._rx(payload, "config")
    assert len(lk._ctrl) == 1
    kind, ack = lk._ctrl[0]
    assert kind == "ack"
    return decode(ack)


def test_valid_config_is_applied_persisted_and_acked():
    path = _path("ok")
    lk = make(path)
    a = send(lk, encode_config("d1", 2, cfg(500)))
    assert a["ok"] is True and a["version"] == 2 and a["boot"] == 7 and "error" not in a
    assert lk.agent.configs[0]["sensors"][0]["windows"][0]["size_ms"] == 500
    with open(path) as f:
        saved = json.loads(f.read())
    assert saved["version"] == 2 and lk.version == 2 and lk.cfg_applied == 1


def test_invalid_config_is_refused_naming_the_field_and_changes_nothing():
    lk = make()
    a = send(lk, encode_config("d1", 2, cfg(0)))
    assert a["ok"] is False and a["version"] == 2
    assert a["error"].startswith("sensors[0].windows[0].size_ms: "), a
    assert lk.agent.configs == [] and lk.version == 1 and lk.cfg_refused == 1


def test_transport_section_is_validated_too():
    c = cfg()
    c["transport"] = {"type": "mqtt", "mqtt": {"host": "h", "port": 70000}}
    a = send(make(), encode_config("d1", 2, c))
    assert a["ok"] is False and a["error"].startswith("transport.mqtt.port: "), a


def test_versions_same_is_acked_again_older_is_refused():
    lk = make()
    assert send(lk, encode_config("d1", 1, cfg()))["ok"] is True  # the retained copy again
    lk.version = 5
    a = send(lk, encode_config("d1", 3, cfg()))
    assert a["ok"] is False and a["version"] == 3 and a["error"].startswith("version: 3 is older"), a
    assert '"force": true' in a["error"]  # the nack says the way back
    a = send(lk, encode_config("d1", 6, cfg(version=4)))
    assert a["ok"] is False and a["error"].startswith("config.version: ")
    assert lk.agent.configs == []


def test_versions_out_of_31_bits_are_refused_with_the_reason():
    lk = make()
    for v in (0, 2 ** 31, 2 ** 70, -1):
        a = send(lk, encode_config("d1", v, cfg()))
        assert a["ok"] is False and a["error"] == "version: expected an integer in 1..2147483647", a
        assert a["version"] == 0  # (not a version the ack can carry)
    a = send(lk, encode_config("d1", 2 ** 31 - 1, cfg()))
    assert a["ok"] is True and a["version"] == 2 ** 31 - 1 and lk.version == 2 ** 31 - 1
    # the agent.json a board starts with is bounded the same way
    from edgestream_agent.config import ConfigError, validate
    try:
        validate(cfg(version=2 ** 31))
    except ConfigError as e:
        assert str(e) == "version: must be <= 2147483647"
    else:
        raise AssertionError("accepted version 2**31")


def test_force_takes_a_stuck_high_version_back_and_persists_it():
    path = _path("force")
    lk = make(path, version=2 ** 31 - 1)
    assert send(lk, encode_config("d1", 3, cfg(700)))["ok"] is False  # stuck: older
    a = send(lk, encode_config("d1", 3, cfg(700), force=True))
    assert a["ok"] is True and a["version"] == 3 and lk.version == 3
    assert lk.agent.configs[-1]["sensors"][0]["windows"][0]["size_ms"] == 700
    with open(path) as f:
        assert json.loads(f.read())["version"] == 3  # survives a reboot
    # from there on the ordinary rule holds again
    assert send(lk, encode_config("d1", 4, cfg(800)))["ok"] is True
    assert send(lk, encode_config("d1", 3, cfg(700)))["ok"] is False


def test_other_device_and_device_change_are_refused():
    lk = make()
    a = send(lk, encode_config("d2", 2, cfg()))
    assert a["ok"] is False and a["error"].startswith("dev: ") and a["version"] == 2
    c = cfg()
    c["device"] = "d9"
    a = send(lk, encode_config("d1", 2, c))
    assert a["ok"] is False and a["error"].startswith("device: ")


def test_malformed_payloads_are_nacked_with_the_reason_and_the_version_when_there_is_one():
    lk = make()
    cases = [(b"", "payload: empty", 0), (b"{nope", "payload: not valid", 0),
             (b"[1]", "payload: expected a JSON object", 0),
             (b'{"v":1,"dev":"d1","kind":"status","boot":1,"state":"online"}', "kind: ", 0),
             (b'{"v":1,"dev":"d1","kind":"config","version":-1,"config":{}}', "version: ", 0),
             (b'{"v":1,"dev":"d1","kind":"config","version":9,"config":{}', "payload: not valid", 9),
             (b'{"v":1,"dev":"d1","kind":"config","config":{"version":8},"version":9,"x":1}', "message: ", 9)]
    if not MICROPYTHON:  # on a board the MQTT rx_bytes cap refuses these first
        cases.append((b"x" * 70000, "payload: 70000 bytes", 0))
    for payload, start, version in cases:
        a = send(lk, payload)
        assert a["ok"] is False and a["version"] == version and a["error"].startswith(start), (payload[:20], a)
    assert lk.cfg_refused == len(cases)


def test_apply_failure_is_a_nack_and_keeps_the_version():
    lk = make(fail=OSError("sensor bus down"))
    a = send(lk, encode_config("d1", 2, cfg()))
    assert a["ok"] is False and a["error"].startswith("apply: OSError") and lk.version == 1


def test_no_heap_outside_a_sensor_build_names_the_apply_step():
    # MemoryError from the port (loading reconfig, a source module) carries its own text: the nack names
    # the step, not "build memory allocation failed, ..."
    lk = make(fail=MemoryError("memory allocation failed, allocating 640 bytes"))
    a = send(lk, encode_config("d1", 2, cfg()))
    assert a["ok"] is False and a["error"].startswith("memory: not enough heap to apply the config"), a
    lk = make(fail=MemoryError("sensors[0] (t)"))
    a = send(lk, encode_config("d1", 2, cfg()))
    assert a["error"].startswith("memory: not enough heap to build sensors[0] (t)"), a
    assert lk.version == 1


def test_a_config_too_big_for_the_heap_is_refused_and_the_next_ones_are_handled():
    # On the board's heap a config whose buffers do not fit is refused with
    # the sensor that did not fit and its version; the heap is given back
    # (what the attempt loaded included), so an invalid config after it is
    # refused for its own reason and a valid one is applied.
    from edgestream_agent.agent import Agent
    base = {"device": "d1", "version": 1,
            "sensors": [{"name": "t", "period_ms": 100, "source": {"type": "sim"},
                         "windows": [{"name": "w", "size_ms": 1000, "aggregates": ["count", "avg"]}]}]}
    lk = Link(dict(base, transport=None), 7)
    lk.agent = Agent(json.loads(json.dumps(base)))
    big = json.loads(json.dumps(base))
    # 400,000 slots of 8 bytes: more than any board's heap (a host has it)
    big["sensors"].append({"name": "x", "period_ms": 100, "filters": [{"median": 5}, {"ema": 0.5}],
                           "windows": [{"name": "s", "size_ms": 60000, "every_ms": 1000,
                                        "capacity": 400000}]})
    del big["version"]
    bad = json.loads(json.dumps(base))
    bad["sensors"][0]["period_ms"] = 0
    del bad["version"]
    good = json.loads(json.dumps(base))
    good["sensors"][0]["windows"][0]["size_ms"] = 2000
    del good["version"]
    free = None
    if MICROPYTHON:
        import gc
        gc.collect()
        free = gc.mem_free()
        a = send(lk, encode_config("d1", 5, big))
        assert a["ok"] is False and a["version"] == 5, a
        assert a["error"].startswith("memory: not enough heap to build sensors[1] (x) ("), a
        gc.collect()
        assert gc.mem_free() >= free - 256, (free, gc.mem_free())  # nothing of the attempt stays
        a = send(lk, encode_config("d1", 6, bad))
        assert a["ok"] is False and a["version"] == 6 and a["error"].startswith("sensors[0].period_ms:"), a
    a = send(lk, encode_config("d1", 7, good))
    assert a["ok"] is True and a["version"] == 7, a
    assert lk.agent.sensors[0].windows[0].size == 2000


def test_a_heap_too_full_to_validate_nacks_with_the_version_and_recovers():
    # ballast fills the heap but for one block of 1.5 KB, freed just before
    # the message comes: room for the nack, too little to read and validate
    # the message. The nack still carries its version and says why; with the
    # heap back, the same config is applied.
    lk = make()
    big = {"device": "d1", "sensors": [{"name": "t%d" % i, "period_ms": 100, "filters": [{"median": 3}],
                                        "windows": [{"name": "w", "size_ms": 900}]} for i in range(8)]}
    payload = encode_config("d1", 12, big)
    if MICROPYTHON:
        import gc
        lk._ctrl = []
        ballast = [None] * 2000  # made at its full length: a growing list could leave a hole
        gc.collect()
        room = bytearray(1536)
        k = 0
        for size in (4096, 1024, 256, 64, 16):
            try:
                while k < len(ballast):
                    ballast[k] = bytearray(size)
                    k += 1
            except MemoryError:
                pass
        del room
        lk._rx(payload, "config")
        for k in range(len(ballast)):  # (a list the stack still points at frees nothing)
            ballast[k] = None
        gc.collect()
        assert len(lk._ctrl) == 1
        a = decode(lk._ctrl[0][1])
        assert a["ok"] is False and a["version"] == 12, a
        assert a["error"].startswith("memory: not enough heap to "), a
    a = send(lk, payload)
    assert a["ok"] is True and a["version"] == 12, a


def test_a_fifth_waiting_message_is_refused_busy_with_its_version():
    # the transport queues at most 4 messages from the hub; one more is nacked at once, with its version
    lk = make()
    lk._ctrl = []
    for v in (2, 3, 4, 5):
        lk.inbox(encode_config("d1", v, cfg()), "config")
    lk.inbox(encode_config("d1", 6, cfg()), "config")
    assert len(lk._inbox) == 4 and len(lk._ctrl) == 1
    a = decode(lk._ctrl[0][1])
    assert a["ok"] is False and a["version"] == 6 and a["error"].startswith("busy: 4 messages are waiting"), a
    assert lk.rx_refused == 1 and lk.cfg_refused == 1


def test_a_config_the_agent_runs_is_acked_even_when_the_heap_runs_out_after_it():
    # applied and saved, then no heap for the console line: still an ack (ok), with the version
    # now running; never a nack for a config the agent runs (the hub would send it again)
    import edgestream_agent.link as link
    path = _path("after")
    lk = make(path)
    say = link.say

    def short(text):
        if "applied" in text:
            raise MemoryError("memory allocation failed, allocating 96 bytes")
        say(text)
    link.say = short
    try:
        a = send(lk, encode_config("d1", 2, cfg(2000)))
    finally:
        link.say = say
    assert a["ok"] is True and a["version"] == 2, a
    assert lk.version == 2 and lk.cfg_applied == 1 and len(lk.agent.configs) == 1
    with open(path) as f:
        assert json.load(f)["version"] == 2
    os.remove(path)
