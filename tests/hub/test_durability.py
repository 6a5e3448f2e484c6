"""Durability in one process: checkpoints resume windows and positions, MQTT messages are acknowledged in
order and only once safe, a failed checkpoint holds them back, result ids, and the refusal of state a
changed query cannot use. (Crashes of real processes: test_crash.py.)"""

from __future__ import annotations

import errno
import json
import logging
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from hubtest import wait_for
from test_mqtt import publish, publisher, results

from edgestream_hub.api import SimpleContext
from edgestream_hub.errors import ConfigError, StartError
from edgestream_hub.sql.errors import SqlError
from edgestream_hub.sql.processor import SqlProcessor, result_id
from edgestream_tools.broker import MAX_INFLIGHT_MESSAGES

QUERY = "SELECT device, count(*) AS n FROM s GROUP BY device, TUMBLINGWINDOW(ss, 1)"
SCRIPTED = f"""
sources:
  s: {{script: {{name: s, batch: 5}}}}
sinks:
  out: {{memory: {{}}, batch: {{size: 10, linger: 1ms}}}}
pipelines:
  p:
    from: s
    processors: [sql: "{QUERY}"]
    to: out
"""


def recs(*ts: int) -> list[dict]:
    return [{"device": "a", "ts": t} for t in ts]


def test_a_stop_keeps_open_windows_and_the_next_start_finishes_them(hub):
    hub.scripts["s"] = recs(*range(0, 1600, 100))  # [0, 1s) closes; [1s, 2s) holds 6 at the stop
    e = hub.engine(SCRIPTED)
    ident = result_id("p/p.sql")
    assert wait_for(lambda: hub.out.get("out") == [{"device": "a", "n": 10, "_id": ident(0, 1000, "a")}])
    assert wait_for(lambda: hub.sources["s"].pos == 16)
    time.sleep(0.1)
    assert e.stop()
    assert len(hub.out["out"]) == 1  # not flushed: the input did not end, the window waits in the checkpoint
    assert (hub.tmp / ".edgestream" / "state").is_dir()
    hub.scripts["s"] = recs(*range(1600, 2100, 100))
    e2 = hub.engine(SCRIPTED)
    assert wait_for(lambda: len(hub.out["out"]) == 2)
    assert hub.out["out"][1] == {"device": "a", "n": 10, "_id": ident(1000, 2000, "a")}
    assert e2.stop()


def test_an_input_that_ended_flushes_its_windows(hub):
    hub.scripts["s"] = recs(0, 100, 1200)
    e = hub.engine(SCRIPTED.replace("batch: 5", "batch: 5, finite: true"))
    assert e.finished.wait(10)
    assert e.stop()
    assert [r["n"] for r in hub.out["out"]] == [2, 1]
    e2 = hub.engine(SCRIPTED.replace("batch: 5", "batch: 5, finite: true"))  # nothing left open to resume
    assert e2.finished.wait(10) and e2.stop()
    assert len(hub.out["out"]) == 4


def test_a_changed_query_refuses_the_state_and_says_how_to_go_on(hub):
    hub.scripts["s"] = recs(0, 100)
    e = hub.engine(SCRIPTED)
    assert wait_for(lambda: hub.sources["s"].pos == 2)
    time.sleep(0.1)
    assert e.stop()
    hub.scripts["s"] = []
    changed = SCRIPTED.replace("count(*) AS n", "count(*) AS m")
    with pytest.raises(StartError) as err:
        hub.engine(changed)
    msg = str(err.value)
    assert msg.startswith("pipeline p: processor p.sql cannot resume from checkpoint ")
    assert f"its state was saved by a different query ({QUERY})" in msg
    assert f"edgestream hub run -c {hub.tmp / 'hub.yaml'} --fresh-state p" in msg
    assert f"edgestream state reset -c {hub.tmp / 'hub.yaml'} --pipeline p" in msg
    e2 = hub.engine(changed, fresh_state=("p",))
    assert e2.pipelines["p"].procs[0][1].state_summary()["keys"] == 0
    assert e2.stop()
    with pytest.raises(ConfigError, match="--fresh-state: no pipeline 'q' in the config"):
        hub.engine(changed, fresh_state=("q",))


