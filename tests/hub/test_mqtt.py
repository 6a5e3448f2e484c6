"""MQTT source and sink against a real mosquitto on loopback."""

from __future__ import annotations

import json
import subprocess
import threading

import paho.mqtt.client as mqtt

from hubtest import wait_for
from edgestream_shared.encoder import Encoder, encode_status


def publisher(broker, **kw):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=kw.pop("client_id", ""), **kw)
    c.connect(broker.host, broker.port)
    c.loop_start()
    return c


def publish(c, topic, payload, qos=1):
    info = c.publish(topic, bytes(payload), qos=qos)
    info.wait_for_publish(5)
    assert info.is_published()


def results(dev, boot, seqs, end=10_000):
    e = Encoder(dev, boot, 4096)
    e.begin(b"results")
    for s in seqs:
        assert e.add_result(s, b"temp", b"w10s", end - 10_000, end + s, (b"count", b"avg"), (10, 20.0 + s))
    return bytes(e.finish())


def config(broker, extra_source="", sink="out: {file: {path: out.jsonl}, batch: {size: 100, linger: 5ms}}"):
    return f"""
hub: {{dead_letter: dlq}}
broker: {{host: {broker.host}, port: {broker.port}, reconnect_min: 100ms, reconnect_max: 1s}}
sources:
  devices: {{mqtt: {{topics: ["edgestream/+/results", "edgestream/+/status"], qos: 1, client_id: hub-test{extra_source}}}}}
sinks:
  {sink}
  dlq: {{memory: {{}}}}
pipelines:
  p: {{from: devices, to: out}}
"""


def lines(path):
    try:
        return [json.loads(x) for x in path.read_text().splitlines()]
    except FileNotFoundError:
        return []


def test_wire_messages_become_flat_records_and_bad_payloads_are_dead_lettered(hub, mosquitto):
    e = hub.engine(config(mosquitto))
    assert e.sources["devices"].source.subscribed.wait(5)
    pub = publisher(mosquitto)
    try:
        for m in range(20):
            for dev in ("d1", "d2"):
                publish(pub, f"edgestream/{dev}/results", results(dev, 7, range(m * 10, m * 10 + 10)))
            if m == 5:
                publish(pub, "edgestream/d1/results", b'{"v":1,"dev":"d1","kind":"results"')  # cut
                publish(pub, "edgestream/d2/results", results("d1", 7, [999]))  # wrong device
                publish(pub, "edgestream/d1/status", encode_status("d1", 7, "online"))
        out = hub.tmp / "out.jsonl"
        assert wait_for(lambda: len(lines(out)) == 401)
    finally:
        pub.loop_stop()
        pub.disconnect()
    assert e.stop()
    recs = lines(hub.tmp / "out.jsonl")
    first = next(r for r in recs if r.get("device") == "d1" and r.get("seq") == 3)
    assert first == {"device": "d1", "boot": 7, "seq": 3, "sensor": "temp", "window": "w10s", "start": 0,
                     "end": 10_003, "count": 10, "avg": 23.0, "ts": 10_003}
    assert {"device": "d1", "kind": "status", "boot": 7, "state": "online"} in recs
    assert [r["seq"] for r in recs if r.get("device") == "d2"] == list(range(200))
    dl = hub.out["dlq"]
    assert len(dl) == 2 and all(d["component"] == "devices" for d in dl)
    assert "not valid UTF-8 JSON" in dl[0]["reason"] and dl[0]["record"]["topic"] == "edgestream/d1/results"
    assert "does not match the topic's device 'd2'" in dl[1]["reason"]
    assert e.metrics.value("edgestream_source_decode_errors_total", component="devices") == 2
    assert e.metrics.value("edgestream_source_records_total", component="devices") == 401


