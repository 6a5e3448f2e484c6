"""The device service (edgestream_hub.reconcile) over a serial route, with the device's answers scripted.

The route is the one a serial source offers (``DeviceFeed.attach``); what the hub writes to it is
decoded with the shared decoder, exactly as the agent's reader would see it. The end-to-end loop with
real agents is in test_fleet.py.
"""

from __future__ import annotations

import json
import threading

import pytest
from hubtest import wait_for

from edgestream_hub.config import load_config
from edgestream_hub.devices import DeviceFeed, DeviceState
from edgestream_hub.errors import ConfigError
from edgestream_hub.reconcile import DeviceService
from edgestream_hub.wire import SeqStats
from edgestream_shared.decoder import decode
from edgestream_shared.encoder import encode_ack, encode_metrics, encode_status
from edgestream_shared.frame import decode_frame, encode_frame

AGENT = {"sensors": [{"name": "t", "period_ms": 10, "source": {"type": "sim"}}]}


class Port:
    """What the hub wrote to the board's port, decoded."""

    def __init__(self) -> None:
        self.sent: list[dict] = []
        self.lock = threading.Lock()
        self.up = True

    def send(self, payload: bytes) -> bool:
        """Like ``SerialSource.send``: frames it (WireError over the frame limit) and writes it."""
        frame = encode_frame(payload)
        if not self.up:
            return False
        with self.lock:
            self.sent.append(decode(decode_frame(frame[:-1])))
        return True

    def kinds(self, kind: str) -> list[dict]:
        with self.lock:
            return [m for m in self.sent if m["kind"] == kind]


def dev(svc: DeviceService, name: str) -> DeviceState:
    d = svc.registry.get(name)
    assert d is not None, f"{name} is not in the registry"
    return d


def service(tmp_path, devices: str = ", time_sync: 0ms", desired: dict | None = None):
    (tmp_path / "hub.yaml").write_text(f"""
sources: {{board: {{serial: {{port: /dev/null-board}}}}}}
sinks: {{out: {{stdout: {{}}}}}}
pipelines: {{p: {{from: board, to: out}}}}
devices: {{config_retry: 300ms{devices}}}
""")
    for dev, cfg in (desired or {}).items():
        (tmp_path / ".edgestream" / "desired").mkdir(parents=True, exist_ok=True)
        (tmp_path / ".edgestream" / "desired" / f"{dev}.json").write_text(json.dumps(cfg))
    hub = load_config(tmp_path / "hub.yaml")
    assert hub.devices is not None
    feed = DeviceFeed()
    port = Port()
    feed.attach("board", port.send)
    svc = DeviceService(hub.devices, hub, feed).start()

    def device(payload: bytes) -> None:
        feed.observe("board", decode(payload), 1, SeqStats())

    return svc, port, device


def test_a_config_is_sent_when_the_device_is_heard_and_again_when_it_does_not_answer(tmp_path):
    svc, port, device = service(tmp_path, desired={"d1": {**AGENT, "version": 3}})
    try:
        assert port.sent == []  # a serial device is sent nothing before it is heard
        device(encode_metrics("d1", 1, {"config_version": 1}))
        assert wait_for(lambda: len(port.kinds("config")) == 1, 5)
        first = port.kinds("config")[0]
        assert (first["dev"], first["version"], first["config"]["sensors"]) == ("d1", 3, AGENT["sensors"])
        assert port.kinds("time"), "time goes out when a device comes online"
        # no answer within config_retry: sent again (the line may have eaten it)
        assert wait_for(lambda: len(port.kinds("config")) >= 2, 5)
        device(encode_ack("d1", 1, 3, True))
        assert wait_for(lambda: dev(svc, "d1").config_state == "applied", 5)
        n = len(port.kinds("config"))
        device(encode_metrics("d1", 1, {"config_version": 3}))
        assert not wait_for(lambda: len(port.kinds("config")) > n, 1.5)  # in sync: nothing more
    finally:
        svc.stop()
    saved = json.loads((tmp_path / ".edgestream" / "devices.json").read_text())
    assert saved["devices"]["d1"]["config_reported"] == 3


def test_a_nack_is_kept_and_the_config_goes_again_only_after_a_reboot(tmp_path):
    svc, port, device = service(tmp_path, desired={"d1": {**AGENT, "version": 2}})
    try:
        device(encode_status("d1", 1, "online"))
        assert wait_for(lambda: len(port.kinds("config")) == 1, 5)
        device(encode_ack("d1", 1, 2, False, "sensors[0].source.pin: no such pin"))
        assert wait_for(lambda: dev(svc, "d1").config_state == "refused", 5)
        d = dev(svc, "d1")
        assert (d.last_nack, d.last_nack_version) == ("sensors[0].source.pin: no such pin", 2)
        assert wait_for(lambda: svc.config_refusals == 1, 5)
        assert not wait_for(lambda: len(port.kinds("config")) > 1, 1.5)  # not while nothing changed
        device(encode_status("d1", 2, "online"))  # rebooted
        assert wait_for(lambda: len(port.kinds("config")) == 2, 5)
        assert dev(svc, "d1").reboots == 1
    finally:
        svc.stop()


