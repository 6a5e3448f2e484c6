"""Checkpoints kept by entry: a delta holds only the window and group entries that changed, and a base with
its deltas restores exactly what a full snapshot holds (values and order)."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from edgestream_hub.api import SimpleContext
from edgestream_hub.checkpoint import CheckpointStore, section
from edgestream_hub.sql.processor import SqlProcessor
from edgestream_hub.sql.state import encode


def text(v: object) -> str:
    """Order-sensitive: two sections are the same only if their maps list their entries in the same order."""
    return json.dumps(v, separators=(",", ":"))


def pipeline(snap: object) -> dict:
    return {"processors": {"agg.sql": snap}}


# -- the entries of plain snapshot maps, under random changes --
OPS = st.lists(st.tuples(st.sampled_from(["set", "del", "drop", "clear", "again", "tick", "write"]),
                         st.integers(0, 2), st.integers(0, 3), st.integers(0, 3)), max_size=40)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS, full_every=st.integers(1, 6))
@example(ops=[("set", 0, 0, 1), ("set", 0, 1, 1), ("again", 0, 0, 2)], full_every=5)
def test_every_checkpoint_of_a_chain_is_its_full_snapshot(tmp_path_factory, ops, full_every):
    store = CheckpointStore(tmp_path_factory.mktemp("s"), full_every=full_every, retain=1000)
    W: dict = {}  # window -> {group: [count, sum]}, as a fast executor holds them
    W0: dict = {}
    wm = 0
    expected: dict[int, str] = {}

    def write() -> None:
        snap = pipeline({"wm": wm, "state": encode({"W": W, "W0": W0})})
        w = store.write({"pipeline/p": section(snap), "source/s": text({"positions": wm})})
        expected[w.n] = text(snap)

    for op, w, g, v in ops:
        groups: dict = W.setdefault(w, {}) if op in ("set", "again", "clear") else W.get(w, {})
        if op == "set":
            groups[("d", g)] = [v, v * 0.5]
        elif op == "del":
            groups.pop(("d", g), None)
        elif op == "drop":
            W.pop(w, None)
            W0.pop(g, None)
        elif op == "clear":
            groups.clear()  # a window whose groups were shed stays, empty
        elif op == "again":  # removed and added again: it moves last, which a delta cannot say
            groups.pop(("d", g), None)
            groups[("d", g)] = [v]
            W0[g] = {v}
        elif op == "tick":
            wm += 1
        write()
    write()
    for n, want in expected.items():
        assert text(store.assemble(n).sections["pipeline/p"]) == want, n
    assert text(CheckpointStore(store.dir).restore().sections["pipeline/p"]) == expected[max(expected)]


# -- a SQL processor's state, base and deltas against a full snapshot --
QUERIES = [
    "SELECT id, count(*) AS n, avg(v) AS m, collect(v) AS c FROM s GROUP BY id, TUMBLINGWINDOW(ss, 1)",
    "SELECT id, sum(v) AS s FROM s GROUP BY id, HOPPINGWINDOW(ss, 2, 1)",
    "SELECT id, count(*) AS n FROM s GROUP BY id, SESSIONWINDOW(ss, 5, 1)",
    "SELECT id, max(v) AS x FROM s GROUP BY id, SLIDINGWINDOW(ss, 1)",
    "SELECT id, count(*) AS n FROM s GROUP BY id, COUNTWINDOW(3)",
    "SELECT id, v FROM s GROUP BY TUMBLINGWINDOW(ss, 1)",
    "SELECT id, count(*) AS n FROM s GROUP BY id",
    "SELECT a.id, a.v, b.v AS w FROM a JOIN b ON a.id = b.id GROUP BY TUMBLINGWINDOW(ss, 1)",
]
BATCHES = st.lists(st.lists(st.tuples(st.integers(0, 7), st.integers(0, 4000), st.integers(-3, 9),
                                      st.sampled_from("ab")), max_size=12), min_size=1, max_size=12)


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: q.split("GROUP BY ")[-1].split("(")[0])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=BATCHES, full_every=st.integers(1, 5))
def test_a_processor_restored_from_base_and_deltas_is_the_one_a_full_snapshot_restores(
        tmp_path_factory, query, batches, full_every):
    folder = tmp_path_factory.mktemp("s")
    store = CheckpointStore(folder, full_every=full_every)
    p = SqlProcessor(query, SimpleContext(), lateness_ms=1500)
    clock = 0
    for batch in batches:
        clock += 1
        p.process([{"id": f"k{i}", "ts": ts, "v": v, "_stream": s} for i, ts, v, s in batch], clock)
        store.write({"pipeline/p": section(pipeline(p.snapshot()))})
    full = p.snapshot()
    got = CheckpointStore(folder).restore().sections["pipeline/p"]["processors"]["agg.sql"]
    assert text(got) == text(json.loads(text(full)))
    q1 = SqlProcessor(query, SimpleContext(), lateness_ms=1500, resume_state=got)
    q2 = SqlProcessor(query, SimpleContext(), lateness_ms=1500, resume_state=json.loads(text(full)))
    more = [{"id": f"k{i}", "ts": 3000 + 100 * i, "v": i, "_stream": "ab"[i % 2]} for i in range(8)]
    assert q1.process(more, clock + 1) + q1.flush() == q2.process(more, clock + 1) + q2.flush()


def test_a_delta_holds_only_the_groups_that_changed(tmp_path):
    store = CheckpointStore(tmp_path, full_every=10)
    p = SqlProcessor("SELECT id, count(*) AS n FROM s GROUP BY id, TUMBLINGWINDOW(ss, 60)", SimpleContext())
    p.process([{"id": f"d{i}", "ts": 1000} for i in range(1000)], 0)
    full = store.write({"pipeline/p": section(pipeline(p.snapshot()))})
    p.process([{"id": f"d{i}", "ts": 2000} for i in range(0, 1000, 100)], 1)  # 1% of the groups
    delta = store.write({"pipeline/p": section(pipeline(p.snapshot()))})
    h, body = store.read(delta.n)
    assert (full.kind, delta.kind) == ("full", "delta")
    part = body["pipeline/p"]
    assert part["__keyed"] == "delta" and sum(len(v) for v in part["set"].values()) == 10
    assert delta.size * 10 < full.size  # the header and the query text are most of it
    assert text(store.restore().sections["pipeline/p"]) == text(pipeline(p.snapshot()))


def rewrite(store: CheckpointStore, n: int, body: bytes) -> None:
    """Checkpoint ``n`` with another body, its header's size and checksum to match."""
    with open(store.path(n), "rb") as f:
        head = json.loads(f.readline())
    head.update(bytes=len(body), sha256=hashlib.sha256(body).hexdigest())
    store.path(n).write_bytes(json.dumps(head).encode() + b"\n" + body)


