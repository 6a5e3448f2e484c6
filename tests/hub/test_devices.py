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
    clock = Clock()
    reg = DeviceRegistry(kw.pop("max_devices", 100), kinds or {"board": "serial"}, clock=clock, **kw)
    feed = DeviceFeed()
    feed.service = Service(reg)
    ctxs = {}

    def ingest(label: str) -> Ingest:
        if label not in ctxs:
            ctxs[label] = Ingest(ComponentContext("source", label, label, devices=feed), "wire")
        return ctxs[label]

    return reg, clock, lambda label, payload: ingest(label).payload(payload, label)


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


def test_loss_a_gap_cannot_show_is_missing_after_the_health_check():
    reg, clock, feed = make(missing_after_ms=30_000)
    feed("board", results("d1", 3, [40, 41]))  # joined midway: seqs below 40 are not expected here
    feed("board", results("d1", 3, [42, 45]))  # a gap: 43, 44 (the ingest counts it)
    d = dev(reg, "d1")
    assert (d.boot_base, d.gaps, d.missing, d.results_received) == (40, 1, 2, 4)
    # the device says it delivered 48 results (seq 0..47, 43 and 44 among them: lost after the broker)
    feed("board", health("d1", 3, results_sent=48))
    assert reg.due_missing() == []  # not yet: results and health travel separately
    feed("board", results("d1", 3, [46]))  # arrives within missing_after
    clock.t += 31
    # 48 sent - 40 before the hub joined - 5 received - 2 in the gap = 1 missing: seq 47, after which nothing came
    assert reg.due_missing() == [("d1", 1, "board", 48)]
    assert d.missing == 3
    feed("board", health("d1", 3, results_sent=48))
    clock.t += 31
    assert reg.due_missing() == []  # reported once
    # a late fill of the gap is received, and no longer missing in it
    feed("board", results("d1", 3, [43]))
    assert d.boot_open_missing == 1 and d.results_received == 6


def test_a_reboot_seen_live_expects_seqs_from_zero():
    reg, clock, feed = make(missing_after_ms=1000)
    feed("board", results("d1", 3, [7]))
    feed("board", results("d1", 4, [2, 3]))  # the new boot's first results (0 and 1) never came
    d = dev(reg, "d1")
    assert (d.reboots, d.boot_base) == (1, 0)
    feed("board", health("d1", 4, results_sent=4))
    clock.t += 2
    assert reg.due_missing() == [("d1", 2, "board", 4)]


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
    assert (d.boot, d.gaps, d.missing, d.heap_free, d.config_desired, d.boot_base, d.checks) == \
        (3, 1, 1, 4000, 2, 0, [[4, int(clock.t * 1000) + 30_000, 3]])
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


@settings(max_examples=200)
@given(st.lists(st.sampled_from(["received", "lost", "dropped"]), min_size=1, max_size=60), st.booleans())
def test_the_loss_check_never_counts_what_was_not_delivered(fates, seen_from_start):
    """Seq i of a boot is delivered and received, delivered and lost on the way, or dropped on the device
    (never sent). What the hub then calls missing beyond its gaps is never more than what was delivered and
    lost outside them; with nothing dropped it is exactly that (the head too, for a boot seen from its start)."""
    reg, clock, feed = make(missing_after_ms=1000)
    if seen_from_start:
        feed("board", results("d1", 1, [0]))  # the previous boot: this one is a reboot, seqs from 0
    received = [i for i, f in enumerate(fates) if f == "received"]
    for i in received:
        feed("board", results("d1", 2, [i]))
    feed("board", health("d1", 2, results_sent=sum(f != "dropped" for f in fates)))
    clock.t += 2
    found = reg.due_missing()
    unseen = sum(n for _, n, _, _ in found)
    first, last = (received[0], received[-1]) if received else (len(fates), -1)
    outside = [f for i, f in enumerate(fates) if i > last or (i < first and seen_from_start)]
    lost_outside = outside.count("lost")
    assert unseen <= lost_outside
    if "dropped" not in fates and (received or seen_from_start):
        assert unseen == lost_outside
