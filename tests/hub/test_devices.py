"""The device registry (edgestream_hub.devices) fed through the real ingest path, with an injected clock."""

from __future__ import annotations

import json
import logging

import pytest
from hypothesis import given, settings, strategies as st

from edgestream_hub.components import ComponentContext
from edgestream_hub.devices import PUBLIC_KEYS, DeviceFeed, DeviceRegistry, DeviceState, read_registry, registry_path
from edgestream_hub.ingest import Ingest
from edgestream_shared.encoder import Encoder, encode_ack, encode_metrics, encode_status


class Clock:
    def __init__(self) -> None:
        self.t = 1_767_225_600.0

    def __call__(self) -> float:
        return self.t


class Service:
    def __init__(self, registry: DeviceRegistry) -> None:
        self.registry = registry


def results(dev: str, boot: int, seqs: list[int], sensor: bytes = b"temp") -> bytes:
    e = Encoder(dev, boot, 8192)
    e.begin(b"results")
    for s in seqs:
        e.add_result(s, sensor, b"w", 1000 * s, 1000 * s + 1000, [b"count", b"avg"], [10, 20.5])
    return bytes(e.finish())


def dev(reg: DeviceRegistry, name: str) -> DeviceState:
    d = reg.get(name)
    assert d is not None, f"{name} is not in the registry"
    return d


def health(dev: str, boot: int, **m) -> bytes:
    return encode_metrics(dev, boot, m)


def make(kinds=None, **kw):
    reg, clock, feed, _ = make4(kinds, **kw)
    return reg, clock, feed


def make4(kinds=None, **kw):
    """A registry, its clock, ``feed(label, payload)`` through a real Ingest per source label, and the feed."""
    clock = Clock()
    reg = DeviceRegistry(kw.pop("max_devices", 100), kinds or {"board": "serial", "board2": "serial"}, clock=clock,
                         **kw)
    feed = DeviceFeed()
    feed.service = Service(reg)
    ctxs = {}

    def ingest(label: str) -> Ingest:
        if label not in ctxs:
            ctxs[label] = Ingest(ComponentContext("source", label, label, devices=feed), "wire")
        return ctxs[label]

    return reg, clock, lambda label, payload: ingest(label).payload(payload, label), feed


def events(reg):
    out = []
    while not reg.events.empty():
        out.append(reg.events.get())
    return out


def test_status_online_offline_reboots_and_a_late_message_of_the_old_boot():
    reg, clock, feed = make({"devs": "mqtt"}, control="devices.mqtt")
    feed("devices.mqtt", encode_status("d1", 7, "online"))
    d = dev(reg, "d1")
    assert (d.online, d.boot, d.reboots, d.link) == (True, 7, 0, "mqtt")
    assert events(reg) == [("new", "d1"), ("online", "d1")]
    feed("devices.mqtt", encode_status("d1", 7, "offline"))  # the last will
    assert dev(reg, "d1").online is False
    feed("devs", results("d1", 7, [5]))  # a result still in flight does not bring it back: status decides
    assert dev(reg, "d1").online is False and dev(reg, "d1").results_received == 1
    feed("devices.mqtt", encode_status("d1", 8, "online"))
    assert (d.online, d.boot, d.reboots) == (True, 8, 1)
    assert ("reboot", "d1") in events(reg)
    feed("devices.mqtt", encode_status("d1", 7, "offline"))  # the old connection's will, after the new one
    feed("devs", results("d1", 7, [6]))
    assert (d.online, d.boot, d.reboots) == (True, 8, 1)
    # status, health and acks an MQTT source also subscribes to are taken once, from the hub's own link
    feed("devs", encode_status("d1", 8, "offline"))
    assert d.online is True


