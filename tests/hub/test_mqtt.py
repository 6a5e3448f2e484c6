"""MQTT source and sink against a real mosquitto on loopback."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from hubtest import wait_for

from edgestream_shared.decoder import MAX_PAYLOAD
from edgestream_shared.encoder import Encoder, encode_status


def publisher(broker, **kw):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=kw.pop("client_id", ""), **kw)
    c.connect(broker.host, broker.port)
    c.loop_start()
    return c


def subscriber(broker, topic):
    """A client subscribed (acknowledged) to ``topic``, and the list its messages go to."""
    got: list = []
    ready = threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.on_message = lambda c, u, m: got.append(m)
    sub.on_subscribe = lambda *a: ready.set()
    sub.connect(broker.host, broker.port)
    sub.subscribe(topic, qos=1)
    sub.loop_start()
    assert ready.wait(5)
    return sub, got


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
  devices:
    mqtt: {{topics: ["edgestream/+/results", "edgestream/+/status"], qos: 1, client_id: hub-test{extra_source}}}
sinks:
  {sink}
  dlq: {{memory: {{}}}}
pipelines:
  p: {{from: devices, to: out}}
"""


def lines(path):
    """The lines written so far (one still being written, without its newline, waits)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [json.loads(x) for x in text[:text.rfind("\n") + 1].splitlines()]


@pytest.mark.usefixtures("json_engine")  # the decode path with each JSON engine
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

    def v(name):
        return e.metrics.value(f"edgestream_source_{name}_total", component="devices")

    assert (v("gaps"), v("missing_records"), v("gap_fills"), v("duplicates"), v("reboots")) == (1, 2, 1, 2, 1)


def test_records_late_into_a_large_gap_are_kept_and_a_hostile_seq_is_refused(hub, mosquitto):
    e = hub.engine(config(mosquitto))
    assert e.sources["devices"].source.subscribed.wait(5)
    pub = publisher(mosquitto)
    hostile = results("d5", 1, [0]).replace(b'"seq":0', b'"seq":99999999999999999999999999999')
    try:
        for s in (0, 1, 2, 5000, 3, 4, 5):
            publish(pub, "edgestream/d4/results", results("d4", 1, [s]))
        publish(pub, "edgestream/d5/results", hostile)
        publish(pub, "edgestream/d5/results", results("d5", 1, [0]))
        assert wait_for(lambda: len(lines(hub.tmp / "out.jsonl")) == 8), lines(hub.tmp / "out.jsonl")
    finally:
        pub.loop_stop()
        pub.disconnect()
    assert e.stop()
    got = [(r["device"], r["seq"]) for r in lines(hub.tmp / "out.jsonl")]
    assert got == [("d4", s) for s in (0, 1, 2, 5000, 3, 4, 5)] + [("d5", 0)]
    (dl,) = hub.out["dlq"]
    assert "items[0].seq: 99999999999999999999999999999 is out of range" in dl["reason"]
    assert e.metrics.value("edgestream_source_missing_records_total", component="devices") == 4997


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
    sub, msgs = subscriber(mosquitto, "hub/#")
    try:
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
        assert wait_for(lambda: len(msgs) == 2)
        assert e.stop()
    finally:
        sub.loop_stop()
        sub.disconnect()
    got = [(m.topic, json.loads(m.payload)) for m in msgs]
    assert got == [("hub/d1/avg", {"device": "d1", "v": 1}), ("hub/d2/avg", {"device": "d2", "v": 3})]
    assert "field 'device' is None" in hub.out["dlq"][0]["reason"]


# -- no payload stops the source (one ingest path for every source) --

@pytest.mark.usefixtures("json_engine")  # the decode path with each JSON engine
def test_hostile_payloads_between_good_ones_are_dead_lettered_and_the_source_goes_on(hub, mosquitto):
    from hubtest import HOSTILE_JSON, HOSTILE_WIRE, readings as wire

    e = hub.engine(f"""
