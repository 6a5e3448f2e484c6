"""The non-blocking MQTT client under the real MicroPython against a real mosquitto.

Each test runs a small device script (esp32 heap, the 32-bit board build;
TLS on the 64-bit host build, which has ``ssl``) that drives
``edgestream_agent.mqtt.MQTTClient`` with ``poll()`` in a bounded loop and
prints a JSON summary; a paho subscriber checks what reached the broker.
"""

import json
import socket
import subprocess
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from linktools import Subscriber, finish, start_micropython, wait_until
from mosquitto import Mosquitto

from edgestream_agent.mqtt import UP, MQTTClient

HOST_ONLY = True

PROBE = r"""
import sys, json, time
from edgestream_agent.mqtt import MQTTClient, UP
a = json.loads(sys.argv[1])
got = []
over = []
acks = []
c = MQTTClient(a.get("id", "probe"), "127.0.0.1", a["port"], keepalive=a.get("keepalive", 0),
               user=a.get("user"), password=a.get("password"), ssl=a.get("tls"),
               rx_size=a.get("rx", 2048), backoff_min_ms=a.get("bmin", 100),
               backoff_max_ms=a.get("bmax", 1000), connect_timeout_ms=a.get("cto", 5000))
c.set_last_will(b"t/probe/status", b"offline", True, 1)
c.set_callback(lambda t, m: got.append([t.decode(), len(m), m[:40].decode()]))
c.on_oversize = lambda t, n, buf, start, end: over.append([t.decode() if t else None, n])
c.on_puback = acks.append
def online():
    c.publish(b"t/probe/status", b"online", retain=True, qos=1)
c.on_connect = online
refused = 0
i = 0
c.subscribe(b"t/probe/in", 1)
c.connect()
worst = 0
polls = 0
t0 = time.ticks_ms()
while time.ticks_diff(time.ticks_ms(), t0) < a["run_ms"]:
    t1 = time.ticks_us()
    c.poll()
    while i < a.get("n", 0) and c.state == UP:
        # QoS 1 back-pressure: publish() says None when the window is full
        if c.publish(b"t/probe/q1", b"one %d" % i, qos=1) is None:
            refused += 1
            break
        c.publish(b"t/probe/q0", b"zero %d" % i)
        i += 1
    worst = max(worst, time.ticks_diff(time.ticks_us(), t1))
    polls += 1
    time.sleep_ms(2)
print(json.dumps({"state": c.state, "acks": len(acks), "got": got, "over": over, "pings": c.pings,
                  "connects": c.connects, "failures": c.failures, "worst_poll_us": worst,
                  "polls": polls, "refused": refused, "error": str(c.error), "inflight": c.inflight()}))
if a.get("disconnect"):
    c.disconnect()
"""


@pytest.fixture
def probe(tmp_path):
    path = tmp_path / "probe.py"
    path.write_text(PROBE)

    def run(broker=None, profile="frozen", **args):
        if broker is not None:
            args["port"] = broker.port
        proc = start_micropython(path, json.dumps(args), profile=profile)
        out = finish(proc, timeout=60)
        return json.loads(out.strip().splitlines()[-1])
    return run


