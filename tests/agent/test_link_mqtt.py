"""The whole agent (sensors, windows, link) under the real MicroPython against mosquitto.

The agent runs from its compiled ``.mpy`` bundle (-O3) on the 32-bit stock
build (the ``mpy`` profile: a bundle copied onto a stock firmware), with the
esp32 heap (100 KB): its module code and interned names live on the heap too
(frozen firmware keeps them in flash), the tighter of the two ways to run it.
The remote-config test too: validating a config loads the validator next to
the running agent for a moment (see the README, "Memory"). A paho subscriber
plays the hub; ``seqcheck`` (tests/seqcheck.py) checks the sequence numbers.
"""

import copy
import json
import time

import pytest
from linktools import MqttProxy, Subscriber, finish, start_micropython, wait_until

from edgestream_shared.decoder import decode
from edgestream_shared.encoder import encode_config
from seqcheck import SeqCheck

HOST_ONLY = True
BOARD = "esp32"
RUN = "import sys\nfrom edgestream_agent.main import _cli\n_cli()\n"


def agent_config(port, window_ms=100, **transport):
    mqtt = {"host": "127.0.0.1", "port": port, "backoff_min_ms": 100, "backoff_max_ms": 400,
            "keepalive_s": 5, "rx_bytes": 2048}
    mqtt.update(transport.pop("mqtt", {}))
    t = {"type": "mqtt", "health_ms": 500, "poll_ms": 5, "mqtt": mqtt}
    t.update(transport)
    return {"device": "dev1", "version": 1,
            "sensors": [{"name": "temp", "period_ms": 10, "source": {"type": "sim", "wave": "steps"},
                         "windows": [{"name": "w", "size_ms": window_ms, "aggregates": ["count", "avg"]}]}],
            "transport": t}


def start_agent(tmp_path, cfg, duration_ms, board=BOARD, profile="mpy"):
    (tmp_path / "agent.json").write_text(json.dumps(cfg))
    (tmp_path / "run.py").write_text(RUN)
    return start_micropython(tmp_path / "run.py", tmp_path / "agent.json", duration_ms, board=board, profile=profile)


def stats(output):
    return json.loads(output.strip().splitlines()[-1])


def results(sub, topic="edgestream/dev1/results"):
    return [decode(p) for p in sub.on(topic)]


def seqs(sub, topic="edgestream/dev1/results"):
    return {it["seq"] for m in results(sub, topic) for it in m["items"]}


def check(sub):
    c = SeqCheck()
    for m in results(sub):
        c.feed(m)
    boot = c.boots["dev1"][0]
    return c.report("dev1", boot)


def test_outage_buffers_in_order_and_counts_what_it_dropped(tmp_path, mosquitto):
    # A persistent subscriber session (clean=False) survives the broker
    # restart in mosquitto's persistence, so nothing is lost on the hub side.
    sub = Subscriber(mosquitto, ["edgestream/dev1/#"], client_id="hub", clean=False)
    # ~150 bytes per result: 1500 bytes hold ~9 of the ~15 made in the outage
    cfg = agent_config(mosquitto.port, buffer_bytes=1500, max_message=256)
    agent = start_agent(tmp_path, cfg, 5000)
    try:
        assert wait_until(lambda: len(sub.on("edgestream/dev1/results")) >= 5, 15)
        mosquitto.stop()
        time.sleep(1.5)
        mosquitto.start()
        out = finish(agent, 60)
        s = stats(out)
        assert wait_until(lambda: len(seqs(sub)) + s["results_dropped"]
                          + s["results_dropped_unacked"] >= s["results"], 15), (s, sorted(seqs(sub)))
    finally:
        agent.kill()
        sub.close()
    rep = check(sub)
    assert s["results"] >= 40 and s["reconnects"] == 1
    assert s["results_dropped"] > 0, s  # the outage overflowed the buffer
    assert s["results_buffered"] == 0 and s["results_sent"] + s["results_dropped"] + \
        s["results_dropped_unacked"] == s["results"]
    # every seq made arrived except the dropped ones: one run, the oldest of the outage
    assert rep.unique + len(rep.missing) == s["results"]
    assert s["results_dropped"] <= len(rep.missing) <= s["results_dropped"] + s["results_dropped_unacked"]
    assert len(rep.missing_runs()) == 1, rep.missing_runs()
    assert rep.out_of_order == 0 and rep.order == sorted(rep.order)
    # a duplicate may only be a resend of a message in flight when the broker died
    assert len(rep.duplicates) <= 8
    # sampling went on, on time, while the broker was down
    assert s["lag_max_ms"] < 100, s
    assert s["samples"] >= 450
    status = sub.on("edgestream/dev1/status")
    assert decode(status[0])["state"] == "online" and decode(status[-1])["state"] == "offline"
    health = [decode(m)["metrics"] for m in sub.on("edgestream/dev1/metrics")]
    assert any(m["link_up"] == 1 for m in health)
    # headroom on the esp32 heap, after start and all through the run (the
    # health message measures after gc.collect(), with health.py loaded)
    assert len(health) >= 4 and min(m["heap_free"] for m in health) >= 20000, \
        [(m["heap_free"], m["heap_used"]) for m in health]