hub: {{dead_letter: dlq}}
broker: {{host: {mosquitto.host}, port: {mosquitto.port}}}
sources:
  j: {{mqtt: {{topics: "j/#", decode: json, client_id: hub-j}}}}
  w: {{mqtt: {{topics: "edgestream/+/data", client_id: hub-w}}}}
sinks: {{out: {{memory: {{}}}}, dlq: {{memory: {{}}}}}}
pipelines: {{pj: {{from: j, to: out}}, pw: {{from: w, to: out}}}}
""")
    assert e.sources["j"].source.subscribed.wait(5) and e.sources["w"].source.subscribed.wait(5)
    pub = publisher(mosquitto)
    try:
        for i, bad in enumerate(HOSTILE_JSON.values()):
            publish(pub, "j/x", json.dumps({"i": i}).encode())
            publish(pub, "j/x", bad)
        for i, bad in enumerate(HOSTILE_WIRE.values()):
            publish(pub, "edgestream/d1/data", wire("d1", 1, [i]))
            publish(pub, "edgestream/d1/data", bad)
        publish(pub, "j/x", b'[{"i": 100}, {"i": 101}]')  # still receiving after all of them
        publish(pub, "edgestream/d1/data", wire("d1", 1, [100]))
        n_json, n_wire = len(HOSTILE_JSON), len(HOSTILE_WIRE)
        assert wait_for(lambda: len(hub.out.get("out", [])) == n_json + 2 + n_wire + 1), hub.out
        assert wait_for(lambda: len(hub.out.get("dlq", [])) == n_json + n_wire)
    finally:
        pub.loop_stop()
        pub.disconnect()
    assert e.stop()
    out = hub.out["out"]
    assert [r["i"] for r in out if "i" in r] == [*range(n_json), 100, 101]
    assert [r["seq"] for r in out if "seq" in r] == [*range(n_wire), 100]
    dl = hub.out["dlq"]
    assert [d["record"]["payload"] for d in dl if d["component"] == "j"] == [
        p[:1024].decode("utf-8", "backslashreplace") for p in HOSTILE_JSON.values()]
    assert all(d["record"]["topic"] == "edgestream/d1/data" for d in dl if d["component"] == "w")
    m = e.metrics.value
    assert m("edgestream_source_decode_errors_total", component="j") == n_json
    assert m("edgestream_source_decode_errors_total", component="w") == n_wire
    assert m("edgestream_source_gaps_total", component="w") == 1  # 9 -> 100


def test_a_large_bad_payload_leaves_a_bounded_dead_letter(hub, tmp_path):
    from mosquitto import Mosquitto

    # the recommended broker refuses what the hub's default max_payload would: raise both together
    (tmp_path / "b").mkdir()
    mosquitto = Mosquitto(tmp_path / "b", extra_conf="message_size_limit 16777216\n").start()
    try:
        _large_bad_payload(hub, mosquitto)
    finally:
        mosquitto.stop()


def _large_bad_payload(hub, mosquitto):
    e = hub.engine(f"""
hub: {{dead_letter: dlq}}
broker: {{host: {mosquitto.host}, port: {mosquitto.port}}}
sources: {{j: {{mqtt: {{topics: "j/#", decode: json, max_payload: 16MiB, client_id: hub-j}}}}}}
sinks: {{out: {{memory: {{}}}}, dlq: {{file: {{path: dead.jsonl}}}}}}
pipelines: {{p: {{from: j, to: out}}}}
""")
    assert e.sources["j"].source.subscribed.wait(5)
    big = b'{"a": [' + b"1," * (5 * 1024 * 1024) + b"x]}"  # 10 MiB that is not JSON
    pub = publisher(mosquitto)
    try:
        publish(pub, "j/big", big)
        publish(pub, "j/big", b'{"ok": 1}')
        assert wait_for(lambda: len(hub.out.get("out", [])) == 1, 20)
    finally:
        pub.loop_stop()
        pub.disconnect()
    assert e.stop()
    text = (hub.tmp / "dead.jsonl").read_text()
    assert len(text) < 2048
    rec = json.loads(text)["record"]
    import hashlib

    assert rec == {"topic": "j/big", "payload": big[:1024].decode(), "bytes": len(big),
                   "sha256": hashlib.sha256(big).hexdigest()[:16]}
    # a file sink that receives dead letters is bounded by default
    assert (e.sinks["dlq"].sink.rotate_size, e.sinks["dlq"].sink.keep) == (10 * 1024 * 1024, 5)


# -- a persistent session ends up subscribed to exactly the configured topics --

def _two_topics(broker, topics, extra=""):
    return f"""
