# Encoder -> decoder round trips and the exact bytes on the wire.
import json

from devtest import alloc_bytes, raises, MICROPYTHON
from edgestream_shared.decoder import decode, decode_config
from edgestream_shared.encoder import (Encoder, encode_ack, encode_config,
                                       encode_metrics, encode_status)
from edgestream_shared.errors import WireError

NAMES = (b"count", b"avg", b"min", b"max")


def test_result_batch_round_trips():
    e = Encoder("dev-1", 42)
    e.begin(b"results")
    assert e.add_result(0, b"temp", b"w10s", 0, 10000, NAMES, (10, 21.5, -3, 40))
    assert e.add_result(1, "hum", "w10s", 10000, 20000, NAMES, (0, None, None, None))
    m = decode(e.finish())
    assert m["v"] == 1 and m["dev"] == "dev-1" and m["boot"] == 42
    assert m["kind"] == "results"
    a, b = m["items"]
    assert a == {"seq": 0, "sensor": "temp", "window": "w10s", "start": 0, "end": 10000,
                 "aggs": {"count": 10, "avg": 21.5, "min": -3, "max": 40}}
    assert b["seq"] == 1 and b["sensor"] == "hum" and b["aggs"]["avg"] is None


def test_encoder_output_is_plain_json():
    e = Encoder(b"d", 7)
    e.begin(b"readings")
    e.add_reading(5, b"t", 123, 1.25)
    assert json.loads(bytes(e.finish())) == {
        "v": 1, "dev": "d", "boot": 7, "kind": "readings",
        "items": [{"seq": 5, "sensor": "t", "t": 123, "value": 1.25}]}


def test_non_finite_values_travel_as_null():
    e = Encoder(b"d", 1)
    e.begin(b"readings")
    e.add_reading(0, b"t", 1, float("nan"))
    e.add_reading(1, b"t", 2, float("inf"))
    items = decode(e.finish())["items"]
    assert items[0]["value"] is None and items[1]["value"] is None


def test_big_and_negative_integers():
    e = Encoder(b"d", 2 ** 40)
    e.begin(b"readings")
    e.add_reading(2 ** 33, b"t", 1700000000123, -987654321)
    m = decode(e.finish())
    assert m["boot"] == 2 ** 40
    assert m["items"][0] == {"seq": 2 ** 33, "sensor": "t", "t": 1700000000123, "value": -987654321}


def test_a_full_buffer_refuses_the_item_and_keeps_the_message_valid():
    e = Encoder(b"d", 1, size=160)
    e.begin(b"results")
    added = 0
    while e.add_result(added, b"temp", b"w", 0, 1, NAMES, (1, 2, 3, 4)):
        added += 1
    assert added == 1
    m = decode(e.finish())
    assert len(m["items"]) == 1
    e.begin(b"results")  # the buffer is reusable for the next batch
    assert e.add_result(9, b"temp", b"w", 0, 1, NAMES[:1], (1,))
    assert decode(e.finish())["items"][0]["seq"] == 9


def test_one_off_messages_round_trip():
    assert decode(encode_status("d1", 3, "offline"))["state"] == "offline"
    m = decode(encode_metrics("d1", 3, {"heap_free": 51234, "fw": "1.29.0"}))
    assert m["metrics"] == {"heap_free": 51234, "fw": "1.29.0"}
    m = decode(encode_ack("d1", 3, 7, False, "sensors[0].period_ms: must be > 0"))
    assert m["ok"] is False and m["version"] == 7 and "period_ms" in m["error"]
    c = decode_config(encode_config("d1", 8, {"device": "d1"}))
    assert c["version"] == 8 and c["config"] == {"device": "d1"}
    raises(WireError, decode_config, encode_status("d1", 3, "online"))


def test_encoding_a_batch_allocates_almost_nothing():
    e = Encoder(b"dev-1", 42)
    vals = [10, 215, -3, 40]

    def batch():
        e.begin(b"results")
        for i in range(4):
            e.add_result(i, b"temp", b"w10s", 0, 10000, NAMES, vals)
        e.finish()

    grown = alloc_bytes(batch, 100)
    if MICROPYTHON:
        # only finish()'s small memoryview per message
        assert grown <= 100 * 32, grown


def test_time_reference_round_trips_with_or_without_device():
    from edgestream_shared.encoder import encode_time
    assert decode(encode_time(1767225600000))["epoch_ms"] == 1767225600000
    assert decode(encode_time(5, "d1"))["dev"] == "d1"
    assert "epoch_ms" in raises(WireError, decode, b'{"v":1,"kind":"time","epoch_ms":-1}').reason