def test_disabled_state_writes_nothing_and_flushes_at_the_stop(hub):
    hub.scripts["s"] = recs(0, 100)
    e = hub.engine(SCRIPTED + "state: {enabled: false}\n")
    assert wait_for(lambda: hub.sources["s"].pos == 2)
    time.sleep(0.1)
    assert e.stop()
    assert hub.out["out"][0]["n"] == 2
    assert not (hub.tmp / ".edgestream").exists()


# -- MQTT: acknowledgements --

def mqtt_config(broker, extra="", state="state: {interval: 60s}", protocol="3.1.1"):
    return f"""
broker: {{host: {broker.host}, port: {broker.port}, reconnect_min: 100ms, protocol: "{protocol}"}}
{state}
sources:
  devices: {{mqtt: {{topics: ["edgestream/+/results"], client_id: hub-durable{extra}}}}}
sinks:
  out: {{file: {{path: out.jsonl}}, batch: {{size: 100, linger: 1ms}}}}
pipelines:
  p: {{from: devices, to: out}}
"""


def manual(e):
    """Stop the engine's checkpoint thread: rounds happen only when the test runs them."""
    e.checkpointer.stop()

    def round_() -> bool:
        return e.checkpointer.round(deadline=time.monotonic() + 10, abort=threading.Event())

    return round_


def stuck_in_emit(e, source, pipeline):
    """True when ``pipeline``'s input is full and ``source`` holds its intake lock, twice 0.1 s apart (between
    two units the source lets go of the lock for a moment: a cut taken then would not see it blocked)."""
    def now() -> bool:
        lock = e.sources[source].intake.lock
        if lock.acquire(blocking=False):
            lock.release()
            return False
        q = e.pipelines[pipeline].input
        return len(q) >= q.capacity

    if not now():
        return False
    time.sleep(0.1)
    return now()


def acks_of(src):
    """The mids the source acknowledges, in order (the client's ack wrapped)."""
    got: list[int] = []
    client = src._client
    real = client.ack

    def ack(mid, qos):
        got.append(mid)
        return real(mid, qos)

    client.ack = ack
    return got


def lines(hub):
    """The sink's lines written so far (a line the sink is still writing, read without its newline, waits)."""
    p = hub.tmp / "out.jsonl"
    text = p.read_text() if p.exists() else ""
    return [json.loads(x) for x in text[:text.rfind("\n") + 1].splitlines()]


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_messages_are_acknowledged_in_order_and_only_after_a_checkpoint(hub, mosquitto, protocol):
    e = hub.engine(mqtt_config(mosquitto, protocol=protocol))
    src = e.sources["devices"].source
    assert src.acknowledges and src.subscribed.wait(5)
    round_ = manual(e)
    acked = acks_of(src)
    pub = publisher(mosquitto)
    try:
        for s in range(30):
            publish(pub, "edgestream/d1/results", results("d1", 1, [s]))
        assert wait_for(lambda: len(lines(hub)) == 30)
        time.sleep(0.2)
        assert acked == [] and src.unacked() == 30  # written by the sink, but no checkpoint yet
        assert round_()
        assert len(acked) == 30 and acked == sorted(acked) and src.unacked() == 0
    finally:
        pub.loop_stop()
        pub.disconnect()
    assert e.stop()