def test_a_new_desired_file_is_picked_up_and_sent(tmp_path):
    svc, port, device = service(tmp_path)
    try:
        device(encode_metrics("d1", 1, {"config_version": 1}))
        assert wait_for(lambda: svc.registry.get("d1") is not None, 5)
        with svc.desired.lock():
            svc.desired.write("d1", {**AGENT, "version": 5})
        assert wait_for(lambda: len(port.kinds("config")) == 1, 5)
        assert port.kinds("config")[0]["version"] == 5 and dev(svc, "d1").config_desired == 5
        # an invalid file is not sent; the log says why and the desired version stays
        (svc.desired.folder / "d1.json").write_text(json.dumps({**AGENT, "version": 6, "watchdog_ms": -1}))
        assert wait_for(lambda: "d1" in svc.desired.errors, 5)
        assert len(svc.desired.errors) == 1  # edgestream_devices_desired_invalid
        assert "watchdog_ms" in svc.desired.errors["d1"] and dev(svc, "d1").config_desired == 5
    finally:
        svc.stop()


def test_a_config_too_large_for_a_serial_frame_is_reported_not_sent(tmp_path):
    big = {**AGENT, "version": 2, "sensors": [{"name": f"s{i}", "period_ms": 10, "source": {"type": "sim"}}
                                              for i in range(60)]}
    svc, port, device = service(tmp_path, desired={"d1": big})
    try:
        device(encode_status("d1", 1, "online"))
        assert wait_for(lambda: dev(svc, "d1").config_state == "refused", 5)
        assert str(dev(svc, "d1").last_nack).startswith("not sent: frame: payload of")
        assert port.kinds("config") == []
    finally:
        svc.stop()


def test_time_goes_to_online_devices_every_period(tmp_path):
    svc, port, device = service(tmp_path, devices=", time_sync: 200ms")
    try:
        device(encode_status("d1", 1, "online"))
        assert wait_for(lambda: len(port.kinds("time")) >= 3, 5)
        t = port.kinds("time")[-1]
        assert t["dev"] == "d1" and t["epoch_ms"] > 1_700_000_000_000
        assert svc.time_sends >= 3
    finally:
        svc.stop()


def test_no_time_when_it_is_off(tmp_path):
    svc, port, device = service(tmp_path, devices=", time: false, time_sync: 100ms")
    try:
        device(encode_status("d1", 1, "online"))
        assert wait_for(lambda: svc.registry.get("d1") is not None, 5)
        assert not wait_for(lambda: port.kinds("time"), 1)
    finally:
        svc.stop()


def test_a_reload_adds_restarts_and_removes_the_service_keeping_the_registry(hub, tmp_path):
    base = f"""
sources: {{board: {{serial: {{port: {tmp_path}/no-port, reopen_min: 1s}}}}}}
sinks: {{out: {{memory: {{}}}}}}
pipelines: {{p: {{from: board, to: out}}}}
"""
    e = hub.engine(base)
    assert e.device_service is None and e.sources["board"].ctx.devices is None
    done = e.reload(hub.config(base + "devices: {time_sync: 0ms}\n"))
    assert done["devices"] == ["service"] and done["sources"] == ["board"]  # it now feeds the registry
    assert e.sources["board"].ctx.devices is e.devices and e.device_service is not None
    e.devices.observe("board", decode(encode_status("d1", 1, "online")), 1, SeqStats())
    done = e.reload(hub.config(base + "devices: {time_sync: 1m}\n"))
    assert done["devices"] == ["service"] and done["sources"] == []
    assert e.device_service.registry.get("d1") is not None  # saved by the old service, read by the new
    done = e.reload(hub.config(base))
    assert e.device_service is None and e.devices.service is None and done["sources"] == ["board"]


def test_a_device_on_ntp_gets_the_hubs_time_only_when_asked(tmp_path):
    svc, port, device = service(tmp_path, devices=", time_sync: 100ms")
    try:
        device(encode_metrics("d1", 1, {"clock_source": "ntp"}))
        assert not wait_for(lambda: port.kinds("time"), 1)
        assert svc.sync_time("d1", asked=True) == 1 and len(port.kinds("time")) == 1
    finally:
        svc.stop()


def test_check_reads_the_desired_folder_with_the_agents_validator(hub, tmp_path):
    folder = tmp_path / "desired"
    folder.mkdir()
    (folder / "d1.json").write_text(json.dumps({**AGENT, "version": 1}))
    (folder / "d2.json").write_text(json.dumps({**AGENT, "version": 1, "watchdog_ms": -5}))
    (folder / "notes.txt").write_text("not a config")
    text = """
sources: {board: {serial: {port: /dev/ttyACM0}}}
sinks: {out: {memory: {}}}
pipelines: {p: {from: board, to: out}}
devices: {desired_dir: desired}
"""
    with pytest.raises(ConfigError) as e:
        hub.config(text)
    assert str(e.value).endswith(f"devices.desired_dir: line 5: {folder}/d2.json: watchdog_ms: must be >= 0")
    (folder / "d2.json").unlink()
    assert hub.config(text).devices["desired_dir"] == "desired"


def test_after_a_restart_a_pending_serial_device_gets_its_config_when_heard(tmp_path):
    svc, port, device = service(tmp_path, desired={"d1": {**AGENT, "version": 2}})
    port.up = False  # the port is not open yet: nothing goes out
    device(encode_metrics("d1", 1, {"config_version": 1}))
    assert wait_for(lambda: svc.registry.get("d1") is not None and svc.registry.get("d1").online, 5)
    svc.stop()  # saved: pending, online
    svc, port, device = service(tmp_path)
    try:
        assert dev(svc, "d1").online is False and dev(svc, "d1").config_state == "pending"
        device(encode_metrics("d1", 1, {"config_version": 1}))
        assert wait_for(lambda: len(port.kinds("config")) == 1, 5)
    finally:
        svc.stop()