def test_lost_puback_is_resent_and_seen_as_a_duplicate(tmp_path, mosquitto):
    proxy = MqttProxy(mosquitto.host, mosquitto.port)
    sub = Subscriber(mosquitto, ["edgestream/dev1/results"])
    agent = start_agent(tmp_path, agent_config(proxy.port, health_ms=0), 3000)
    try:
        assert wait_until(lambda: len(sub.on("edgestream/dev1/results")) >= 5, 15)
        proxy.drop_next_puback()
        s = stats(finish(agent, 60))
        assert wait_until(lambda: len(check(sub).order) >= s["results"], 10)
    finally:
        agent.kill()
        proxy.close()
        sub.close()
    rep = check(sub)
    assert len(proxy.dropped_pids) == 1 and proxy.connections == 2
    assert s["reconnects"] == 1 and s["results_resent"] >= 1
    assert len(rep.duplicates) >= 1, rep  # the hub sees the resend by its seq
    assert rep.missing == [] and rep.unique == s["results"] and rep.out_of_order == 0


def _push_config(broker, payload):
    import paho.mqtt.client as mqtt
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="hubcfg")
    c.connect(broker.host, broker.port)
    c.loop_start()
    c.publish("edgestream/dev1/config", payload, qos=1, retain=True).wait_for_publish(5)
    c.loop_stop()
    c.disconnect()


def test_remote_config_applies_without_reboot_and_refuses_bad_ones(tmp_path, mosquitto):
    sub = Subscriber(mosquitto, ["edgestream/dev1/#"])
    agent = start_agent(tmp_path, agent_config(mosquitto.port, health_ms=0), 6000)

    def acks():
        return [decode(p) for p in sub.on("edgestream/dev1/config/ack")]

    try:
        assert wait_until(lambda: len(sub.on("edgestream/dev1/results")) >= 3, 15)
        new = agent_config(mosquitto.port, window_ms=300, health_ms=0)
        del new["version"]
        _push_config(mosquitto, encode_config("dev1", 2, new))
        assert wait_until(lambda: len(acks()) == 1, 10)
        assert acks()[0]["ok"] is True and acks()[0]["version"] == 2, acks()[0]["error"]
        bad = agent_config(mosquitto.port, window_ms=0, health_ms=0)
        bad["version"] = 3
        _push_config(mosquitto, encode_config("dev1", 3, bad))
        _push_config(mosquitto, b"{not json")
        _push_config(mosquitto, b'{"v":1,"dev":"dev1","kind":"config","version":4,"config":' + b" " * 3000 + b"{}}")
        _push_config(mosquitto, encode_config("dev2", 5, new))
        assert wait_until(lambda: len(acks()) == 5, 10)
        n_before = len(sub.on("edgestream/dev1/results"))
        assert wait_until(lambda: len(sub.on("edgestream/dev1/results")) >= n_before + 2, 10)
        s = stats(finish(agent, 60))
    finally:
        agent.kill()
        sub.close()
    a = acks()
    assert a[1]["ok"] is False and a[1]["version"] == 3, [x.get("error") for x in a]
    assert a[1]["error"].startswith("sensors[0].windows[0].size_ms:"), a[1]
    assert a[2]["ok"] is False and a[2]["error"].startswith("payload: not valid"), a[2]
    assert a[3]["ok"] is False and "over the 2048 byte limit" in a[3]["error"], a[3]
    assert a[3]["version"] == 4, a[3]  # read from the part of it that came
    assert a[4]["ok"] is False and a[4]["error"].startswith("dev:"), a[4]
    # no reboot: one boot id, seqs continue; windows became 300 ms and stayed
    rep = check(sub)
    assert rep.missing == [] and len(set(m["boot"] for m in results(sub))) == 1
    spans = [(it["end"] - it["start"]) for m in results(sub) for it in m["items"]]
    assert spans[0] == 100 and spans[-2] == 300 and 300 in spans
    assert s["config_version"] == 2 and s["rx_refused"] == 4
    # the config messages came and went: the heap is free again (esp32 profile)
    assert s["heap_free"] >= 20000, s
    saved = json.loads((tmp_path / "agent.json").read_text())
    assert saved["version"] == 2 and saved["sensors"][0]["windows"][0]["size_ms"] == 300


