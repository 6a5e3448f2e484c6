# The agent's own wire subset (wire_out.py, wire_in.py) against the shared protocol: what it
# writes the shared decoder accepts, and what it reads it refuses with the
# field first. Runs under CPython and MicroPython.
from edgestream_shared.decoder import decode, decode_config  # the biggest module first, on an empty heap
from devtest import MICROPYTHON, raises
from edgestream_agent import ConfigError
from edgestream_agent.wire_out import begin, item, message
from edgestream_agent.wire_in import read
from edgestream_shared.encoder import Encoder, encode_config, encode_time


def _result(names, values, size=512, start=0, end=1000):
    # one result as a message of its own -> (buf, length), length 0 when it does not fit
    buf = bytearray(size)
    n = item(buf, begin(buf, b"d1", 7), 0, 3, b"temp", b"w1", start, end, names, values)
    if n:
        buf[n:n + 2] = b"]}"
        n += 2
    return buf, n


def test_a_result_is_the_message_the_shared_encoder_writes():
    names = (b"count", b"avg", b"min", b"stddev")
    values = [10, 21.5, -3, 0.25]
    buf, n = _result(names, values, start=1700000000000, end=1700000001000)
    e = Encoder("d1", 7, 512)
    e.begin(b"results")
    assert e.add_result(3, "temp", "w1", 1700000000000, 1700000001000, names, values)
    assert bytes(buf[:n]) == bytes(e.finish())
    m = decode(bytes(buf[:n]))
    assert m["items"][0]["aggs"] == {"count": 10, "avg": 21.5, "min": -3, "stddev": 0.25}


def test_several_results_in_one_message_are_what_the_shared_encoder_writes():
    buf = bytearray(600)
    e = Encoder("d1", 7, 600)
    e.begin(b"results")
    n = begin(buf, b"d1", 7)
    for k in range(3):
        n = item(buf, n, k, 10 + k, b"s%d" % k, b"w", k * 1000, k * 1000 + 1000, (b"count", b"avg"), [k, 1.5])
        assert n and e.add_result(10 + k, "s%d" % k, "w", k * 1000, k * 1000 + 1000, (b"count", b"avg"), [k, 1.5])
    buf[n:n + 2] = b"]}"
    assert bytes(buf[:n + 2]) == bytes(e.finish())
    assert [i["seq"] for i in decode(bytes(buf[:n + 2]))["items"]] == [10, 11, 12]
    # an item that does not fit leaves the message as it was, room for "]}" kept
    full = n
    assert item(buf, n, 3, 13, b"x" * 64, b"w", 0, 1, (b"count",) * 20, [1] * 20) == 0
    buf[full:full + 2] = b"]}"
    assert len(decode(bytes(buf[:full + 2]))["items"]) == 3


def test_non_finite_values_are_written_as_null():
    buf, n = _result((b"avg", b"max", b"min"), [float("nan"), float("inf"), None])
    assert decode(bytes(buf[:n]))["items"][0]["aggs"] == {"avg": None, "max": None, "min": None}


def test_a_result_that_does_not_fit_returns_zero_and_keeps_nothing_partial():
    names = tuple(b"agg%d" % i for i in range(20))
    buf, n = _result(names, list(range(20)), size=128)
    assert n == 0
    buf, n = _result((b"count",), [1], size=200)
    assert n > 0 and decode(bytes(buf[:n]))["items"][0]["seq"] == 3


def test_status_ack_and_metrics_messages_decode():
    assert decode(message("status", "d1", 7, "state", "online"))["state"] == "online"
    a = decode(message("ack", "d1", 7, "version", 3, "ok", False, "error", "x: bad"))
    assert a["ok"] is False and a["error"] == "x: bad" and a["version"] == 3
    assert "error" not in decode(message("ack", "d1", 7, "version", 3, "ok", True, "error", None))
    m = decode(message("metrics", "d1", 7, "metrics", {"heap_free": 1, "fw": "0.1.0"}))
    assert m["metrics"]["fw"] == "0.1.0"