broker: {{host: {broker.host}, port: {broker.port}}}
sources: {{s: {{mqtt: {{topics: {topics}, decode: json, client_id: hub-topics}}}}}}
sinks: {{out: {{memory: {{}}}}}}
pipelines: {{p: {{from: s, to: out}}}}
{extra}"""


def _queued_for(broker, client_id, publish_first):
    """What the broker queued for a persistent session while its client was away (a broker-side check)."""
    pub = publisher(broker)
    try:
        for topic, payload in publish_first:
            publish(pub, topic, payload)
    finally:
        pub.loop_stop()
        pub.disconnect()
    got = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    c.on_message = lambda cl, u, m: got.append(m.topic)
    c.connect(broker.host, broker.port)
    c.loop_start()
    try:
        wait_for(lambda: len(got) >= len(publish_first), 1.5)  # what is queued arrives at once
    finally:
        c.loop_stop()
        c.disconnect()
    return got


def _only_a_is_delivered(hub, broker, e):
    """Publish to b/ and a/: the running hub gets only a/, and so does its session at the broker once stopped."""
    pub = publisher(broker)
    try:
        publish(pub, "b/1", b'{"t": "b"}')
        publish(pub, "a/1", b'{"t": "a"}')
        assert wait_for(lambda: len(hub.out.get("out", [])) >= 1)
    finally:
        pub.loop_stop()
        pub.disconnect()
    assert e.stop()
    assert hub.out["out"] == [{"t": "a"}]
    assert _queued_for(broker, "hub-topics", [("b/2", b"{}"), ("a/2", b"{}")]) == ["a/2"]


def test_a_topic_removed_from_the_config_is_unsubscribed_after_a_restart(hub, mosquitto):
    e = hub.engine(_two_topics(mosquitto, "[a/#, b/#]"))
    assert e.sources["s"].source.subscribed.wait(5)
    assert e.stop()
    pub = publisher(mosquitto)
    publish(pub, "b/0", b'{"t": "b, queued while the hub was away"}')  # delivered at connect: dropped
    pub.loop_stop()
    pub.disconnect()
    e = hub.engine(_two_topics(mosquitto, "[a/#]"))
    assert e.sources["s"].source.subscribed.wait(5)
    _only_a_is_delivered(hub, mosquitto, e)
    assert len(list((hub.tmp / ".edgestream").glob("mqtt-hub-topics-*.subscriptions.json"))) == 1  # no state.dir


def test_a_topic_removed_by_a_reload_is_unsubscribed(hub, mosquitto):
    e = hub.engine(_two_topics(mosquitto, "[a/#, b/#]", "state: {dir: st}"))
    src = e.sources["s"].source
    assert src.subscribed.wait(5)
    e.reload(hub.config(_two_topics(mosquitto, "[a/#]", "state: {dir: st}")))
    src2 = e.sources["s"].source
    assert src2 is not src and src2.subscribed.wait(5)
    _only_a_is_delivered(hub, mosquitto, e)
    assert json.loads(Path(src2.subscriptions_file).read_text())["filters"] == ["a/#"]  # kept in state.dir
    assert Path(src2.subscriptions_file).parent == hub.tmp / "st"


# -- TLS failures say why --

def _cert(d, name, ca, *, san="IP:127.0.0.1,DNS:localhost", days="2"):
    def sh(*args):
        subprocess.run(args, cwd=d, check=True, capture_output=True, timeout=60)

    sh("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
       "-out", f"{name}.csr")
    (d / f"{name}.ext").write_text(f"subjectAltName={san}\n")
    sh("openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
       "-CAcreateserial", "-days", days, "-extfile", f"{name}.ext", "-out", f"{name}.crt")


def _ca(d, name):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                    f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.crt"], cwd=d, check=True,
                   capture_output=True, timeout=60)


@pytest.mark.skipif(not __import__("shutil").which("openssl"), reason="needs the openssl command to make a test CA")
@pytest.mark.parametrize("case,expect", [
    ("unknown CA", "(unknown CA: tls.ca_file does not hold the CA that signed the broker's certificate)"),
    ("hostname", "IP address mismatch, certificate is not valid for '127.0.0.1'. (hostname mismatch"),
    ("expired", "certificate has expired (expired certificate"),
], ids=["unknown-ca", "hostname-mismatch", "expired"])
def test_a_tls_failure_is_logged_with_its_reason(hub, tmp_path, caplog, case, expect):
    from mosquitto import Mosquitto, free_port

    d = tmp_path / "tls"
    d.mkdir()
    _ca(d, "ca")
    _ca(d, "other")
    _cert(d, "server", "ca", san="DNS:broker.example" if case == "hostname" else "IP:127.0.0.1",
          days="-1" if case == "expired" else "2")
    broker = Mosquitto(d, port=free_port())
    broker.conf.write_text(f"user root\nlistener {broker.port} 127.0.0.1\nallow_anonymous true\n"
                           f"cafile {d}/ca.crt\ncertfile {d}/server.crt\nkeyfile {d}/server.key\n")
    broker.start()
    try:
        ca = "other" if case == "unknown CA" else "ca"
        caplog.set_level("WARNING", "edgestream.hub")
        hub.scripts["s"] = [{"v": 1}]
        e = hub.engine(f"""
