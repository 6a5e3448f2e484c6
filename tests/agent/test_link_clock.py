# Time sync: hub reference messages (the shared wire "time" kind, made by
# edgestream_shared.encoder.encode_time as the hub does) and the epoch
# conversion of results. Runs under CPython and MicroPython (the NTP
# exchange against a real UDP server is in test_link_fuzz.py, host side).
from devtest import raises
from edgestream_agent.clock import Clock
from edgestream_agent.timebase import EPOCH_MIN
from edgestream_agent.wire_in import read, time_reference
from edgestream_shared.encoder import encode_config, encode_time

T = [5000]


def now():
    return T[0]


def hub_message(clock, payload, dev="d1"):
    # what the link does with a time message: read it, then apply it
    time_reference(clock, read(payload, "time"), dev)
    return True


def test_unsynced_clock_passes_device_ms_through():
    c = Clock(now=now)
    assert not c.synced() and c.epoch(1234) == 1234 and c.age_ms() == -1 and c.source == 0


def test_hub_reference_sets_the_offset():
    c = Clock(now=now)
    T[0] = 5000
    assert hub_message(c, b'{"v":1,"kind":"time","epoch_ms":1700000000000}')
    assert c.synced() and c.source == 2 and c.offset_ms == 1700000000000 - 5000
    assert c.epoch(6000) == 1700000001000 >= EPOCH_MIN
    T[0] = 7000
    assert c.age_ms() == 2000 and c.now() == 1700000002000


def test_the_hubs_encoded_time_message_is_applied():
    c = Clock(now=now)
    T[0] = 100
    assert hub_message(c, encode_time(1700000000000))
    assert c.offset_ms == 1700000000000 - 100
    # a message for this device (dev is optional) applies too
    assert hub_message(c, encode_time(1700000000500, dev="d1"), "d1")
    assert c.offset_ms == 1700000000400 and c.syncs == 2


def test_bad_time_messages_are_refused_with_the_field():
    c = Clock(now=now)

    def reason(payload, dev="d1"):
        return str(raises(ValueError, hub_message, c, payload, dev))

    assert reason(b"nope").startswith("payload:")
    assert reason(encode_config("d1", 1, {})).startswith("kind: expected 'time'")
    assert reason(b'{"v":1,"kind":"time"}').startswith("message: missing key 'epoch_ms'")
    assert reason(b'{"v":2,"kind":"time","epoch_ms":1700000000000}').startswith("v:")
    assert reason(encode_time(5)).startswith("epoch_ms:")
    assert reason(b'{"v":1,"kind":"time","epoch_ms":1.7e12}').startswith("epoch_ms:")
    assert reason(encode_time(1700000000000, dev="d2"), "d1").startswith("dev:")
    assert not c.synced()