def test_the_window_of_unacknowledged_messages_is_bounded(hub, mosquitto):
    e = hub.engine(mqtt_config(mosquitto, ", max_unacked: 10"))
    src = e.sources["devices"].source
    assert src.subscribed.wait(5)
    round_ = manual(e)
    pub = publisher(mosquitto)
    try:
        for s in range(25):
            pub.publish("edgestream/d1/results", results("d1", 1, [s]), qos=1)
        assert wait_for(lambda: len(lines(hub)) == 10)
        time.sleep(0.3)
        assert len(lines(hub)) == 10 and src.unacked() == 10 and src.wants_checkpoint()  # full: it waits
        assert round_() and wait_for(lambda: len(lines(hub)) == 20)
        assert round_() and wait_for(lambda: len(lines(hub)) == 25)
    finally:
        pub.loop_stop()
        pub.disconnect()
    assert e.stop()


def _queued_first(runner, pub, seqs):
    """Publish a QoS 1 message for each of ``seqs`` while the source's intake is held, so the broker has
    them all when the intake is let go (what it sent meanwhile waits in the socket: one read)."""
    with runner.intake.lock:
        infos = [pub.publish("edgestream/d1/results", results("d1", 1, [s]), qos=1) for s in seqs]
        for info in infos:
            info.wait_for_publish(10)
        time.sleep(0.3)  # the broker passes them on to the source's socket
    return infos


def test_the_messages_of_one_read_are_one_unit_acknowledged_after_a_checkpoint(hub, mosquitto):
    e = hub.engine(mqtt_config(mosquitto))
    runner = e.sources["devices"]
    src = runner.source
    assert src.subscribed.wait(5)
    round_ = manual(e)
    acked = acks_of(src)
    pub = publisher(mosquitto)
    try:
        _queued_first(runner, pub, range(200))
        assert wait_for(lambda: len(lines(hub)) == 200)
        assert runner.ticket <= 20, f"{runner.ticket} units for 200 messages: a read's were not batched"
        time.sleep(0.2)
        assert acked == [] and src.unacked() == 200  # written by the sink, but no checkpoint yet
        assert round_()
        assert len(acked) == 200 and acked == sorted(acked) and src.unacked() == 0
    finally:
        pub.loop_stop()
        pub.disconnect()
    assert e.stop()
    assert [r["seq"] for r in lines(hub)] == list(range(200))


def test_a_read_that_comes_after_the_intake_closed_is_neither_taken_nor_acknowledged(hub, mosquitto):
    e = hub.engine(mqtt_config(mosquitto))
    runner = e.sources["devices"]
    src = runner.source
    assert src.subscribed.wait(5)
    manual(e)
    acked = acks_of(src)
    pub = publisher(mosquitto)
    try:
        publish(pub, "edgestream/d1/results", results("d1", 1, [0]))
        assert wait_for(lambda: len(lines(hub)) == 1)
        with runner.intake.lock:
            runner.intake.closed = True  # what a stop's last round does
        ticket = runner.ticket
        _queued_first(runner, pub, range(1, 51))
        time.sleep(0.3)
        assert len(lines(hub)) == 1 and runner.ticket == ticket  # nothing taken
        assert e.stop()
        assert len(acked) == 1 and src.unacked() == 0  # the stop's checkpoint held only the message before
        e2 = hub.engine(mqtt_config(mosquitto, state="state: {interval: 100ms}"))  # the broker kept them all
        assert wait_for(lambda: len(lines(hub)) == 51)
        assert wait_for(lambda: e2.sources["devices"].source.unacked() == 0)
        assert e2.stop()
    finally:
        pub.loop_stop()
        pub.disconnect()
    assert [r["seq"] for r in lines(hub)] == list(range(51))