def retained(broker, topic, **kw):
    """Publish a retained QoS 1 message with paho and wait for it to be stored."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="retainer")
    if "username" in kw:
        c.username_pw_set(kw.pop("username"), kw.pop("password"))
    c.connect(broker.host, broker.port)
    c.loop_start()
    c.publish(topic, kw.get("payload", b"hello"), qos=1, retain=True).wait_for_publish(5)
    c.loop_stop()
    c.disconnect()


def test_connect_publish_subscribe_keepalive_and_last_will(mosquitto, probe):
    sub = Subscriber(mosquitto, ["t/probe/#"])
    try:
        retained(mosquitto, "t/probe/in", payload=b"hello device")
        r = probe(mosquitto, n=20, keepalive=1, run_ms=2600)
        assert r["state"] == UP and r["connects"] == 1 and r["failures"] == 0
        assert r["acks"] == 21 and r["inflight"] == 0  # 20 QoS 1 + the online status
        assert r["refused"] > 0  # 8 in flight at most: the rest waited for acks
        assert r["got"] == [["t/probe/in", 12, "hello device"]]
        assert r["pings"] >= 3  # keepalive 1 s: a ping every half keepalive
        assert wait_until(lambda: len(sub.on("t/probe/q0")) == 20 and len(sub.on("t/probe/q1")) == 20)
        assert sub.on("t/probe/q1") == [b"one %d" % i for i in range(20)]
        # the process exited without DISCONNECT: the broker publishes the will
        assert wait_until(lambda: sub.on("t/probe/status") == [b"online", b"offline"])
    finally:
        sub.close()
    late = Subscriber(mosquitto, ["t/probe/status"], client_id="late")
    try:
        assert wait_until(lambda: late.messages == [("t/probe/status", b"offline", True)])
    finally:
        late.close()


def test_graceful_disconnect_sends_no_will(mosquitto, probe):
    sub = Subscriber(mosquitto, ["t/probe/status"])
    try:
        probe(mosquitto, run_ms=300, disconnect=True)
        assert wait_until(lambda: sub.on("t/probe/status") == [b"online"])
        time.sleep(0.3)
        assert sub.on("t/probe/status") == [b"online"]
    finally:
        sub.close()


def test_username_and_password(tmp_path, probe):
    pw = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pw), "dev", "s3cret"], check=True, capture_output=True)
    # the broker keeps the account that started it (recommended_config's `user`), so it reads the
    # test's private files; the later allow_anonymous overrides the recommended one
    broker = Mosquitto(tmp_path, extra_conf=f"allow_anonymous false\npassword_file {pw}\n").start()
    try:
        ok = probe(broker, user="dev", password="s3cret", n=3, run_ms=500)
        assert ok["state"] == UP and ok["acks"] == 4
        bad = probe(broker, user="dev", password="wrong", run_ms=1200)
        # CONNACK 5 (not authorised): refused, counted, retried with backoff
        assert bad["state"] != UP and bad["connects"] == 0
        assert 2 <= bad["failures"] <= 8, bad
        assert "5" in bad["error"]
    finally:
        broker.stop()


def test_no_broker_never_blocks_and_backs_off(probe):
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = probe(port=port, run_ms=1500, bmin=50, bmax=400)
    assert r["state"] != UP and r["connects"] == 0
    # 50, 100, 200, 400, 400... ms (+-50 % jitter) in 1.5 s: a handful, not hundreds
    assert 3 <= r["failures"] <= 20, r
    assert r["polls"] > 300  # the loop kept spinning every ~2 ms
    assert r["worst_poll_us"] < 100_000, r


def test_silent_broker_times_out_without_blocking(probe):
    # A socket that accepts TCP connections (the kernel's backlog) but never
    # answers CONNECT: the client gives up after connect_timeout_ms.
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    try:
        r = probe(port=srv.getsockname()[1], run_ms=1500, cto=300, bmin=100, bmax=200)
    finally:
        srv.close()
    assert r["state"] != UP and r["connects"] == 0
    assert r["failures"] >= 2 and "110" in r["error"], r
    assert r["worst_poll_us"] < 100_000, r


def test_oversize_message_is_skipped_and_the_link_goes_on(mosquitto, probe):
    retained(mosquitto, "t/probe/in", payload=b"x" * 5000)
    r = probe(mosquitto, rx=1024, n=2, run_ms=800)
    assert r["over"] == [["t/probe/in", 5000 + 2 + 10 + 2 + 3]]
    assert r["got"] == [] and r["state"] == UP and r["acks"] == 3


def test_tls(tmp_path, probe):
    key, crt = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(crt), "-days", "2", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
    broker = Mosquitto(tmp_path, extra_conf=f"certfile {crt}\nkeyfile {key}\n").start()
    try:
        r = probe(broker, profile="host", tls=True, n=5, run_ms=3000)  # the board build has no ssl
        assert r["state"] == UP and r["acks"] == 6, r
    finally:
        broker.stop()


def test_the_same_client_runs_under_cpython(mosquitto):
    sub = Subscriber(mosquitto, ["t/cpy/#"])
    acks = []
    c = MQTTClient("cpy", mosquitto.host, mosquitto.port, keepalive=5)
    c.on_puback = acks.append
    c.connect()
    try:
        assert wait_until(lambda: c.poll() == UP, 5, 0.005)
        pids = [c.publish("t/cpy/x", b"m%d" % i, qos=1) for i in range(5)]
        assert all(pids)
        assert wait_until(lambda: (c.poll(), len(acks))[1] == 5, 5, 0.005)
        assert acks == pids
        assert wait_until(lambda: len(sub.on("t/cpy/x")) == 5)
    finally:
        c.disconnect()
        sub.close()


def test_publish_refuses_when_down_or_full():
    c = MQTTClient("x", "127.0.0.1", 1, tx_size=64, max_inflight=2)
    assert c.publish(b"t", b"m", qos=1) is None  # not connected: caller keeps it
    assert not c.can_publish(10)
    # a reference to the thread module keeps paho's import honest under -W error
    assert threading.active_count() >= 1


NOMEM = r"""
import sys, json, time, gc
from edgestream_agent.mqtt import MQTTClient, UP