def test_read_accepts_config_and_time_messages():
    m = read(encode_config("d1", 4, {"sensors": []}), "config")
    assert m["version"] == 4 and m["config"] == {"sensors": []} and m["dev"] == "d1"
    assert read(encode_time(1700000000000), "time")["epoch_ms"] == 1700000000000
    assert read(encode_time(1700000000000, dev="d1"))["kind"] == "time"
    assert read(bytearray(encode_config("d1", 1, {})))["kind"] == "config"
    m = read(encode_config("d1", 2 ** 31 - 1, {}, force=True), "config")
    assert m["version"] == 2 ** 31 - 1 and m["force"] is True


def test_read_refuses_naming_the_field():
    cases = [
        (b"", None, "payload: empty"),
        (encode_config("d1", 0, {}), None, "version: expected an integer in 1..2147483647"),
        (encode_config("d1", 2 ** 31, {}), None, "version: expected an integer in 1..2147483647"),
        (encode_config("d1", 2 ** 70, {}), None, "version: expected an integer in 1..2147483647"),
        (b'{"v":1,"dev":"d1","kind":"config","version":1,"force":1,"config":{}}', None,
         "force: expected true or false"),
        (b"{nope", None, "payload: not valid UTF-8 JSON"),
        (b"\xff\xfe", None, "payload: not valid UTF-8 JSON"),
        (b"[1]", None, "payload: expected a JSON object"),
        (b'{"v":2,"kind":"time","epoch_ms":1}', None, "v: unsupported protocol version 2"),
        (b'{"v":true,"kind":"time","epoch_ms":1}', None, "v: unsupported protocol version"),
        (b'{"v":1,"kind":"nope"}', None, "kind: unknown message kind 'nope'"),
        (b'{"v":1,"dev":"d1","boot":1,"kind":"status","state":"online"}', "config", "kind: expected 'config'"),
        (encode_time(1700000000000), "config", "kind: expected 'config', got 'time'"),
        (encode_config("d1", 1, {}), "time", "kind: expected 'time', got 'config'"),
        (b'{"v":1,"kind":"config","version":1,"config":{}}', None, "message: missing key 'dev'"),
        (b'{"v":1,"dev":"d1","kind":"config","version":1,"config":{},"x":1}', None, "message: unknown key 'x'"),
        (b'{"v":1,"dev":"d/1","kind":"config","version":1,"config":{}}', None, "dev: 'd/1' has a character"),
        (b'{"v":1,"dev":"","kind":"config","version":1,"config":{}}', None, "dev: expected 1..64"),
        (b'{"v":1,"dev":"d1","kind":"config","version":-1,"config":{}}', None, "version: expected an integer in 1.."),
        (b'{"v":1,"dev":"d1","kind":"config","version":1.5,"config":{}}', None, "version: expected an integer"),
        (b'{"v":1,"dev":"d1","kind":"config","version":1,"config":[]}', None, "config: expected an object"),
        (b'{"v":1,"kind":"time","epoch_ms":"now"}', None, "epoch_ms: expected an integer >= 0"),
        (b'{"v":1,"kind":"time","boot":1,"epoch_ms":1}', None, "message: unknown key 'boot'"),
    ]
    for payload, kind, start in cases:
        e = raises(ConfigError, read, payload, kind)
        assert str(e).startswith(start), (payload, str(e))
        # the shared decoder refuses the same payloads (its reasons may differ
        # where the agent checks the kind before the other kind's fields)
        if kind != "time":
            raises(ValueError, decode_config if kind else decode, payload)
    if not MICROPYTHON:  # on a board the MQTT rx_bytes cap refuses these first
        e = raises(ConfigError, read, b"x" * 70000)
        assert str(e) == "payload: 70000 bytes is over the 65536 byte limit"
