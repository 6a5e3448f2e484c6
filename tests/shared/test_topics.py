# Topic layout: one device's topics, hub subscriptions, parsing back.
from devtest import raises
from edgestream_shared.errors import WireError
from edgestream_shared.topics import Topics, parse, subscription


def test_device_topics_follow_the_layout():
    t = Topics("boiler-1", prefix="plant/a")
    assert t.data == "plant/a/boiler-1/data"
    assert t.results == "plant/a/boiler-1/results"
    assert t.status == "plant/a/boiler-1/status"
    assert t.metrics == "plant/a/boiler-1/metrics"
    assert t.config == "plant/a/boiler-1/config"
    assert t.config_ack == "plant/a/boiler-1/config/ack"
    assert t.time == "plant/a/boiler-1/time"


def test_default_prefix_and_hub_subscriptions():
    assert Topics("d1").results == "edgestream/d1/results"
    assert subscription("results") == "edgestream/+/results"
    assert subscription("config/ack", prefix="x") == "x/+/config/ack"
    assert subscription("status", device="d7") == "edgestream/d7/status"


def test_parse_returns_device_and_kind():
    assert parse("edgestream/d1/config/ack") == ("d1", "config/ack")
    assert parse("plant/a/d2/results", prefix="plant/a") == ("d2", "results")


def test_bad_names_and_topics_are_refused_with_a_reason():
    assert "character" in raises(WireError, Topics, "a/b").reason
    assert "character" in raises(WireError, Topics, "a+").reason
    raises(WireError, Topics, "")
    raises(WireError, Topics, "x" * 65)
    raises(WireError, Topics, "d1", prefix="a/#")
    raises(WireError, Topics, "d1", prefix="a//b")
    raises(WireError, subscription, "nope")
    raises(WireError, parse, "other/d1/results")
    raises(WireError, parse, "edgestream/d1/unknown")
    raises(WireError, parse, "edgestream/d1")