def test_health_fields_and_acks():
    reg, clock, feed = make()
    feed("board", health("d1", 3, heap_free=51234, lag_max_ms=12, link_failures=2, results_sent=10,
                         results_dropped=1, results_resent=0, config_version=4, fw="0.1.0", mpy="mpy-1.29.0",
                         platform="esp32", clock_source="hub", uptime_ms=5000))
    d = dev(reg, "d1")
    assert (d.heap_free, d.loop_lag_ms, d.link_failures, d.results_sent, d.results_dropped, d.config_reported,
            d.agent_version, d.firmware, d.platform, d.online, d.link) == \
        (51234, 12, 2, 10, 1, 4, "0.1.0", "mpy-1.29.0", "esp32", True, "serial:board")
    reg.set_desired("d1", 5)
    reg.record_sent("d1", 5)
    assert d.config_state == "pending"
    # a config the device could not read is nacked as version 0: it is the one in flight
    feed("board", encode_ack("d1", 3, 0, False, "payload: 5017 bytes is over the 2048 byte limit"))
    assert (d.last_nack_version, d.config_state, d.config_sent) == (5, "refused", None)
    assert str(d.last_nack).startswith("payload: 5017 bytes")
    assert events(reg)[-1] == ("answer", "d1", 5, False, "payload: 5017 bytes is over the 2048 byte limit")
    feed("board", encode_ack("d1", 3, 5, True))
    assert (d.config_reported, d.config_state, d.last_nack, d.last_nack_version) == (5, "applied", None, None)
    assert list(d.public()) == list(PUBLIC_KEYS)


def test_a_lost_tail_is_missing_after_the_health_check_and_claimed():
    reg, clock, feed, fd = make4(missing_after_ms=30_000)
    feed("board", results("d1", 3, [40, 41]))  # joined midway: nothing below 40 is expected here
    feed("board", results("d1", 3, [42, 45]))  # a gap: 43, 44 (the ingest counts it)
    d = dev(reg, "d1")
    assert (d.seq_high, d.gaps, d.missing, d.results_received) == (45, 1, 2, 4)
    # the device says it delivered 48 results this boot: seqs 0..47
    feed("board", health("d1", 3, results_sent=48))
    assert reg.due_missing() == []  # not yet: results and health travel separately
    feed("board", results("d1", 3, [46]))  # arrives within missing_after
    clock.t += 31
    (loss,) = reg.due_missing()  # seq 47 never came, and nothing after it: no gap could show it
    assert (loss.device, loss.n, loss.source, loss.claim) == ("d1", 1, "board", (3, 47))
    assert (d.missing, d.seq_high) == (3, 47)
    feed("board", health("d1", 3, results_sent=48))
    clock.t += 31
    assert reg.due_missing() == []  # counted once
    fd.claim("board", "d1", 3, 47)  # (the service does this)
    r = feed("board", results("d1", 3, [48]))  # the stream goes on: no second count as a gap
    assert len(r.records) == 1 and (d.gaps, d.missing) == (1, 3)
    feed("board", results("d1", 3, [47]))  # the claimed one after all: a late fill, kept
    assert d.results_received == 7


def test_a_jump_the_sources_tracking_could_not_see_is_missing():
    reg, clock, feed, fd = make4()
    feed("board", results("d1", 3, [7]))
    feed("board", results("d1", 4, [2, 3]))  # a reboot the hub saw: the new boot's 0 and 1 never came
    d = dev(reg, "d1")
    assert (d.reboots, d.missing, d.gaps) == (1, 2, 0)
    (loss,) = reg.due_missing()
    assert (loss.n, loss.claim) == (2, None) and "seq -1 was followed by 2" in loss.what
    # the hub restarts (a fresh ingest, the saved registry): results it missed meanwhile are a jump too
    feed("board2", results("d1", 4, [9, 10]))
    assert (d.missing, d.seq_high) == (2 + 5, 10)


def test_dropped_results_are_not_counted_missing():
    reg, clock, feed = make(missing_after_ms=1000)
    feed("board", results("d1", 3, [0, 1]))
    feed("board", results("d1", 3, [5]))  # 2, 3, 4 dropped by the device (buffer full): never sent
    feed("board", health("d1", 3, results_sent=3, results_dropped=3))
    clock.t += 2
    assert reg.due_missing() == []
    assert dev(reg, "d1").missing == 3  # the gap, as the ingest counted it


