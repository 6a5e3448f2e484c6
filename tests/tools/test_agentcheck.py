"""``edgestream agent check`` agrees with what a board does: a virtual board of the same profile starts
the same config (or fails to), and applies a remote config message (or refuses it for memory)."""

import json
import re
import sys
from pathlib import Path

import pytest
from boardtools import edgestream

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agent"))
from linktools import Subscriber, wait_until

from edgestream_shared.encoder import encode_config
from edgestream_tools import micropython as mp

# (board, firmware profile): every board on the stock build, and the project's firmware
CASES = [("esp32", "mpy"), ("rp2040", "mpy"), ("tiny", "mpy"), ("esp32", "frozen"), ("tiny", "frozen")]


def starts(broker, dev):
    return {"device": dev,
            "sensors": [{"name": "temp", "period_ms": 100, "filters": [{"median": 3}],
                         "windows": [{"name": "w", "size_ms": 500, "aggregates": ["count", "avg", "max"]}]}],
            "transport": {"type": "mqtt", "health_ms": 0,
                          "mqtt": {"host": broker.host, "port": broker.port, "backoff_min_ms": 100,
                                   "backoff_max_ms": 300}}}


def cannot_start(board):
    heap = int(mp.heap_for(board)[:-1]) * 1024
    return {"device": "big", "sensors": [{"name": "temp"}],
            "transport": {"type": "serial", "buffer_bytes": 2 * heap}}


def found(pattern, text):
    m = re.search(pattern, text)
    assert m, f"{pattern!r} not in {text!r}"
    return m


def check(path, board, profile):
    p = edgestream("agent", "check", "--config", str(path), "--board", board, "--profile", profile)
    assert p.returncode in (0, 3), p.stdout + p.stderr
    return p


def push_config(broker, dev, cfg):
    """Send cfg as the hub does (retained config message, version 1); the agent's ack."""
    sub = Subscriber(broker, [f"edgestream/{dev}/config/ack"], client_id=f"ack-{dev}")
    try:
        new = dict(cfg, version=1)
        import paho.mqtt.client as mqtt

        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"hub-{dev}")
        pub.connect(broker.host, broker.port)
        pub.loop_start()
        try:
            pub.publish(f"edgestream/{dev}/config", encode_config(dev, 1, new), qos=1, retain=True).wait_for_publish(5)
        finally:
            pub.loop_stop()
            pub.disconnect()
        assert wait_until(lambda: sub.on(f"edgestream/{dev}/config/ack"), 30), "no ack from the agent"
        return json.loads(sub.on(f"edgestream/{dev}/config/ack")[0])
    finally:
        sub.close()


@pytest.mark.parametrize("board,profile", CASES)
def test_check_agrees_with_a_start_on_a_board(vboard, mosquitto, tmp_path, board, profile):
    dev = f"chk-{board}-{profile}"
    cfg = tmp_path / "agent.json"
    cfg.write_text(json.dumps(starts(mosquitto, dev)))
    c = check(cfg, board, profile)
    free = int(float(found(r"after start: [\d.]+ KB used, ([\d.]+) KB free", c.stdout).group(1)) * 1024)
    assert f"agent check: {board} ({int(mp.heap_for(board)[:-1])} KB heap, {profile} profile)" in c.stdout

    vb = vboard(board, "--profile", profile)
    d = edgestream("agent", "deploy", "--port", vb.port, "--config", str(cfg), "--no-check")
    assert d.returncode == 0, d.stdout + d.stderr
    ready = re.search(r"edgestream: ready .* heap_free=(\d+)", d.stdout)
    assert ready, d.stdout
    # the check's figure is the board's: the same boot, the same start
    assert abs(int(ready.group(1)) - free) < 1024, (ready.group(0), c.stdout)

    ack = push_config(mosquitto, dev, starts(mosquitto, dev))
    if c.returncode == 0:
        assert ack["ok"] is True, ack
    else:
        assert "does not fit: the agent starts on" in c.stderr and "remote config" in c.stderr
        assert ack["ok"] is False and ack["error"].startswith("memory:"), ack


@pytest.mark.parametrize("board,profile", CASES)
def test_check_agrees_with_a_board_that_cannot_start_it(vboard, tmp_path, board, profile):
    cfg = tmp_path / "agent.json"
    cfg.write_text(json.dumps(cannot_start(board)))
    c = check(cfg, board, profile)
    assert c.returncode == 3
    assert (f"does not fit: the agent does not fit {board}'s {int(mp.heap_for(board)[:-1])} KB heap: it runs out "
            "of memory while allocating the offline buffer (transport.buffer_bytes)") in c.stderr
    assert "the link" in c.stderr and "Traceback" not in c.stderr + c.stdout

    vb = vboard(board, "--profile", profile)
    d = edgestream("agent", "deploy", "--port", vb.port, "--config", str(cfg), "--no-check", "--wait", "10")
    assert d.returncode == 2
    assert "the agent did not start on the board" in d.stderr and "MemoryError" in d.stderr


def test_a_config_at_the_highest_version_is_measured_like_any_other(tmp_path):
    # the remote-config run sends the config back with newer versions: one already at 2**31 - 1 (or just
    # below) has none newer, and its check must measure the memory, not refuse for the version bound
    needs = []
    for version in (1, 2**31 - 3, 2**31 - 1):
        cfg = tmp_path / f"agent-{version}.json"
        cfg.write_text(json.dumps({"device": "v", "version": version, "sensors": [{"name": "temp"}],
                                   "transport": {"type": "mqtt", "mqtt": {"host": "127.0.0.1"}}}))
        c = check(cfg, "esp32", "mpy")
        assert c.returncode == 0 and "does not fit" not in c.stderr, c.stdout + c.stderr
        needs.append(float(found(r"a remote config needs ([\d.]+) KB free", c.stdout).group(1)))
    assert max(needs) - min(needs) <= 1.0, needs


