# The Link without a network: sequence numbers, encoding, epoch conversion,
# buffering and the WiFi guard. Runs under CPython and MicroPython.
import json
import sys

from devtest import MICROPYTHON
from edgestream_agent.link import Link
from edgestream_shared.decoder import decode
from edgestream_shared.encoder import encode_time

# These tests compile the link, the shared decoder and the validator from
# source, again after each unload, which needs more than the esp32 heap on
# the unix port; the agent as a whole runs from its .mpy bundle on the esp32
# heap in test_link_mqtt.py and test_serial_link.py.
BOARD = "rp2040"

NAMES = (b"count", b"avg")


def link(**t):
    tr = {"type": "none", "buffer_bytes": 1024, "max_message": 256}
    tr.update(t)
    return Link({"device": "d1", "version": 3, "transport": tr}, boot=5)


def pending(lk):
    # the messages waiting in the offline buffer (the open one closed first)
    if lk._bk:
        lk._close()
    out = []
    for _ in range(100):
        mv = lk.buf.peek()
        if mv is None:
            break
        out.append(decode(bytes(mv)))
        lk.buf.mark_sent()
        lk.buf.ack()
    return out


# first: compiling the decoder and the validator from source (as these tests do
# under MicroPython) needs the heap before the other tests fragment it
def test_messages_without_a_topic_are_told_apart_by_kind_and_their_code_unloaded():
    # serial frames carry no topic: the message's own kind decides
    lk = link()

    class S:
        def every(self, *a):
            pass
    lk.attach(S())
    lk.clock._now = lambda: 0
    lk._rx(b"not a message at all")  # nacked as a config, with the reason
    kind, payload = lk._ctrl[-1]
    assert kind == "ack" and json.loads(payload)["error"].startswith("payload:")
    assert lk.cfg_refused == 1 and lk.rx_refused == 1
    lk._rx(encode_time(1700000000000, dev="d1"))
    assert lk.time_syncs == 1 and lk.clock.source == 2 and lk.clock.epoch(0) == 1700000000000
    lk._rx(encode_time(1700000000000, dev="other"))  # not for this device
    assert lk.time_syncs == 1 and lk.rx_refused == 2
    if MICROPYTHON:
        # the remote-config and validator code left the heap again
        for m in ("edgestream_agent.wire_in", "edgestream_agent.remote_config", "edgestream_agent.config",
                  "edgestream_agent.reconfig"):
            assert m not in sys.modules, m


def items(msgs):
    return [it for m in msgs for it in m["items"]]


def test_results_get_consecutive_seqs_and_the_boot_id():
    lk = link()
    for i in range(3):
        lk.result("temp", "w", i * 100, i * 100 + 100, NAMES, [10, 1.5])
    msgs = pending(lk)
    assert [it["seq"] for it in items(msgs)] == [0, 1, 2]
    assert all(m["boot"] == 5 and m["dev"] == "d1" for m in msgs)
    assert items(msgs)[2]["start"] == 200 and items(msgs)[2]["aggs"] == {"count": 10, "avg": 1.5}


def test_results_that_close_together_share_one_message_up_to_its_size():
    lk = link(max_message=512)
    # one window boundary: every sensor's result in the same poll period
    for name in ("temp", "hum", "press"):
        lk.result(name, "w1s", 0, 1000, NAMES, [10, 1.5])
    assert lk.buf.records == 0 and lk._bk == 3  # open until a poll period passed
    lk._bt -= lk.poll_ms
    lk.poll()
    assert lk.buf.records == 1 and lk.buf.items == 3
    msgs = pending(lk)
    assert len(msgs) == 1 and [it["sensor"] for it in msgs[0]["items"]] == ["temp", "hum", "press"]
    # more than a message holds: it is closed when the next item does not
    # fit, that item opens the next one; nothing is lost or doubled
    lk = link(max_message=256, buffer_bytes=4096)
    for i in range(12):
        lk.result("temp", "w", i, i + 1, NAMES, [i, 0.5])
    msgs = pending(lk)
    assert len(msgs) >= 4 and all(len(m["items"]) > 1 for m in msgs[:-1])
    assert [it["seq"] for it in items(msgs)] == list(range(12))
    assert lk.buf.dropped == 0 and lk.buf.acked == 12


def test_after_a_time_sync_results_carry_epoch_ms():
    lk = link()
    lk.clock._now = lambda: 1000
    lk._rx(b'{"v":1,"kind":"time","epoch_ms":1700000000000}', "time")
    lk.result("temp", "w", 900, 1000, NAMES, [1, 2])
    item = pending(lk)[0]["items"][0]
    assert item["start"] == 1699999999900 and item["end"] == 1700000000000
    lk._rx(b"garbage", "time")
    assert lk.rx_refused == 1 and lk.time_syncs == 1 and lk._ctrl == []  # a time message is never acked


def test_a_result_too_large_for_a_message_is_counted_as_dropped():
    lk = link(max_message=128)
    names = tuple(b"agg%d" % i for i in range(20))
    lk.result("temp", "w", 0, 1, names, list(range(20)))
    lk.poll()
    assert lk.buf.dropped == 1 and lk.buf.records == 0 and lk._bk == 0


def test_without_a_link_the_buffer_keeps_the_newest():
    lk = link()
    for i in range(50):
        lk.result("temp", "w", i, i + 1, NAMES, [i, i])
        lk._bt -= lk.poll_ms
        lk.poll()
    seqs = [it["seq"] for it in items(pending(lk))]
    assert seqs == list(range(50 - len(seqs), 50)) and lk.buf.dropped == 50 - len(seqs) > 0
    m = {}
    lk.metrics(m)
    assert m["results_dropped"] == lk.buf.dropped and m["link_up"] == 0


def test_wifi_is_skipped_on_ports_without_network():
    lk = link(wifi={"ssid": "lab", "password": "pw"})
    try:
        import network  # noqa: F401  (a board: the guard is not exercised)
    except ImportError:
        assert lk.wifi is None
    lk.poll()


def test_config_errors_nack_through_the_control_queue():
    lk = link()

    class S:
        def every(self, *a):
            pass
    lk.attach(S())
    lk._rx(b"{bad", "config")
    kind, payload = lk._ctrl[0]
    ack = json.loads(payload)
    assert kind == "ack" and ack["ok"] is False and ack["error"].startswith("payload:")
    assert lk.rx_refused == 1