def test_messages_of_a_connection_lost_before_their_read_is_handed_on_are_not_acknowledged(hub, mosquitto):
    """The read that brought them ends with the connection: its messages are taken, but their mids belong to
    the old connection, so none is held (the broker delivers them again, the positions drop them)."""
    from edgestream_hub.components import ComponentContext
    from edgestream_hub.connectors.mqtt import MqttSource

    cfg = hub.config(mqtt_config(mosquitto))
    ctx = ComponentContext("source", "devices", "devices", connections=cfg.connections,
                           state_dir=str(hub.tmp / "state"), durable=True)
    src = MqttSource(cfg.sources["devices"].config, ctx)
    src.open()  # a client, not connected: the test is its paho thread
    assert src.acknowledges and src._held is not None
    emitted: list[list] = []

    def emit(records: list) -> int:
        emitted.append(records)
        return len(emitted)

    src._emit = emit
    acked: list[int] = []
    src._client.ack = lambda mid, qos: acked.append(mid)

    def message(mid, seq):
        m = mqtt.MQTTMessage(mid, b"edgestream/d1/results")
        m.payload, m.qos = results("d1", 1, [seq]), 1
        return m

    src._connection_changed()  # connected
    src._on_message(None, None, message(1, 0))
    src._on_message(None, None, message(2, 1))
    src._connection_changed()  # lost within the same read
    src._on_message(None, None, message(1, 2))  # the new connection's first message, mid 1 again
    src._after_read()
    assert [[r["seq"] for r in batch] for batch in emitted] == [[0, 1, 2]]  # one unit
    assert src.unacked() == 1
    src.acknowledge(1)
    assert acked == [1] and src.unacked() == 0