broker: {{host: {broker.host}, port: {broker.port}, reconnect_min: 100ms, reconnect_max: 1s,
          tls: {{ca_file: {d}/{ca}.crt}}}}
sources: {{devices: {{mqtt: {{topics: "edgestream/+/results"}}}}, s: {{script: {{name: s}}}}}}
sinks: {{out: {{memory: {{}}}}, up: {{mqtt: {{topic: up, timeout: 200ms}}, retry: {{initial: 50ms, max: 100ms}}}}}}
pipelines: {{p: {{from: devices, to: out}}, q: {{from: s, to: up}}}}
""")
        src = e.sources["devices"].source
        assert wait_for(lambda: any("cannot connect" in r.getMessage() for r in caplog.records))
        assert wait_for(lambda: any("write failed" in r.getMessage() for r in caplog.records))
        assert not src.connected.is_set()
        e.stop(1)  # the sink's record cannot be written
    finally:
        broker.stop()
    msg = next(r.getMessage() for r in caplog.records if "cannot connect" in r.getMessage())
    assert msg.startswith(f"cannot connect to broker 127.0.0.1:{broker.port}: TLS certificate verification "
                          "failed: ") and expect in msg, msg
    # the sink's failing writes say why too
    msg = next(r.getMessage() for r in caplog.records if "write failed" in r.getMessage())
    assert f"not connected to 127.0.0.1:{broker.port}: TLS certificate verification failed: " in msg and expect in msg


# -- the sink writes non-finite numbers as null --

def test_the_mqtt_sink_writes_non_finite_numbers_as_null(hub, mosquitto):
    sub, got = subscriber(mosquitto, "hub/#")
    try:
        hub.scripts["s"] = [{"v": float("nan")}, {"v": [1.5, float("-inf")]}, {"v": 2}]
        e = hub.engine(f"""