def test_gaps_duplicates_and_reboots_are_counted(hub, mosquitto):
    e = hub.engine(config(mosquitto))
    assert e.sources["devices"].source.subscribed.wait(5)
    pub = publisher(mosquitto)
    try:
        for seqs in ([0, 1, 2], [5, 6], [1, 2], [3], [0, 1]):
            boot = 8 if seqs == [0, 1] else 7
            publish(pub, "edgestream/d1/results", results("d1", boot, seqs))
        assert wait_for(lambda: len(lines(hub.tmp / "out.jsonl")) == 8), (lines(hub.tmp / "out.jsonl"), hub.out)
    finally:
        pub.loop_stop()
        pub.disconnect()
    assert e.stop()
    got = [(r["boot"], r["seq"]) for r in lines(hub.tmp / "out.jsonl")]
    assert got == [(7, 0), (7, 1), (7, 2), (7, 5), (7, 6), (7, 3), (8, 0), (8, 1)]
    v = lambda name: e.metrics.value(f"edgestream_source_{name}_total", component="devices")  # noqa: E731
    assert (v("gaps"), v("missing_records"), v("gap_fills"), v("duplicates"), v("reboots")) == (1, 2, 1, 2, 1)


def test_a_persistent_session_delivers_what_was_published_while_the_hub_was_down(hub, mosquitto):
    e = hub.engine(config(mosquitto))
    assert e.sources["devices"].source.subscribed.wait(5)
    assert e.stop()
    pub = publisher(mosquitto)
    try:
        for i in range(50):
            publish(pub, "edgestream/d1/results", results("d1", 1, [i]))
    finally:
        pub.loop_stop()
        pub.disconnect()
    e2 = hub.engine(config(mosquitto))
    assert wait_for(lambda: len(lines(hub.tmp / "out.jsonl")) == 50)
    assert e2.stop()
    assert [r["seq"] for r in lines(hub.tmp / "out.jsonl")] == list(range(50))


def test_an_unreachable_broker_is_retried_and_a_restart_survived(hub, tmp_path):
    from mosquitto import Mosquitto

    (tmp_path / "b").mkdir()
    broker = Mosquitto(tmp_path / "b")
    e = hub.engine(config(broker))  # nothing listens yet: the hub starts and keeps trying
    src = e.sources["devices"].source
    assert not src.connected.is_set()
    broker.start()
    try:
        assert src.subscribed.wait(10)
        pub = publisher(broker)
        publish(pub, "edgestream/d1/results", results("d1", 1, [0]))
        pub.loop_stop()
        pub.disconnect()
        assert wait_for(lambda: len(lines(hub.tmp / "out.jsonl")) == 1)
        broker.stop()
        assert wait_for(lambda: not src.connected.is_set())
        broker.start()
        assert wait_for(src.connected.is_set, 15)
        pub = publisher(broker)
        publish(pub, "edgestream/d1/results", results("d1", 1, [1]))
        pub.loop_stop()
        pub.disconnect()
        assert wait_for(lambda: len(lines(hub.tmp / "out.jsonl")) == 2, 15)
        assert e.metrics.value("edgestream_source_reconnects_total", component="devices") >= 1
    finally:
        e.stop()
        broker.stop()


def _tls_broker(tmp_path):
    from mosquitto import Mosquitto, free_port

    d = tmp_path / "tls"
    d.mkdir()

    def sh(*args):
        subprocess.run(args, cwd=d, check=True, capture_output=True, timeout=60)

    sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
       "-keyout", "ca.key", "-out", "ca.crt")
    sh("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
       "-out", "server.csr")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    sh("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
       "-days", "2", "-extfile", "san.ext", "-out", "server.crt")
    sh("mosquitto_passwd", "-b", "-c", "pw", "hub", "s3cret")
    broker = Mosquitto(d, port=free_port())
    broker.conf.write_text(
        "user root\n"  # read the test-owned key files (mosquitto drops to its own user otherwise)
        f"per_listener_settings true\nlistener {broker.port} 127.0.0.1\nallow_anonymous false\n"
        f"password_file {d}/pw\ncafile {d}/ca.crt\ncertfile {d}/server.crt\nkeyfile {d}/server.key\n")
    return broker.start(), d