def test_duplicates_and_gaps_are_counted_per_device():
    reg, clock, feed = make()
    feed("board", results("d1", 1, [0, 1, 2]))
    feed("board", results("d1", 1, [2, 3]))  # 2 again: a resend
    feed("board", results("d2", 1, [0, 4]))
    assert (dev(reg, "d1").duplicates, dev(reg, "d1").gaps, dev(reg, "d1").results_received) == (1, 0, 4)
    assert (dev(reg, "d2").duplicates, dev(reg, "d2").gaps, dev(reg, "d2").missing) == (0, 1, 3)


def test_serial_devices_go_offline_after_silence():
    reg, clock, feed = make(offline_after_ms=60_000)
    feed("board", results("d1", 1, [0]))
    clock.t += 59
    assert reg.expire() == []
    clock.t += 2
    assert reg.expire() == ["d1"] and dev(reg, "d1").online is False
    events(reg)
    feed("board", results("d1", 1, [1]))
    assert dev(reg, "d1").online is True and events(reg) == [("online", "d1")]


def test_the_registry_is_bounded_and_counts_the_rest_once(caplog):
    reg, clock, feed = make(max_devices=2)
    with caplog.at_level(logging.WARNING, "edgestream.hub.devices"):
        for dev in ("a", "b", "c", "c", "d"):
            feed("board", results(dev, 1, [0]))
    assert sorted(reg.devices) == ["a", "b"] and reg.overflow == 2
    assert "device c is not tracked" in caplog.text


def test_a_registry_bug_costs_no_record(caplog):
    reg, clock, feed = make()

    def boom(*a):
        raise KeyError("bug")

    reg.observe = boom
    with caplog.at_level(logging.ERROR, "edgestream.hub.devices"):
        d = feed("board", results("d1", 1, [0, 1]))
    assert len(d.records) == 2 and d.error is None
    assert "could not take a message" in caplog.text


def test_saved_atomically_and_restored(tmp_path):
    reg, clock, feed = make()
    feed("board", results("d1", 3, [0, 1, 3]))
    feed("board", health("d1", 3, heap_free=4000, results_sent=4))
    reg.set_desired("d1", 2)
    path = registry_path(None, str(tmp_path))
    assert path == tmp_path / ".edgestream" / "devices.json"
    reg.save(path, pid=123)
    assert sorted(p.name for p in path.parent.iterdir()) == ["devices.json"]  # no temp file left
    data = read_registry(path)
    assert data["pid"] == 123 and data["devices"]["d1"]["heap_free"] == 4000
    again = DeviceRegistry(100, {"board": "serial"}, clock=clock)
    assert again.load(path) == 1
    d = dev(again, "d1")
    assert d.online is False  # a serial device is online again when it is heard again
    assert (d.boot, d.gaps, d.missing, d.heap_free, d.config_desired, d.seq_high, d.checks) == \
        (3, 1, 1, 4000, 2, 3, [[4, int(clock.t * 1000) + 30_000, 3]])
    assert registry_path("state", str(tmp_path)) == tmp_path / "state" / "devices.json"


def test_an_unreadable_registry_is_ignored_and_said(tmp_path, caplog):
    path = tmp_path / "devices.json"
    path.write_text("{not json")
    reg = DeviceRegistry(10, {})
    with caplog.at_level(logging.ERROR, "edgestream.hub.devices"):
        assert reg.load(path) == 0
    assert "ignoring the unreadable device registry" in caplog.text
    path.write_text(json.dumps({"format": 1, "devices": {"d1": 5, "d2": {"boot": 4}}}))
    with caplog.at_level(logging.ERROR, "edgestream.hub.devices"):
        assert reg.load(path) == 1
    assert dev(reg, "d2").boot == 4 and "unreadable entry of 'd1'" in caplog.text