def test_a_sensor_too_big_to_build_is_named_as_what_runs_out(tmp_path):
    # the agent's own MemoryError names the sensor it was building: the sentence says so, not "the
    # validated config is held twice"
    cfg = tmp_path / "agent.json"
    cfg.write_text(json.dumps({"device": "t1", "transport": {"type": "serial", "serial": {"port": "stdio"}},
                               "sensors": [{"name": "temp", "windows": [{"name": "w", "size": 3000, "every": 10}]}]}))
    c = check(cfg, "tiny", "mpy")
    assert c.returncode == 3
    assert "it runs out of memory while building sensors[0] (temp): its filters, windows and their buffers" \
        in c.stderr, c.stderr
    assert "held twice" not in c.stderr


def test_check_names_an_invalid_config(tmp_path):
    cfg = tmp_path / "agent.json"
    cfg.write_text(json.dumps({"sensors": [{"name": "t", "windows": [{"size_ms": 0}]}]}))
    p = edgestream("agent", "check", "--config", str(cfg))
    assert p.returncode == 2
    assert f"config {cfg}: sensors[0].windows[0].size_ms: must be > 0" in p.stderr


def test_replay_prints_the_heap_and_refuses_what_cannot_start(tmp_path):
    samples = tmp_path / "s.jsonl"
    samples.write_text("".join(json.dumps({"t": t * 100, "sensor": "temp", "value": 20 + t % 3}) + "\n"
                               for t in range(50)))
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps({"sensors": [{"name": "temp", "windows": [{"size_ms": 1000}]}]}))
    p = edgestream("agent", "replay", "--config", str(ok), "--input", str(samples), "--board", "tiny")
    assert p.returncode == 0, p.stderr
    used, free = map(int, found(r"replay: heap used (\d+), free (\d+) bytes\n$", p.stderr).groups())
    assert 60 * 1024 < used + free <= 64 * 1024
    big = tmp_path / "big.json"
    big.write_text(json.dumps(cannot_start("tiny")))
    p = edgestream("agent", "replay", "--config", str(big), "--input", str(samples), "--board", "tiny")
    assert p.returncode == 3 and p.stdout == ""
    assert "does not fit: the agent does not fit tiny's 64 KB heap" in p.stderr


def test_4_sensors_with_sliding_and_tumbling_windows_over_mqtt_start_on_tiny(tmp_path):
    # ~40 KB once started (frozen): the start itself must not need more than the 64 KB heap has. The
    # validated config's JSON text once needed one 2.9 KB piece of a heap the validator had left in pieces.
    aggs = ["count", "sum", "avg", "min", "max", "stddev", "first", "last"]
    sensors = [{"name": f"s{i}", "period_ms": 100, "source": {"type": "sim", "noise": 0.5, "seed": i + 1},
                "filters": [{"median": 3}, {"ema": 0.5}],
                "windows": [{"name": "c256", "size": 256, "every": 64, "aggregates": aggs},
                            {"name": "t5s", "size_ms": 5000, "aggregates": aggs}]} for i in range(4)]
    cfg = tmp_path / "agent.json"
    cfg.write_text(json.dumps({"device": "tiny-1", "sensors": sensors,
                               "transport": {"type": "mqtt", "mqtt": {"host": "127.0.0.1"}}}))
    c = check(cfg, "tiny", "frozen")
    used, free = (float(x) for x in found(r"after start: ([\d.]+) KB used, ([\d.]+) KB free", c.stdout).groups())
    assert 35 < used < 45 and free > 20, c.stdout
    assert "does not fit: the agent does not fit" not in c.stderr


def test_tiny_runs_a_serial_agent_with_a_margin(vboard, tmp_path):
    # the 64 KB profile is real for a serial agent on the stock build: check says it fits with room for a
    # remote config, and a tiny virtual board runs it: its results arrive as frames on the serial line
    import os
    import select
    import time

    from edgestream_shared.decoder import decode
    from edgestream_shared.frame import FrameReader

    cfg = tmp_path / "agent.json"
    cfg.write_text(json.dumps({"device": "tiny-1", "transport": {"type": "serial", "serial": {"port": "tty"}},
                               "sensors": [{"name": "temp", "period_ms": 50,
                                            "windows": [{"size_ms": 200, "aggregates": ["count", "avg"]}]}]}))
    c = check(cfg, "tiny", "mpy")
    assert c.returncode == 0, c.stdout + c.stderr
    margin = float(found(r"margin ([\d.]+) KB", c.stdout).group(1))
    assert margin > 0.5

    master, slave = os.openpty()
    try:
        folder = tmp_path / "board"
        folder.mkdir()
        (folder / "tty").symlink_to(os.ttyname(slave))  # the board's UART, as a file on its filesystem
        vb = vboard("tiny", folder=folder)
        d = edgestream("agent", "deploy", "--port", vb.port, "--config", str(cfg), "--no-check")
        assert d.returncode == 0 and "edgestream: ready" in d.stdout, d.stdout + d.stderr
        reader, got = FrameReader(), []  # type: tuple[FrameReader, list[dict]]
        deadline = time.monotonic() + 20
        while len(got) < 3 and time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                reader.feed(os.read(master, 4096))
            while (frame := reader.next()) is not None:
                m = decode(frame)
                if m["kind"] == "results":
                    got.append(m)
        assert len(got) >= 3 and got[0]["dev"] == "tiny-1"
    finally:
        os.close(master)
        os.close(slave)