# The demo's agent (edgestream_tools.demo.AGENT): two sensors, four filters.
def demo_config(port):
    from edgestream_tools.demo import AGENT
    cfg = copy.deepcopy(AGENT)
    cfg["device"] = "dev1"
    cfg["transport"] = {"type": "mqtt", "health_ms": 300, "poll_ms": 5,
                        "mqtt": {"host": "127.0.0.1", "port": port, "keepalive_s": 5}}
    return cfg


@pytest.mark.parametrize("profile", ["frozen", "mpy"])
def test_a_refused_remote_config_never_locks_the_agent_out(tmp_path, mosquitto, profile):
    # The demo config on the esp32 heap: a config too big for the heap, an
    # invalid one and a valid one, in a row. Each nack carries the message's
    # version and its own reason; the heap the big one took is given back;
    # the valid one is applied.
    sub = Subscriber(mosquitto, ["edgestream/dev1/#"])
    cfg = demo_config(mosquitto.port)
    agent = start_agent(tmp_path, cfg, 9000, profile=profile)
    acks = lambda: [decode(p) for p in sub.on("edgestream/dev1/config/ack")]  # noqa: E731
    heap = lambda: [decode(p)["metrics"]["heap_free"] for p in sub.on("edgestream/dev1/metrics")]  # noqa: E731
    try:
        assert wait_until(lambda: len(heap()) >= 2, 15)
        big = copy.deepcopy(cfg)
        big["sensors"].append({"name": "x", "period_ms": 100, "filters": [{"delta": 0.1}, {"round": 1}],
                               "windows": [{"name": "s", "size_ms": 60000, "every_ms": 1000,
                                            "capacity": 20000}]})
        _push_config(mosquitto, encode_config("dev1", 2, big))
        assert wait_until(lambda: len(acks()) == 1, 10)
        n = len(heap())
        assert wait_until(lambda: len(heap()) >= n + 2, 10)
        bad = copy.deepcopy(cfg)
        bad["sensors"][1]["windows"][0]["size_ms"] = 0
        _push_config(mosquitto, encode_config("dev1", 3, bad))
        good = copy.deepcopy(cfg)
        good["sensors"][0]["windows"][0]["size_ms"] = 2000
        _push_config(mosquitto, encode_config("dev1", 4, good))
        assert wait_until(lambda: len(acks()) == 3, 10)
        s = stats(finish(agent, 60))
    finally:
        agent.kill()
        sub.close()
    a = acks()
    assert a[0]["ok"] is False and a[0]["version"] == 2, a[0]
    assert a[0]["error"].startswith("memory: not enough heap to build sensors[2] (x) ("), a[0]
    assert a[1]["ok"] is False and a[1]["version"] == 3, a[1]
    assert a[1]["error"].startswith("sensors[1].windows[0].size_ms: must be > 0"), a[1]
    assert a[2]["ok"] is True and a[2]["version"] == 4, a[2]
    assert s["config_version"] == 4 and s["configs_applied"] == 1 and s["configs_refused"] == 2
    # what the refused attempt took came back (health messages after it vs before it)
    h = heap()
    assert max(h[n:n + 2]) >= h[0] - 1024, h