@pytest.mark.parametrize("bad", [b"{not json", b'{"v":1,"kind":"status","dev":"d1","boot":1,"state":"up"}'])
def test_bad_payloads_reach_no_device(bad):
    reg, clock, feed = make()
    d = feed("board", bad)
    assert d.error is not None and reg.devices == {}


@settings(max_examples=300)
@given(st.lists(st.sampled_from(["received", "lost", "dropped"]), min_size=1, max_size=60), st.booleans(),
       st.integers(0, 60))
def test_what_is_counted_missing_is_what_never_arrived(fates, seen_from_start, restart_at):
    """Seq i of a boot is delivered and received, delivered and lost on the way, or dropped on the device
    (never sent); the hub restarts (a fresh ingest, the same registry) before seq ``restart_at``. The hub
    never counts a received result as missing, and with nothing dropped it counts exactly the lost ones
    (those before the first received too, for a boot it saw begin)."""
    reg, clock, feed, fd = make4(missing_after_ms=1000)
    if seen_from_start:
        feed("board", results("d1", 1, [0]))  # the previous boot: this one is a reboot, seqs from 0
    received = [i for i, f in enumerate(fates) if f == "received"]
    for i in received:
        feed("board" if i < restart_at else "board2", results("d1", 2, [i]))
    feed("board2", health("d1", 2, results_sent=sum(f != "dropped" for f in fates)))
    clock.t += 2
    for loss in reg.due_missing():
        if loss.claim:
            fd.claim(loss.source, "d1", *loss.claim)
    d = dev(reg, "d1")
    first = received[0] if received else len(fates)
    counted = [f for i, f in enumerate(fates) if i >= first or seen_from_start]
    assert d.missing <= counted.count("lost") + counted.count("dropped")
    if "dropped" not in fates and (received or seen_from_start):
        assert d.missing == counted.count("lost")
    assert d.results_received == len(received) + seen_from_start


def test_health_values_out_of_range_are_ignored_and_counted(caplog):
    # a garbled or hostile health message must not make up losses, versions or a heap
    reg, clock, feed = make(missing_after_ms=1000)
    feed("board", results("d1", 3, [0, 1]))
    feed("board", health("d1", 3, heap_free=51234, results_sent=2, config_version=4, lag_max_ms=12, uptime_ms=900))
    with caplog.at_level(logging.WARNING, "edgestream.hub.devices"):
        feed("board", health("d1", 3, results_sent=10**12, results_dropped=-1, results_resent=2**40,
                             link_failures=-3, heap_free=1e300, lag_max_ms=-5, config_version=-3, uptime_ms=-1))
    d = dev(reg, "d1")
    assert (d.results_sent, d.results_dropped, d.results_resent, d.link_failures, d.heap_free, d.loop_lag_ms,
            d.config_reported, d.uptime_ms) == (2, None, None, None, 51234, 12, 4, 900)
    assert reg.invalid_health == 8
    assert "d1: health results_sent: 1000000000000 is out of range" in caplog.text
    clock.t += 2
    assert reg.due_missing() == [] and d.missing == 0  # the bogus results_sent made up no loss
    feed("board", health("d1", 3, results_sent=2**31, config_version=2**31 - 1, heap_free=0))  # the edges are fine
    assert (d.results_sent, d.config_reported, d.heap_free, reg.invalid_health) == (2**31, 2**31 - 1, 0, 8)


def test_devices_over_the_bound_are_counted_once_across_a_restart(tmp_path):
    # after a restart the broker delivers every retained status again: a device already counted is not again
    reg, clock, feed = make(max_devices=2)
    for name in ("a", "b", "c", "d"):
        feed("board", results(name, 1, [0]))
    path = tmp_path / "devices.json"
    reg.save(path)
    again, clock, feed = make(max_devices=2)
    assert again.load(path) == 2 and again.overflow == 2
    for name in ("a", "b", "c", "d", "e"):
        feed("board", results(name, 1, [1]))
    assert sorted(again.devices) == ["a", "b"] and again.overflow == 3
