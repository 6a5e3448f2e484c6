# Time sync: hub reference messages and the epoch conversion of results.
# Runs under CPython and MicroPython (the NTP exchange against a real UDP
# server is in test_link_ntp.py, host side).
from devtest import raises
from edgestream_agent.clock import EPOCH_MIN, Clock

T = [5000]


def now():
    return T[0]


def test_unsynced_clock_passes_device_ms_through():
    c = Clock(now=now)
    assert not c.synced() and c.epoch(1234) == 1234 and c.age_ms() == -1 and c.source == 0


def test_hub_reference_sets_the_offset():
    c = Clock(now=now)
    T[0] = 5000
    assert c.hub_message(b'{"v":1,"kind":"time","epoch_ms":1700000000000}')
    assert c.synced() and c.source == 2 and c.offset_ms == 1700000000000 - 5000
    assert c.epoch(6000) == 1700000001000 >= EPOCH_MIN
    T[0] = 7000
    assert c.age_ms() == 2000 and c.now() == 1700000002000


def test_bad_time_messages_are_refused_with_the_field():
    c = Clock(now=now)
    assert raises(ValueError, c.hub_message, b"nope").args[0].startswith("payload:")
    assert raises(ValueError, c.hub_message, b'{"v":1,"kind":"config"}').args[0].startswith("kind:")
    assert raises(ValueError, c.hub_message, b'{"v":1,"kind":"time","epoch_ms":5}').args[0].startswith("epoch_ms:")
    assert raises(ValueError, c.hub_message, b'{"v":1,"kind":"time","epoch_ms":1.7e12}').args[0].startswith("epoch_ms:")
    assert not c.synced()