# Fills the heap at the first scheduler step but for ~2.5 KB in whatever
# pieces are left, and holds it until the link has sent a nack: then lets
# it go.
FULL_HEAP = """
import gc
import edgestream_agent.link as _link
import edgestream_agent.scheduler as _sched
links = []
attach = _link.Link.attach
def att(self, *a):
    links.append(self)
    return attach(self, *a)
_link.Link.attach = att
step0 = _sched.Scheduler.step
ballast = [None] * 3000
state = [0]
def step(self):
    if state[0] == 0:
        state[0] = 1
        gc.collect()
        k = 0
        for size in (4096, 1024, 256, 64, 16):
            try:
                while k < 3000 and gc.mem_free() - size > 2560:
                    ballast[k] = bytearray(size)
                    k += 1
            except MemoryError:
                pass
    elif state[0] == 1 and links[0].cfg_refused and not links[0]._ctrl:
        state[0] = 2
        for k in range(3000):
            ballast[k] = None
        gc.collect()
    return step0(self)
_sched.Scheduler.step = step
"""


def test_a_config_that_finds_the_heap_full_is_nacked_with_its_version(tmp_path, mosquitto):
    # The hub's config arrives while the heap is nearly full (too full for
    # the transport to copy it, or for the code that reads it): a memory nack
    # with the message's version, the link goes on, and once the heap is back
    # the next config is applied.
    sub = Subscriber(mosquitto, ["edgestream/dev1/#"])
    cfg = agent_config(mosquitto.port, health_ms=0)
    new = copy.deepcopy(cfg)
    new["sensors"][0]["windows"][0]["size_ms"] = 300
    del new["version"]
    _push_config(mosquitto, encode_config("dev1", 7, new))  # retained: it comes right after the connect
    (tmp_path / "agent.json").write_text(json.dumps(cfg))
    (tmp_path / "run.py").write_text(FULL_HEAP + RUN)
    agent = start_micropython(tmp_path / "run.py", tmp_path / "agent.json", 6000)
    acks = lambda: [decode(p) for p in sub.on("edgestream/dev1/config/ack")]  # noqa: E731
    try:
        assert wait_until(lambda: len(acks()) == 1, 15), "no ack"
        n = len(sub.on("edgestream/dev1/results"))
        assert wait_until(lambda: len(sub.on("edgestream/dev1/results")) >= n + 2, 10)
        _push_config(mosquitto, encode_config("dev1", 8, new))
        assert wait_until(lambda: len(acks()) == 2, 10)
        s = stats(finish(agent, 60))
    finally:
        agent.kill()
        sub.close()
    a = acks()
    assert a[0]["ok"] is False and a[0]["version"] == 7, a[0]
    assert a[0]["error"].startswith("memory: not enough heap to "), a[0]
    assert a[1]["ok"] is True and a[1]["version"] == 8, a[1]
    assert s["config_version"] == 8 and s["configs_refused"] == 1


def test_batches_survive_an_outage_nothing_lost(tmp_path, mosquitto):
    # Two sensors whose windows close together: one message per boundary.
    # Through an outage they wait in the offline buffer as batches and go
    # out (again, for those in flight) after the reconnect.
    sub = Subscriber(mosquitto, ["edgestream/dev1/results"], client_id="hub", clean=False)
    cfg = agent_config(mosquitto.port, window_ms=200, buffer_bytes=8000, health_ms=0)
    cfg["sensors"].append(dict(cfg["sensors"][0], name="hum"))
    agent = start_agent(tmp_path, cfg, 5000)
    try:
        assert wait_until(lambda: len(sub.on("edgestream/dev1/results")) >= 3, 15)
        mosquitto.stop()
        time.sleep(1.5)
        mosquitto.start()
        s = stats(finish(agent, 60))
        assert wait_until(lambda: len(seqs(sub)) >= s["results"], 15), (s, sorted(seqs(sub)))
    finally:
        agent.kill()
        sub.close()
    rep = check(sub)
    assert s["results_dropped"] == 0 and s["reconnects"] == 1
    assert rep.missing == [] and rep.unique == s["results"] and rep.out_of_order == 0
    assert len(rep.duplicates) <= 2 * 8  # only resends of what was in flight when the broker died
    sizes = [len(m["items"]) for m in results(sub)]
    # each boundary's two results in one message, before and after the outage
    assert sizes.count(2) >= len(sizes) - 4 and len(sizes) < s["results"], sizes