def test_tls_and_password(hub, tmp_path):
    broker, d = _tls_broker(tmp_path)
    try:
        text = config(broker).replace("reconnect_max: 1s}", f"reconnect_max: 1s, username: hub, password: "
                                                            f"\"${{PW}}\", tls: {{ca_file: {d}/ca.crt}}}}")
        e = hub.engine(text, env={"PW": "s3cret"})
        assert e.sources["devices"].source.subscribed.wait(10)
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        pub.username_pw_set("hub", "s3cret")
        pub.tls_set(ca_certs=str(d / "ca.crt"))
        pub.connect(broker.host, broker.port)
        pub.loop_start()
        publish(pub, "edgestream/d1/results", results("d1", 1, [0, 1]))
        pub.loop_stop()
        pub.disconnect()
        assert wait_for(lambda: len(lines(hub.tmp / "out.jsonl")) == 2)
        assert e.stop()
        bad = hub.engine(text.replace("client_id: hub-test", "client_id: hub-bad"), env={"PW": "wrong"})
        assert not bad.sources["devices"].source.connected.wait(1.5)  # refused: reported and retried
        assert bad.stop()
    finally:
        broker.stop()


def test_mqtt5_shared_subscriptions_split_the_messages(hub, mosquitto):
    text = f"""
broker: {{host: {mosquitto.host}, port: {mosquitto.port}, protocol: "5"}}
sources:
  a: {{mqtt: {{topics: edgestream/+/results, shared_group: hubs, client_id: hub-a}}}}
  b: {{mqtt: {{topics: edgestream/+/results, shared_group: hubs, client_id: hub-b}}}}
sinks:
  out: {{memory: {{}}}}
pipelines:
  pa: {{from: a, processors: [{{map: {{set: {{via: a}}}}}}], to: out}}
  pb: {{from: b, processors: [{{map: {{set: {{via: b}}}}}}], to: out}}
"""
    e = hub.engine(text)
    assert e.sources["a"].source.subscribed.wait(5) and e.sources["b"].source.subscribed.wait(5)
    pub = publisher(mosquitto)
    try:
        for i in range(40):
            publish(pub, "edgestream/d1/results", results("d1", 1, [i]))
        assert wait_for(lambda: len(hub.out.get("out", [])) == 40)
    finally:
        pub.loop_stop()
        pub.disconnect()
    assert e.stop()
    out = hub.out["out"]
    assert sorted(r["seq"] for r in out) == list(range(40))  # each message exactly once
    assert {r["via"] for r in out} == {"a", "b"}


def test_the_mqtt_sink_publishes_per_record_topics(hub, mosquitto):
    got: list[tuple[str, dict]] = []
    ready = threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.on_message = lambda c, u, m: got.append((m.topic, json.loads(m.payload)))
    sub.on_subscribe = lambda *a: ready.set()
    sub.connect(mosquitto.host, mosquitto.port)
    sub.subscribe("hub/#", qos=1)
    sub.loop_start()
    try:
        assert ready.wait(5)
        hub.scripts["s"] = [{"device": "d1", "v": 1}, {"v": 2}, {"device": "d2", "v": 3}]
        e = hub.engine(f"""
hub: {{dead_letter: dlq}}
broker: {{host: {mosquitto.host}, port: {mosquitto.port}}}
sources: {{s: {{script: {{name: s}}}}}}
sinks:
  up: {{mqtt: {{topic: "hub/{{device}}/avg", qos: 1}}}}
  dlq: {{memory: {{}}}}
pipelines:
  p: {{from: s, to: up}}
""")
        assert wait_for(lambda: len(got) == 2)
        assert e.stop()
    finally:
        sub.loop_stop()
        sub.disconnect()
    assert got == [("hub/d1/avg", {"device": "d1", "v": 1}), ("hub/d2/avg", {"device": "d2", "v": 3})]
    assert "field 'device' is None" in hub.out["dlq"][0]["reason"]
