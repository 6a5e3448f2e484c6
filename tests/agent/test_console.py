"""The agent's console lines (what `edgestream agent logs` follows): one per event, rate-limited errors,
none while the console is the serial link. Host only: it reads what print() wrote (capsys)."""

import json

import edgestream_agent
from edgestream_agent import link as link_mod
from edgestream_agent import mqtt_transport
from edgestream_agent.link import Link
from edgestream_agent.mqtt import MQTTException
from edgestream_shared.encoder import encode_config

HOST_ONLY = True


class _Sched:
    on_error = None

    def every(self, *a):
        pass


def _link(**t):
    tr = {"type": "none", "buffer_bytes": 1024, "max_message": 256}
    tr.update(t)
    lk = Link({"device": "d1", "version": 3, "transport": tr}, boot=5)
    lk.attach(_Sched())
    return lk


def test_say_prints_one_prefixed_line_and_nothing_when_the_console_is_off(capsys, monkeypatch):
    edgestream_agent.say("ready fw=0.1.0")
    monkeypatch.setattr(edgestream_agent, "console", False)
    edgestream_agent.say("not shown")
    assert capsys.readouterr().out == "edgestream: ready fw=0.1.0\n"


def test_a_serial_link_on_stdio_turns_the_console_off(monkeypatch):
    from edgestream_agent import serial_link

    monkeypatch.setattr(edgestream_agent, "console", True)
    monkeypatch.setattr(serial_link.SerialTransport, "_open", lambda self: None)  # (pytest holds stdin)
    _link(type="serial", serial={"port": "stdio", "uart": 0, "baud": 115200, "tx": None, "rx": None})
    assert edgestream_agent.console is False


def test_task_errors_are_one_line_per_ten_seconds_with_the_count(capsys, monkeypatch):
    now = [1000]
    monkeypatch.setattr(link_mod, "ticks_ms", lambda: now[0])
    lk = _link()

    class Task:
        name = "temp"

    for _ in range(4):
        lk._task_error(Task(), OSError(5))
        now[0] += 1000
    now[0] += 7000
    lk._task_error(Task(), ValueError("bad reading"))
    assert capsys.readouterr().out.splitlines() == [
        "edgestream: error in task temp: OSError: 5",
        "edgestream: error in task temp: ValueError: bad reading (and 3 more in the last 10 s)",
    ]


def test_configs_applied_and_refused_are_told(capsys):
    lk = _link()
    cfg = {"device": "d1", "sensors": [{"name": "t"}]}
    lk._rx(encode_config("d1", 4, cfg), "config")
    lk._rx(encode_config("d1", 4, cfg), "config")
    lk._rx(encode_config("d1", 5, {"device": "d1", "sensors": [{"name": "t", "period_ms": 0}]}), "config")
    assert capsys.readouterr().out.splitlines() == [
        "edgestream: config 4 applied",
        "edgestream: config 4 already running",
        "edgestream: config 5 refused: sensors[0].period_ms: must be > 0",
    ]
    assert [json.loads(p)["ok"] for _, p in lk._ctrl] == [True, True, False]


def test_why_a_link_went_down_reads_as_a_reason():
    why = mqtt_transport._why
    assert why(OSError(111)) == "connection refused"
    assert why(OSError(110)) == "timed out"
    assert why(OSError(104)) == "connection reset by the broker"
    assert why(OSError(-2)) == "host name not found"
    assert why(MQTTException(5)) == "not authorised"
    assert why(MQTTException(4)) == "bad user name or password"
    assert why(MQTTException(9)) == "broker refused the connection (rc 9)"
    assert why(OSError(99)) == "error 99"
    assert why(MQTTException("malformed PUBACK")) == "malformed PUBACK"
    assert why(None) == "closed"


def test_link_up_and_down_are_told_once_each_and_failures_once_a_minute(capsys, monkeypatch):
    now = [0]
    monkeypatch.setattr(mqtt_transport, "ticks_ms", lambda: now[0])

    class Client:
        state, failures, error, server, port = 0, 0, None, "10.0.0.2", 1883

        def poll(self):
            pass

    t = mqtt_transport.MqttTransport.__new__(mqtt_transport.MqttTransport)
    t.client = c = Client()
    t._up, t._fails, t._t_said = False, 0, 0
    steps = [(0, 1, OSError(111)), (0, 2, OSError(111)), (3, 2, None), (3, 2, None), (0, 3, OSError(104)),
             (0, 4, OSError(111))]
    for state, failures, err in steps:
        c.state, c.failures, c.error = state, failures, err
        now[0] += 1000
        t.poll()
    now[0] += 60000
    c.failures = 5
    t.poll()
    assert capsys.readouterr().out.splitlines() == [
        "edgestream: link down: connection refused (1 attempts)",
        "edgestream: link up mqtt 10.0.0.2:1883",
        "edgestream: link down: connection reset by the broker",
        "edgestream: link down: connection refused (5 attempts)",
    ]