@pytest.mark.parametrize("base, usable, says", [
    (b'{"pipeline/p":{"processors":{}}}', 1,
     "checkpoint-000000000002.ckpt: section pipeline/p: a 'delta' part of entries with no whole section before it "
     "to apply to"),
    (b'{"pipeline/p":{"__keyed":"full","head":{"state":{"__split":"m"}},"set":{}}}', None,
     "checkpoint-000000000001.ckpt: section pipeline/p: the entries of map m are in no file of its chain"),
])
def test_entries_that_do_not_add_up_are_refused_and_the_one_before_used(tmp_path, base, usable, says):
    store = CheckpointStore(tmp_path, full_every=10)
    store.write({"pipeline/p": section(pipeline({"state": encode({"W": {1: 2}})}))})
    store.write({"pipeline/p": section(pipeline({"state": encode({"W": {1: 3}})}))})
    rewrite(store, 1, base)
    r = CheckpointStore(tmp_path).restore()
    assert r.n == usable and says in r.problems


def test_checkpoints_of_the_version_before_are_read(tmp_path):
    store = CheckpointStore(tmp_path)
    store.write({"pipeline/p": '{"processors":{"x":1}}'})
    raw = store.path(1).read_bytes()
    assert b'"version":2' in raw
    store.path(1).write_bytes(raw.replace(b'"version":2', b'"version":1', 1))  # whole sections, as version 1 wrote
    assert CheckpointStore(tmp_path).restore().sections == {"pipeline/p": {"processors": {"x": 1}}}