def main(port):
    # in a function: module-level names would grow the globals dict on a full heap
    got = []
    over = []
    errors = []
    c = MQTTClient("nomem", "127.0.0.1", port, keepalive=0)
    c.set_callback(lambda t, m: got.append(len(m)))
    c.on_oversize = lambda t, n, buf, start, end: over.append(t)
    c.subscribe(b"t/nomem", 1)
    c.connect()

    def pump(ms):
        t0 = time.ticks_ms()
        while time.ticks_diff(time.ticks_ms(), t0) < ms:
            try:
                c.poll()
            except MemoryError:
                errors.append(1)
            time.sleep_ms(5)

    pump(1000)
    # the heap filled but for a few scattered 16-byte pieces: none takes a copy of the hub's message
    ballast = [None] * 4000
    k = 0
    for size in (4096, 1024, 256, 64, 16, 4096, 1024, 256, 64, 16):
        try:
            while k < len(ballast):
                ballast[k] = bytearray(size)
                k += 1
        except MemoryError:
            pass
    n = 0
    while n < 16 and k > 0:  # every 4th of the last 16-byte blocks: room for the small things a poll makes
        k -= 4
        b = ballast[k]
        if b is not None and len(b) == 16:
            ballast[k] = None
            n += 1
    b = None
    c.publish(b"t/ready", b"1")  # the hub sends its 800-byte message now
    pump(3000)
    ballast = None
    gc.collect()
    c.publish(b"t/ready", b"2")  # and a small one
    pump(2000)
    print(json.dumps({"state": c.state, "got": got, "over": [t.decode() if t else None for t in over],
                      "errors": len(errors), "skipped": c.rx_oversize, "inflight": c.inflight()}))


main(int(sys.argv[1]))
"""


def test_a_message_the_heap_cannot_copy_is_skipped_and_the_link_goes_on(mosquitto, tmp_path):
    # An incoming message that fits the receive buffer but not the free heap: skipped like an oversize one
    # (on_oversize names its subscription, a config one is nacked), acknowledged, never left in the buffer
    # where it failed again at every poll and the link stopped.
    path = tmp_path / "nomem.py"
    path.write_text(NOMEM)
    sub = Subscriber(mosquitto, ["t/ready"])
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="hub")
    pub.connect(mosquitto.host, mosquitto.port)
    pub.loop_start()
    try:
        proc = start_micropython(path, str(mosquitto.port))
        assert wait_until(lambda: sub.on("t/ready") == [b"1"], 15)
        pub.publish("t/nomem", b"x" * 800, qos=1).wait_for_publish(5)
        assert wait_until(lambda: sub.on("t/ready") == [b"1", b"2"], 15)
        pub.publish("t/nomem", b"small", qos=1).wait_for_publish(5)
        r = json.loads(finish(proc, 60).strip().splitlines()[-1])
    finally:
        pub.loop_stop()
        pub.disconnect()
        sub.close()
    assert r["errors"] == 0 and r["state"] == UP, r
    assert r["over"] == ["t/nomem"] and r["skipped"] == 1, r
    assert r["got"] == [5] and r["inflight"] == 0, r
