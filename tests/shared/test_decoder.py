# The decoder refuses every malformed message with a WireError naming the field.
import json

from devtest import raises
from edgestream_shared.decoder import decode
from edgestream_shared.errors import WireError


def good():
    return {"v": 1, "dev": "d1", "boot": 3, "kind": "results",
            "items": [{"seq": 0, "sensor": "temp", "window": "w", "start": 0,
                       "end": 10, "aggs": {"count": 2, "avg": 1.5}}]}


def reason(msg):
    data = msg if isinstance(msg, (bytes, str)) else json.dumps(msg)
    return raises(WireError, decode, data).reason


def test_good_message_decodes():
    assert decode(json.dumps(good()))["items"][0]["aggs"]["avg"] == 1.5


def test_not_json_or_not_an_object():
    assert "JSON" in reason(b"{nope")
    assert "JSON" in reason(b"\xff\xfe")
    assert "empty" in reason(b"")
    assert "object" in reason(b"[1,2]")
    assert "expected bytes" in raises(WireError, decode, 12).reason


def test_version_kind_and_envelope():
    m = good()
    m["v"] = 2
    assert reason(m).startswith("v:")
    m = good()
    m["v"] = True
    assert reason(m).startswith("v:")
    m = good()
    m["kind"] = "bogus"
    assert reason(m).startswith("kind:")
    m = good()
    del m["boot"]
    assert "missing key 'boot'" in reason(m)
    m = good()
    m["extra"] = 1
    assert "unknown key 'extra'" in reason(m)
    m = good()
    m["dev"] = "a/b"
    assert reason(m).startswith("dev")


def test_item_fields_are_named_in_the_reason():
    m = good()
    m["items"][0]["seq"] = -1
    assert reason(m).startswith("items[0].seq:")
    m = good()
    m["items"][0]["seq"] = True
    assert reason(m).startswith("items[0].seq:")
    m = good()
    m["items"][0]["end"] = -5
    assert reason(m).startswith("items[0].end:")
    m = good()
    m["items"][0]["start"] = 20
    assert reason(m) == "items[0].end: is before start"
    m = good()
    m["items"][0]["aggs"]["avg"] = "1.5"
    assert reason(m).startswith("items[0].aggs.avg:")
    m = good()
    m["items"][0]["aggs"] = {}
    assert reason(m).startswith("items[0].aggs:")
    m = good()
    m["items"] = []
    assert reason(m).startswith("items:")
    m = good()
    m["items"] = [1]
    assert reason(m).startswith("items[0]:")


def test_non_finite_numbers_are_refused():
    assert "finite" in reason(json.dumps(good()).replace("1.5", "1e999"))


def test_oversized_payload_is_refused_before_parsing():
    assert "over the 100 byte limit" in raises(WireError, decode, b"{" * 200, 100).reason