def test_the_agent_is_back_within_the_backoff_cap_after_the_broker_returns(tmp_path, mosquitto):
    # Default backoff (250 ms doubling to the 3 s cap, each wait a random
    # b/2..b). A broker down for 8 s has pushed the backoff to the cap; once
    # it listens again, the first new result reaches a subscriber within the
    # cap plus a margin.
    cfg = agent_config(mosquitto.port, health_ms=0)
    for k in ("backoff_min_ms", "backoff_max_ms"):
        del cfg["transport"]["mqtt"][k]
    agent = start_agent(tmp_path, cfg, 16000)
    sub = None
    try:
        s0 = Subscriber(mosquitto, ["edgestream/dev1/results"], client_id="probe")
        assert wait_until(lambda: len(s0.on("edgestream/dev1/results")) >= 2, 15)
        s0.close()
        mosquitto.stop()
        time.sleep(8)
        mosquitto.start()
        back = time.monotonic()
        sub = Subscriber(mosquitto, ["edgestream/dev1/results"], client_id="probe2")
        assert wait_until(lambda: len(sub.on("edgestream/dev1/results")) >= 1, 10)
        took = time.monotonic() - back
        s = stats(finish(agent, 60))
    finally:
        agent.kill()
        if sub is not None:
            sub.close()
    assert took < 3.0 + 1.5, took
    assert s["reconnects"] == 1 and s["link_failures"] >= 4, s


def test_a_publish_the_link_dies_under_is_sent_again_and_the_acks_go_on(mosquitto):
    # The socket fails inside publish() (the broker went away between two
    # polls): the link must neither stall on a packet id the broker never
    # saw nor lose the message. Under CPython, the same link code, a real
    # mosquitto; the socket's send fails once, at that moment.
    from edgestream_agent.config import validate
    from edgestream_agent.link import Link

    sub = Subscriber(mosquitto, ["edgestream/dev1/results"], client_id="hub", clean=False)
    cfg = validate(agent_config(mosquitto.port, health_ms=0, mqtt={"keepalive_s": 60}))
    lk = Link(cfg, 7)
    c = lk.tx.client
    made = [0]

    def results(n):
        for _ in range(n):
            made[0] += 1
            lk.result("temp", "w", made[0] * 100, made[0] * 100 + 100, (b"count",), [made[0]])

    def pump(until, seconds=10.0):
        deadline = time.monotonic() + seconds
        while not until() and time.monotonic() < deadline:
            lk.poll()
            time.sleep(0.002)
        return until()

    try:
        assert pump(lambda: c.state == 3)
        results(5)
        assert pump(lambda: lk.buf.acked == 5)
        write = c._write
        failed = []

        def broken(data):
            # the first write after this point: the broker is gone (the socket is cut too)
            c._write = write
            failed.append(len(data))
            c._sock.close()
            raise OSError(32)  # EPIPE

        results(3)
        lk._bt -= lk.poll_ms  # the open message closes at this poll
        c._write = broken
        lk.poll()
        assert failed, "the socket did not fail inside publish"
        results(20)
        assert pump(lambda: lk.drained() and lk.buf.acked == made[0]), \
            (lk.buf.acked, made[0], lk._n_rpids, list(lk._rpids), c.state)
        assert wait_until(lambda: len(seqs(sub)) == made[0], 10), sorted(seqs(sub))
        assert lk.buf.resent >= 1 and lk.buf.dropped == 0
    finally:
        lk.close()
        sub.close()
