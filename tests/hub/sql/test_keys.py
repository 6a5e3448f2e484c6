"""One rule for keys: two values are the same key when ``=`` says they are equal.

So TRUE and 1 are different keys (a boolean is not a number), while 1 and 1.0 are one key (both
numbers, equal); arrays and objects are keys by their contents. The rule holds for GROUP BY in
every window kind, count(DISTINCT), PARTITION BY, had_changed/changed_col and join keys, and an
output key keeps the value and kind of the first record of its group.
"""

from __future__ import annotations

import pytest

from edgestream_hub.api import SimpleContext
from edgestream_hub.sql.keys import Key, equal, key, unkey
from edgestream_hub.sql.processor import SqlProcessor

BOOLKEY = [{"ts": 1, "k": 1, "v": 10}, {"ts": 2, "k": True, "v": 20}, {"ts": 3, "k": 0, "v": 30},
           {"ts": 4, "k": False, "v": 40}]


def run(query: str, records: list, **kw) -> tuple[list, list]:
    ctx = SimpleContext()
    p = SqlProcessor(query, ctx, **kw)
    out = p.process(records, 0) + p.flush()
    return out, ctx.dead


def test_key_rule():
    assert key(True) != key(1) and key(False) != key(0) and key(True) != key(1.0)
    assert key(1) == key(1.0) and hash(key(1)) == hash(key(1.0))
    assert key([1, True]) != key([1, 1]) and key([1, 2.0]) == key([1.0, 2])
    assert key({"a": [True]}) != key({"a": [1]}) and key({"a": 1, "b": 2}) == key({"b": 2.0, "a": 1})
    assert key(float("nan")) == key(float("nan"))
    assert unkey(key(True)) is True and unkey(key([1])) == [1] and isinstance(key([1]), Key)
    assert equal(1, 1.0) and not equal(True, 1) and not equal("1", 1) and equal(None, None)


@pytest.mark.parametrize("window", ["", ", TUMBLINGWINDOW(ss, 10)", ", HOPPINGWINDOW(ss, 10, 10)",
                                    ", SESSIONWINDOW(ss, 100, 50)"])
def test_booleans_and_numbers_are_different_groups_in_every_window(window):
    out, dead = run(f"SELECT k, sum(v) AS s FROM s GROUP BY k{window}", BOOLKEY)
    assert dead == []
    assert out == [{"k": 1, "s": 10}, {"k": True, "s": 20}, {"k": 0, "s": 30}, {"k": False, "s": 40}]


@pytest.mark.parametrize("window", ["SLIDINGWINDOW(ss, 10)", "COUNTWINDOW(1)"])
def test_sliding_and_count_windows_agree(window):
    out, _ = run(f"SELECT k, sum(v) AS s FROM s GROUP BY k, {window}", BOOLKEY)
    assert out == [{"k": 1, "s": 10}, {"k": True, "s": 20}, {"k": 0, "s": 30}, {"k": False, "s": 40}]


def test_integers_and_floats_are_one_group_keeping_the_first_value():
    out, _ = run("SELECT k, count(*) AS n FROM s GROUP BY k", [{"ts": 1, "k": 1.0}, {"ts": 2, "k": 1},
                                                                 {"ts": 3, "k": True}])
    assert out == [{"k": 1.0, "n": 2}, {"k": True, "n": 1}]
    assert isinstance(out[0]["k"], float)


def test_composite_keys_and_array_keys():
    recs = [{"ts": 1, "a": [1, True], "b": 1}, {"ts": 2, "a": [1, 1], "b": True}, {"ts": 3, "a": [1.0, True], "b": 1.0}]
    out, dead = run("SELECT a, b, count(*) AS n FROM s GROUP BY a, b, TUMBLINGWINDOW(ss, 1)", recs)
    assert dead == []
    assert out == [{"a": [1, True], "b": 1, "n": 2}, {"a": [1, 1], "b": True, "n": 1}]


@pytest.mark.parametrize("window", ["TUMBLINGWINDOW(ss, 10)", "SLIDINGWINDOW(ss, 10)", "COUNTWINDOW(5)"])
def test_count_distinct_counts_by_the_key_rule(window):
    recs = [{"ts": i + 1, "k": k} for i, k in enumerate([1, True, 1.0, 0, False])]
    out, dead = run(f"SELECT count(DISTINCT k) AS d FROM s GROUP BY {window}", recs)
    assert dead == []
    assert out[-1] == {"d": 4}