broker: {{host: {mosquitto.host}, port: {mosquitto.port}}}
sources: {{s: {{script: {{name: s}}}}}}
sinks: {{up: {{mqtt: {{topic: hub/x, qos: 1}}}}}}
pipelines: {{p: {{from: s, to: up}}}}
""")
        assert wait_for(lambda: len(got) == 3)
        assert e.stop()
    finally:
        sub.loop_stop()
        sub.disconnect()
    assert [m.payload for m in got] == [b'{"v":null}', b'{"v":[1.5,null]}', b'{"v":2}']
    assert e.metrics.value("edgestream_sink_nonfinite_values_total", component="up") == 2
    assert e.metrics.value("edgestream_sink_records_total", component="up") == 3


def _chunked_subscriber(broker, topic):
    """A chunked client (the source's) subscribed to ``topic``: the messages it got, and the batch sizes its
    ``after_read`` saw."""
    from edgestream_hub.connectors.mqtt import mqtt_client

    conn = {"protocol": "3.1.1", "reconnect_min": 1000, "reconnect_max": 1000, "connect_timeout": 5000}
    c, _ = mqtt_client(conn, "chunked-test", True, "test", chunked=True)
    got: list = []
    batches: list[int] = []
    held: list = []
    c.on_message = lambda cl, u, m: held.append(m)

    def after_read():
        if held:
            batches.append(len(held))
            got.extend(held)
            held.clear()

    c.after_read = after_read
    ready = threading.Event()
    c.on_subscribe = lambda *a: ready.set()
    c.connect(broker.host, broker.port)
    c.subscribe(topic, qos=1)
    c.loop_start()
    assert ready.wait(5)
    return c, got, batches


@pytest.mark.parametrize("qos", [0, 1])
def test_the_chunked_client_delivers_every_message_whole_and_in_order(mosquitto, qos):
    """Messages of every size, several to a chunk and cut off at its end (the rest read exactly), arrive
    whole and in order, handed on a read at a time."""
    sub, got, batches = _chunked_subscriber(mosquitto, "chunked/#")
    pub = publisher(mosquitto)
    try:
        # up to the broker's message_size_limit (MAX_PAYLOAD, 64 KiB): a packet that large spans two chunks
        sizes = [1, 2, 127, 128, 16383, 16384, 65000, 65535, MAX_PAYLOAD, 0, 3] + [150] * 2000 + [5000] * 100
        payloads = [(bytes([i % 251]) * n)[:n] for i, n in enumerate(sizes)]
        infos = [pub.publish(f"chunked/{i % 7}", p, qos=qos) for i, p in enumerate(payloads)]
        for info in infos:
            info.wait_for_publish(10)
        wait_for(lambda: len(got) >= len(payloads), timeout=30)
        by_topic: dict[str, list[bytes]] = {}
        for m in got:
            by_topic.setdefault(m.topic, []).append(m.payload)
        assert by_topic == {f"chunked/{t}": payloads[t::7] for t in range(7)}
        assert max(batches) > 1, "small messages that arrived together were handed on one by one"
    finally:
        pub.loop_stop()
        pub.disconnect()
        sub.loop_stop()
        sub.disconnect()


def test_the_chunked_client_starts_each_connection_with_an_empty_buffer(mosquitto):
    """A reconnect drops what the old connection's last chunk held: the new one reads only its own bytes."""
    sub, got, _ = _chunked_subscriber(mosquitto, "chunked/#")
    pub = publisher(mosquitto)
    try:
        publish(pub, "chunked/a", b"before")
        wait_for(lambda: len(got) == 1)
        sub._rbuf, sub._rpos = b"\x30\x05\x00\x03bad", 0  # stale bytes of a connection now gone
        sub._rsock = object()
        publish(pub, "chunked/a", b"after")
        wait_for(lambda: len(got) == 2)
        assert [m.payload for m in got] == [b"before", b"after"]
    finally:
        pub.loop_stop()
        pub.disconnect()
        sub.loop_stop()
        sub.disconnect()
