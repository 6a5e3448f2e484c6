"""The test harness itself: board heaps, tracebacks, and the broker fixture."""

import threading

import paho.mqtt.client as mqtt
import pytest

from edgestream_tools import micropython as mp


@pytest.mark.parametrize("board,kb", [("esp32", 100), ("rp2040", 180), ("tiny", 64)])
def test_board_profiles_cap_the_heap(micropython, board, kb):
    free = int(micropython.run("import gc; gc.collect(); print(gc.mem_free() + gc.mem_alloc())", board=board))
    assert kb * 1024 * 0.9 < free <= kb * 1024


def test_a_failing_snippet_shows_the_micropython_traceback(micropython):
    with pytest.raises(mp.MicroPythonError, match=r"(?s)Traceback.*ZeroDivisionError"):
        micropython.run("def f():\n  return 1 // 0\nf()")


def test_running_out_of_heap_is_a_memory_error(micropython):
    with pytest.raises(mp.MicroPythonError, match="MemoryError"):
        micropython.run("x = bytearray(80 * 1024)", board="tiny")


def test_alloc_helper_sees_allocation(micropython):
    out = micropython.run(
        "from devtest import alloc_bytes\n"
        "buf = bytearray(8)\n"
        "def quiet():\n  buf[0] = 1\n"
        "def noisy():\n  return [1, 2, 3]\n"
        "print(alloc_bytes(quiet, 500), alloc_bytes(noisy, 500) > 500 * 8)"
    )
    assert out.split() == ["0", "True"]


def test_unknown_board_is_refused():
    with pytest.raises(mp.MicroPythonError, match="unknown board"):
        mp.heap_for("esp8266")


def test_mosquitto_fixture_is_a_real_broker(mosquitto):
    got = threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="sub")
    sub.on_message = lambda c, u, m: got.set() if m.payload == b"hi" else None
    sub.connect(mosquitto.host, mosquitto.port)
    sub.subscribe("edgestream/#", qos=1)
    sub.loop_start()
    try:
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pub")
        pub.connect(mosquitto.host, mosquitto.port)
        pub.loop_start()
        for _ in range(50):  # until the subscription is active
            pub.publish("edgestream/d1/results", b"hi", qos=1).wait_for_publish(2)
            if got.wait(0.1):
                break
        pub.loop_stop()
        pub.disconnect()
        assert got.is_set()
    finally:
        sub.loop_stop()
        sub.disconnect()