def test_an_entry_removed_and_added_again_is_written_alone_and_goes_last(tmp_path):
    store = CheckpointStore(tmp_path)
    groups = {f"k{i}": i for i in range(1000)}
    store.write({"pipeline/p": section(pipeline({"state": encode({"open": groups})}))})
    del groups["k3"]
    groups["k3"] = 3  # the same value, now last (a session closed and opened again for its key)
    w = store.write({"pipeline/p": section(pipeline({"state": encode({"open": groups})}))})
    part = store.read(w.n)[1]["pipeline/p"]
    assert part["set"] == {'["processors","agg.sql","state"]|"open"': [["k3", 3]]}
    assert part["del"] == {'["processors","agg.sql","state"]|"open"': ["k3"]}
    got = store.restore().sections["pipeline/p"]["processors"]["agg.sql"]["state"]
    assert got["__m"][0][1]["__m"][-1] == ["k3", 3] and text(got) == text(encode({"open": groups}))


# -- a map handed over unencoded (``Entries``) writes what its encoded snapshot writes --
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True), st.text(max_size=3))
KEYS = st.one_of(st.integers(-3, 3), st.text(max_size=2), st.tuples(st.text(max_size=2), st.integers(0, 3)),
                 st.floats(allow_nan=True))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.tuples(inner, inner), st.dictionaries(KEYS, inner, max_size=3)), max_leaves=12)
STATES = st.dictionaries(KEYS, st.dictionaries(KEYS, st.dictionaries(KEYS, VALUES, max_size=3), max_size=3),
                         max_size=3)


@settings(max_examples=200, deadline=None)
@given(state=STATES, deep=st.booleans())
@example(state={"w": {float("nan"): {1: 2}, float("nan"): {1: 3}}}, deep=False)  # two keys, one text: kept whole
def test_a_map_handed_over_unencoded_is_written_as_its_encoded_snapshot(state, deep):
    from edgestream_hub.checkpoint import Entries

    def wrap(v: object) -> dict:
        head = {"wm": 1, "state": v, "listed": [v]}  # in a list it is never split: written whole
        return {"a": {"b": {"c": {"d": {"e": {"f": head}}}}}} if deep else head  # past the split depth: whole

    lazy, eager = section(wrap(Entries(state, encode))), section(wrap(encode(state)))
    assert lazy.head == eager.head and lazy.maps == eager.maps
    assert lazy.text(None, lazy.kept()) == eager.text(None, eager.kept())


def test_a_sql_processors_checkpoint_holds_what_its_snapshot_holds(tmp_path):
    proc = SqlProcessor("SELECT device, count(*) AS n, avg(value) AS mean FROM s GROUP BY device, "
                        "TUMBLINGWINDOW(ss, 10)", SimpleContext())
    proc.process([{"device": f"d{i % 7}", "value": i * 0.5, "ts": 1000 * i} for i in range(40)], 0)
    by_entry, whole = CheckpointStore(tmp_path / "a"), CheckpointStore(tmp_path / "b")
    by_entry.write({"pipeline/p": section(pipeline(proc.checkpoint_snapshot()))})
    whole.write({"pipeline/p": section(pipeline(proc.snapshot()))})
    assert by_entry.path(1).read_bytes().split(b"\n", 1)[1] == whole.path(1).read_bytes().split(b"\n", 1)[1]
    assert by_entry.restore().sections["pipeline/p"] == pipeline(json.loads(json.dumps(proc.snapshot())))