def test_count_distinct_of_arrays_and_objects():
    recs = [{"ts": 1, "k": [1]}, {"ts": 2, "k": [True]}, {"ts": 3, "k": [1.0]}, {"ts": 4, "k": {"a": 1}}]
    for window in ("TUMBLINGWINDOW(ss, 10)", "SLIDINGWINDOW(ss, 10)"):
        out, dead = run(f"SELECT count(DISTINCT k) AS d FROM s GROUP BY {window}", recs)
        assert dead == [] and out[-1] == {"d": 3}, window


def test_partition_by_keeps_booleans_apart():
    recs = [{"ts": 1, "k": 1, "v": "a"}, {"ts": 2, "k": True, "v": "b"}, {"ts": 3, "k": 1.0, "v": "c"}]
    out, _ = run("SELECT v, lag(v) OVER (PARTITION BY k) AS p FROM s", recs)
    assert out == [{"v": "a", "p": None}, {"v": "b", "p": None}, {"v": "c", "p": "a"}]


def test_changes_are_seen_between_booleans_and_numbers():
    recs = [{"ts": 1, "v": 1}, {"ts": 2, "v": True}, {"ts": 3, "v": 1.0}, {"ts": 4, "v": 1}, {"ts": 5, "v": [1]},
            {"ts": 6, "v": [True]}]
    out, _ = run("SELECT had_changed(true, v) AS h, changed_col(true, v) AS c FROM s", recs)
    assert [r["h"] for r in out] == [True, True, True, False, True, True]
    assert [r["c"] for r in out] == [1, True, 1.0, None, [1], [True]]


def test_table_join_keys_keep_booleans_apart():
    tables = {"t": [{"id": 1, "name": "one"}, {"id": True, "name": "yes"}, {"id": [1], "name": "arr"}]}
    recs = [{"ts": 1, "k": 1.0}, {"ts": 2, "k": True}, {"ts": 3, "k": 0}, {"ts": 4, "k": [1.0]}]
    out, dead = run("SELECT s.k, t.name FROM s LEFT JOIN t ON s.k = t.id", recs, tables=tables)
    assert dead == []
    assert out == [{"k": 1.0, "name": "one"}, {"k": True, "name": "yes"}, {"k": 0, "name": None},
                   {"k": [1.0], "name": "arr"}]


def test_stream_join_keys_keep_booleans_apart():
    recs = [{"_stream": "a", "ts": 1, "k": 1}, {"_stream": "a", "ts": 2, "k": True},
            {"_stream": "b", "ts": 3, "k": True, "y": "b-true"}, {"_stream": "b", "ts": 4, "k": 1.0, "y": "b-one"}]
    out, dead = run("SELECT a.k, b.y FROM a JOIN b ON a.k = b.k GROUP BY TUMBLINGWINDOW(ss, 10)", recs)
    assert dead == []
    assert sorted(out, key=str) == sorted([{"k": 1, "y": "b-one"}, {"k": True, "y": "b-true"}], key=str)


def test_array_equality_follows_the_kinds():
    out, dead = run("SELECT a = b AS e, a IN (b) AS i FROM s", [{"ts": 1, "a": [1], "b": [True]},
                                                              {"ts": 2, "a": [1], "b": [1.0]},
                                                              {"ts": 3, "a": {"x": False}, "b": {"x": 0}}])
    assert dead == []
    assert out == [{"e": False, "i": False}, {"e": True, "i": True}, {"e": False, "i": False}]


def test_a_group_whose_row_fails_is_dead_lettered_with_its_plain_key():
    ctx = SimpleContext()
    p = SqlProcessor("SELECT k, 1 / (count(*) - 1) AS x FROM s GROUP BY k", ctx)
    p.process([{"ts": 1, "k": True}, {"ts": 2, "k": [1]}], 0)
    assert p.flush() == []
    assert [rec["key"] for rec, _ in ctx.dead] == [True, [1]]


def test_snapshot_keeps_the_key_kinds():
    q = "SELECT k, count(*) AS n, count(DISTINCT v) AS d FROM s GROUP BY k, TUMBLINGWINDOW(ss, 10)"
    p = SqlProcessor(q, SimpleContext())
    p.process([{"ts": 1, "k": True, "v": [1]}, {"ts": 2, "k": 1, "v": True}], 0)
    import json
    snap = json.loads(json.dumps(p.snapshot()))
    p2 = SqlProcessor(q, SimpleContext(), resume_state=snap)
    p2.process([{"ts": 3, "k": True, "v": [True]}, {"ts": 4, "k": 1.0, "v": 1}], 0)
    assert p2.flush() == [{"k": True, "n": 2, "d": 2}, {"k": 1, "n": 2, "d": 2}]
