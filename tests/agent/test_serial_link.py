"""The agent over a real pty: agent <-> pty <-> pyserial, with line noise and a cut frame.

The agent (real MicroPython: the .mpy bundle on the 32-bit stock build, esp32
heap) writes framed results to one end of a pty pair bridge; pyserial reads
the other end and sends the hub's time reference back. Garbage and a cut
frame are injected into the agent's stream between two of its frames; only
the injected bytes are lost. A config sent back over the line is acked and
applied.
"""

import json
import time

from linktools import HubEnd, PtyBridge, finish, start_micropython, wait_until

from edgestream_shared.encoder import encode_config, encode_time
from edgestream_shared.frame import encode_frame
from seqcheck import SeqCheck

HOST_ONLY = True
RUN = "import sys\nfrom edgestream_agent.main import _cli\n_cli()\n"


def config(path, window_ms=100):
    return {"device": "pico1", "version": 1,
            "sensors": [{"name": "temp", "period_ms": 10, "source": {"type": "sim"},
                         "windows": [{"name": "w", "size_ms": window_ms, "aggregates": ["count", "max"]}]}],
            "transport": {"type": "serial", "health_ms": 500, "poll_ms": 5, "serial": {"port": path}}}


def test_serial_link_survives_garbage_and_a_cut_frame(tmp_path):
    # the esp32 heap; the hub's time reference comes back over the line
    bridge = PtyBridge()
    hub = HubEnd(bridge)
    port, pump, kind, errors = hub.port, hub.pump, hub.kind, hub.errors

    (tmp_path / "agent.json").write_text(json.dumps(config(bridge.device_path)))
    (tmp_path / "run.py").write_text(RUN)
    agent = start_micropython(tmp_path / "run.py", tmp_path / "agent.json", 3000, board="esp32", profile="mpy")
    try:
        assert wait_until(lambda: (pump(), len(kind("results")) >= 3)[1], 15)
        bridge.inject(b"\x00\xff line noise from a loose cable\n")
        # a frame cut by an unplug: the agent's next frame runs into it
        bridge.inject(encode_frame(b'{"v":1,"dev":"pico1","boot":1,"kind":"results","items":[]}')[:25])
        assert wait_until(lambda: (pump(), len(kind("results")) >= 8)[1], 15)
        # hub -> agent: noise, then the time reference (shared wire "time" kind)
        port.write(b"garbage towards the device\n")
        port.write(encode_frame(encode_time(1700000000000, dev="pico1")))
        assert wait_until(lambda: (pump(), any(m["items"][0]["start"] >= 1700000000000
                                                 for m in kind("results")))[1], 15)
        s_out = finish(agent, 60)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            pump()
    finally:
        agent.kill()
        port.close()
        bridge.close()
    s = json.loads(s_out.strip().splitlines()[-1])
    assert errors == ["frame: line does not start with '$' (garbage or a cut frame)"]
    c = SeqCheck()
    for m in kind("results"):
        c.feed(m)
    rep = c.report("pico1", kind("results")[0]["boot"])
    # nothing lost, nothing doubled: the garbage and the cut frame cost nothing else
    assert rep.missing == [] and rep.duplicates == [] and rep.unique == s["results"]
    assert s["frame_errors"] == 1 and s["results_dropped"] == 0 and s["rx_refused"] == 0
    assert s["clock_source"] == "hub" and s["clock_age_ms"] >= 0
    assert kind("metrics") and kind("metrics")[-1]["metrics"]["link_up"] == 1
    free = [m["metrics"]["heap_free"] for m in kind("metrics")]
    assert min(free) >= 20000, free


def test_serial_config_is_acked_and_applied(tmp_path):
    # the esp32 heap: validating a config loads the validator's code next
    # to the running agent for a moment (see test_link_mqtt.py)
    bridge = PtyBridge()
    hub = HubEnd(bridge)
    port, pump, kind, errors = hub.port, hub.pump, hub.kind, hub.errors

    (tmp_path / "agent.json").write_text(json.dumps(config(bridge.device_path)))
    (tmp_path / "run.py").write_text(RUN)
    agent = start_micropython(tmp_path / "run.py", tmp_path / "agent.json", 3000, board="esp32", profile="mpy")
    try:
        assert wait_until(lambda: (pump(), len(kind("results")) >= 3)[1], 15)
        # hub -> agent: noise, then a config making the windows 200 ms
        port.write(b"garbage towards the device\n")
        new = config(bridge.device_path, window_ms=200)
        del new["version"]
        port.write(encode_frame(encode_config("pico1", 2, new)))
        assert wait_until(lambda: (pump(), len(kind("ack")) == 1)[1], 15)
        s_out = finish(agent, 60)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            pump()
    finally:
        agent.kill()
        port.close()
        bridge.close()
    s = json.loads(s_out.strip().splitlines()[-1])
    ack = kind("ack")[0]
    assert ack["ok"] is True and ack["version"] == 2
    assert errors == []
    c = SeqCheck()
    for m in kind("results"):
        c.feed(m)
    rep = c.report("pico1", kind("results")[0]["boot"])
    # nothing lost, nothing doubled: the garbage and the cut frame cost nothing else
    assert rep.missing == [] and rep.duplicates == [] and rep.unique == s["results"]
    spans = [m["items"][0]["end"] - m["items"][0]["start"] for m in kind("results")]
    assert spans[0] == 100 and 200 in spans
    assert s["frame_errors"] == 1 and s["config_version"] == 2 and s["results_dropped"] == 0  # the garbage line
    assert kind("metrics") and kind("metrics")[-1]["metrics"]["link_up"] == 1