def test_a_failing_checkpoint_holds_the_acknowledgements_back(hub, mosquitto, caplog):
    e = hub.engine(mqtt_config(mosquitto))
    src = e.sources["devices"].source
    assert src.subscribed.wait(5)
    round_ = manual(e)
    real = e.store.write

    def full(*a, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    pub = publisher(mosquitto)
    try:
        for s in range(5):
            publish(pub, "edgestream/d1/results", results("d1", 1, [s]))
        assert wait_for(lambda: len(lines(hub)) == 5)
        e.store.write = full
        with caplog.at_level(logging.ERROR, "edgestream.hub.state"):
            assert not round_()
        assert "checkpoint failed: cannot write a checkpoint in" in caplog.text
        assert "No space left on device; messages stay unacknowledged at the broker" in caplog.text
        assert e.metrics.value("edgestream_state_checkpoint_errors_total") == 1
        assert src.unacked() == 5 and len(lines(hub)) == 5  # processing went on; the broker keeps them
        e.store.write = real
        assert round_() and src.unacked() == 0
        assert e.metrics.value("edgestream_state_checkpoints_total") == 1
        assert e.metrics.value("edgestream_state_checkpoint_size_bytes") > 0
        assert 0 <= e.metrics.value("edgestream_state_checkpoint_age_seconds") < 5
    finally:
        pub.loop_stop()
        pub.disconnect()
    assert e.stop()


def test_a_redelivery_after_a_restart_is_dropped_by_the_restored_positions(hub, mosquitto):
    e = hub.engine(mqtt_config(mosquitto))
    src = e.sources["devices"].source
    assert src.subscribed.wait(5)
    src.acknowledge = lambda ticket: None  # as if the hub died between its checkpoint and the acks
    pub = publisher(mosquitto)
    try:
        for s in range(10):
            publish(pub, "edgestream/d1/results", results("d1", 1, [s]))
        assert wait_for(lambda: len(lines(hub)) == 10)
        assert e.stop()
        e2 = hub.engine(mqtt_config(mosquitto, state="state: {interval: 100ms}"))
        # the broker delivers all ten again: the positions from the checkpoint know every one
        assert wait_for(lambda: e2.metrics.value("edgestream_source_duplicates_total", component="devices") == 10)
        assert wait_for(lambda: e2.sources["devices"].source.unacked() == 0)  # acknowledged at its checkpoint
        publish(pub, "edgestream/d1/results", results("d1", 1, [10]))
        assert wait_for(lambda: len(lines(hub)) == 11)
        assert [r["seq"] for r in lines(hub)] == list(range(11))
    finally:
        pub.loop_stop()
        pub.disconnect()
    assert e2.stop()


def test_a_reloaded_source_keeps_its_sequence_positions(hub, mosquitto):
    from edgestream_hub.config import load_config

    e = hub.engine(mqtt_config(mosquitto))
    assert e.sources["devices"].source.subscribed.wait(5)
    pub = publisher(mosquitto)
    try:
        publish(pub, "edgestream/d1/results", results("d1", 1, [0, 1, 2]))
        assert wait_for(lambda: len(lines(hub)) == 3)
        before = e.sources["devices"].positions()
        (hub.tmp / "hub.yaml").write_text(mqtt_config(mosquitto, ", max_payload: 32KiB"))
        assert e.reload(load_config(hub.tmp / "hub.yaml", registry=hub.registry))["sources"] == ["devices"]
        assert e.sources["devices"].positions() == before
        publish(pub, "edgestream/d1/results", results("d1", 1, [2, 3]))  # 2 again: a duplicate
        assert wait_for(lambda: len(lines(hub)) == 4)
    finally:
        pub.loop_stop()
        pub.disconnect()
    assert e.stop()
    assert [r["seq"] for r in lines(hub)] == [0, 1, 2, 3]


def test_the_mqtt_sink_publishes_the_result_id_as_a_user_property(hub, mosquitto):
    got: list = []
    ready = threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    sub.on_message = lambda c, u, m: got.append(m)
    sub.on_subscribe = lambda *a: ready.set()
    sub.connect(mosquitto.host, mosquitto.port)
    sub.subscribe("out/#", qos=1)
    sub.loop_start()
    try:
        assert ready.wait(5)
        hub.scripts["s"] = recs(0, 100, 1200)
        e = hub.engine(f"""
broker: {{host: {mosquitto.host}, port: {mosquitto.port}, protocol: "5"}}
sources:
  s: {{script: {{name: s, finite: true}}}}
sinks:
  up: {{mqtt: {{topic: "out/{{device}}"}}}}
pipelines:
  p: {{from: s, processors: [sql: "{QUERY}"], to: up}}
""")
        assert e.finished.wait(10) and e.stop()
        assert wait_for(lambda: len(got) == 2)
        for m in got:
            body = json.loads(m.payload)
            assert dict(m.properties.UserProperty) == {"_id": body["_id"]}
        assert {json.loads(m.payload)["_id"] for m in got} == {result_id("p/p.sql")(0, 1000, "a"),
                                                               result_id("p/p.sql")(1000, 2000, "a")}
    finally:
        sub.loop_stop()
        sub.disconnect()


# -- result ids --

def test_result_ids_name_the_window_and_group_and_only_window_aggregates_carry_them():
    ctx = SimpleContext()
    q = "SELECT device, sensor, count(*) AS n FROM s GROUP BY device, sensor, TUMBLINGWINDOW(ss, 1)"
    rows = [{"device": d, "sensor": "t", "ts": t} for t in (0, 10, 1500) for d in ("a", "b")]
    a = SqlProcessor(q, ctx, id_field="_id", id_scope="p/p.sql")
    b = SqlProcessor(q, ctx, id_field="_id", id_scope="p/p.sql")
    out_a = a.process(rows, 0) + a.flush()
    out_b = b.process(rows[:3], 0) + b.process(rows[3:], 0) + b.flush()
    assert sorted(r["_id"] for r in out_a) == sorted(r["_id"] for r in out_b)  # batches do not matter
    assert len({r["_id"] for r in out_a}) == 4
    assert out_a[0]["_id"] == result_id("p/p.sql")(0, 1000, ("a", "t"))
    other = SqlProcessor(q, ctx, id_field="_id", id_scope="q/q.sql").process(rows, 0)
    assert not {r["_id"] for r in other} & {r["_id"] for r in out_a}  # another pipeline's results differ
    plain = SqlProcessor("SELECT device FROM s WHERE ts > 5", ctx, id_field="_id", id_scope="p/p.sql")
    assert plain.process(rows, 0)[0] == {"device": "a"}  # a row per record: no window, no id
    assert "_id" not in SqlProcessor(q, ctx).process(rows, 0)[0]
    with pytest.raises(SqlError, match="has an output column named '_id'"):
        SqlProcessor("SELECT device AS _id, count(*) AS n FROM s GROUP BY device, TUMBLINGWINDOW(ss, 1)", ctx,
                     id_field="_id")


def test_a_broker_that_holds_messages_back_until_they_are_acknowledged_still_delivers_all(hub, mosquitto):
    # the recommended broker sends MAX_INFLIGHT_MESSAGES at a time before it wants acknowledgements: the
    # source sees the stall and asks for a checkpoint (without it, the next periodic one would be 60 s away).
    # The broker has every message first: a publisher still sending would make pauses of its own, and the few
    # messages that came after a round it started would wait for the interval (as a trickle does).
    e = hub.engine(mqtt_config(mosquitto))
    runner = e.sources["devices"]
    src = runner.source
    assert src.subscribed.wait(5)
    asked: list[int] = []
    real = src.wants_checkpoint

    def wants() -> bool:
        if not real():
            return False
        asked.append(src.unacked())
        return True

    src.wants_checkpoint = wants
    pub = publisher(mosquitto)
    try:
        infos = _queued_first(runner, pub, range(3000))
        assert wait_for(lambda: len(lines(hub)) == 3000, 30)
        assert wait_for(lambda: all(i.is_published() for i in infos) and src.unacked() == 0, 30)
        assert asked and asked[0] <= MAX_INFLIGHT_MESSAGES  # it asked by the time the broker stopped sending
    finally:
        pub.loop_stop()
        pub.disconnect()
    assert e.stop()


def test_a_round_that_overlaps_a_reload_is_abandoned_and_the_next_one_works(hub):
    from edgestream_hub.config import load_config
    from edgestream_hub.processors import Passthrough
    from edgestream_hub.registry import component
    from edgestream_hub.spec import Spec

    gate = threading.Event()

    class Gated(Passthrough):
        def process(self, records, now_ms):
            gate.wait(20)
            return records

    hub.registry.register("processor", "gated", component(Spec("gated", "x", []))(lambda c, ctx: Gated()))
    text = """
sources: {s: {script: {name: s}}}
sinks: {out: {memory: {}}}
pipelines: {p: {from: s, processors: [gated: {}], to: out}}
state: {interval: 1h}
"""
    hub.scripts["s"] = [{"i": 1}]
    e = hub.engine(text)
    round_ = manual(e)
    assert wait_for(lambda: hub.sources["s"].pos == 1)
    result: list[bool] = []
    t = threading.Thread(target=lambda: result.append(round_()))
    t.start()  # its barrier waits behind the gated batch
    time.sleep(0.2)
    (hub.tmp / "hub.yaml").write_text(text.replace("[gated: {}]", "[gated: {}, passthrough: {}]"))
    reloaded = threading.Thread(target=lambda: e.reload(load_config(hub.tmp / "hub.yaml", registry=hub.registry)))
    reloaded.start()
    time.sleep(0.2)
    gate.set()
    t.join(20)
    reloaded.join(20)
    assert result == [False] and e.store is not None and e.store.numbers() == []
    assert e.metrics.value("edgestream_state_checkpoint_errors_total") == 0  # not a failure: it starts afresh
    assert round_() and len(e.store.numbers()) == 1
    assert e.stop()


def test_a_source_blocked_on_full_pipelines_makes_a_round_give_up_not_hang(hub):
    hub.scripts["s"] = [{"i": i} for i in range(200)]
    e = hub.engine("""
sources: {s: {script: {name: s, batch: 10}}}
sinks: {out: {memory: {gated: true}, queue: 10, batch: {size: 10, linger: 0ms}}}
pipelines: {p: {from: s, to: out, queue: 10, batch: {size: 10, linger: 0ms}}}
state: {interval: 1h}
""")
    round_ = manual(e)
    assert wait_for(lambda: stuck_in_emit(e, "s", "p"))  # everything full: the source waits in its emit
    t0 = time.monotonic()
    assert not round_()
    assert 1.5 < time.monotonic() - t0 < 10 and e.metrics.value("edgestream_state_checkpoint_errors_total") == 0
    hub.gates["out"].set()
    assert wait_for(lambda: len(hub.out["out"]) == 200)
    assert round_()
    assert e.stop()


def test_a_full_disk_at_the_start_is_no_reason_not_to_start(hub, monkeypatch, caplog):
    from edgestream_hub.checkpoint import CheckpointStore

    def full(*a, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(CheckpointStore, "lock", full)
    monkeypatch.setattr(CheckpointStore, "write", full)
    hub.scripts["s"] = recs(0, 100, 1200)
    with caplog.at_level(logging.ERROR, "edgestream.hub"):
        e = hub.engine(SCRIPTED + "state: {interval: 100ms}\n")
        assert wait_for(lambda: e.metrics.value("edgestream_state_checkpoint_errors_total") >= 1)
    assert "state: cannot lock" in caplog.text and "starting anyway" in caplog.text
    assert "checkpoint failed: cannot write a checkpoint" in caplog.text
    assert wait_for(lambda: len(hub.out.get("out", [])) == 1)  # the records flow on
    assert e.stop()


def test_state_no_pipeline_takes_is_dropped_with_a_warning_not_silently(hub, caplog):
    """A renamed or removed pipeline (or processor) leaves state with open windows that nothing resumes: the
    next checkpoint drops it and its records are lost, so a start says so, naming what."""
    hub.scripts["s"] = recs(0, 100)
    e = hub.engine(SCRIPTED)
    assert wait_for(lambda: hub.sources["s"].pos == 2)
    time.sleep(0.1)
    assert e.stop()
    hub.scripts["s"] = []
    with caplog.at_level(logging.WARNING, logger="edgestream.hub"):
        e2 = hub.engine(SCRIPTED.replace("  p:\n", "  renamed:\n"))
    assert e2.stop()
    said = [r.getMessage() for r in caplog.records if "no pipeline of the config takes" in r.getMessage()]
    assert len(said) == 1, [r.getMessage() for r in caplog.records]
    assert said[0].startswith("state: checkpoint ") and "holds the state of pipeline p (processor p.sql)" in said[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edgestream.hub"):
        e3 = hub.engine(SCRIPTED.replace("  p:\n", "  renamed:\n"))  # dropped by now: nothing more to say
    assert e3.stop()
    assert not [r for r in caplog.records if "no pipeline of the config takes" in r.getMessage()]


def test_resuming_from_an_older_checkpoint_says_what_it_costs(hub, caplog):
    """The broker dropped what the hub acknowledged after the damaged checkpoint: the fallback is not free."""
    hub.scripts["s"] = recs(0, 100)
    e = hub.engine(SCRIPTED)
    assert wait_for(lambda: hub.sources["s"].pos == 2)
    time.sleep(1.2)
    hub.scripts["s"].extend(recs(200))
    assert wait_for(lambda: hub.sources["s"].pos == 3)
    assert e.stop()
    ckpts = sorted((hub.tmp / ".edgestream" / "state").glob("checkpoint-*.ckpt"))
    assert len(ckpts) >= 2
    ckpts[-1].write_bytes(ckpts[-1].read_bytes()[:-5])
    hub.scripts["s"] = []
    with caplog.at_level(logging.WARNING, logger="edgestream.hub"):
        e2 = hub.engine(SCRIPTED)
    assert e2.stop()
    said = " / ".join(r.getMessage() for r in caplog.records)
    assert "skipped a checkpoint" in said
    assert "acknowledged after its cut" in said and "may be missing" in said, said
