"""SQLite sink against a real SQLite file."""

from __future__ import annotations

import sqlite3

import pytest

from edgestream_hub.errors import StartError


def test_table_created_from_the_schema_batched_and_type_checked(hub):
    hub.scripts["s"] = [{"device": "d1", "avg": 21.5, "ts": i, "extra": 1} if i == 3 else
                        {"device": "d1", "avg": 20 + i, "ts": i} for i in range(10)]
    hub.scripts["s"][5] = {"device": "d1", "avg": "warm", "ts": 5}
    hub.scripts["s"][6] = {"device": 6, "avg": 1.0, "ts": 6}
    e = hub.engine("""
hub: {dead_letter: dlq}
sources: {s: {script: {name: s, finite: true}}}
sinks:
  db: {sqlite: {path: hub.db, table: results, columns: {device: TEXT, avg: REAL, ts: INTEGER}}, batch: {size: 4}}
  dlq: {memory: {}}
pipelines: {p: {from: s, to: db}}
""")
    assert e.finished.wait(10)
    assert e.stop()
    con = sqlite3.connect(hub.tmp / "hub.db")
    rows = con.execute("SELECT device, avg, ts FROM results ORDER BY ts").fetchall()
    con.close()
    assert [r[2] for r in rows] == [0, 1, 2, 4, 7, 8, 9]
    reasons = [d["reason"] for d in hub.out["dlq"]]
    assert "fields ['extra'] are not columns of table 'results'" in reasons[0]
    assert "column 'avg' is REAL, got str 'warm'" in reasons[1]
    assert "column 'device' is TEXT, got int 6" in reasons[2]


def test_schema_inferred_and_existing_table_reused(hub):
    hub.scripts["s"] = [{"a": 1, "b": "x", "c": {"k": 1}}]
    cfg = """
sources: {s: {script: {name: s, finite: true}}}
sinks: {db: {sqlite: {path: hub.db, table: t, extra: ignore}}}
pipelines: {p: {from: s, to: db}}
"""
    e = hub.engine(cfg)
    assert e.finished.wait(10) and e.stop()
    hub.scripts["s"] = [{"a": 2, "b": "y", "zzz": 0}]
    e = hub.engine(cfg)
    assert e.finished.wait(10) and e.stop()
    con = sqlite3.connect(hub.tmp / "hub.db")
    assert con.execute("SELECT a, b, c FROM t ORDER BY a").fetchall() == [(1, "x", '{"k":1}'), (2, "y", None)]
    con.close()


def test_an_existing_table_without_the_configured_columns_fails_at_start(hub):
    con = sqlite3.connect(hub.tmp / "hub.db")
    con.execute("CREATE TABLE t (a INTEGER)")
    con.close()
    with pytest.raises(StartError, match=r"table 't' in .*hub.db has no columns \['b'\]"):
        hub.engine("""
sources: {s: {script: {name: s}}}
sinks: {db: {sqlite: {path: hub.db, table: t, columns: {a: INTEGER, b: TEXT}}}}
pipelines: {p: {from: s, to: db}}
""")


def test_the_database_folder_is_created(hub):
    hub.scripts["s"] = [{"a": 1}]
    e = hub.engine("""
sources: {s: {script: {name: s, finite: true}}}
sinks: {db: {sqlite: {path: out/deeper/hub.db, table: t}}}
pipelines: {p: {from: s, to: db}}
""")
    assert e.finished.wait(10) and e.stop()
    con = sqlite3.connect(hub.tmp / "out" / "deeper" / "hub.db")
    assert con.execute("SELECT a FROM t").fetchall() == [(1,)]
    con.close()


def test_non_finite_numbers_are_stored_as_null_and_unbindable_records_are_dead_lettered(hub):
    nan, inf = float("nan"), float("inf")
    hub.scripts["s"] = [
        {"i": 0, "r": nan, "n": 1, "j": {"x": [1.5, inf]}},
        {"i": 1, "r": 1.5, "n": inf, "j": None},
        {"i": 2, "r": 2**70, "n": 1, "j": None},  # too large for... REAL takes it, INTEGER does not
        {"i": 3, "r": 1.0, "n": 2**64, "j": None},
        {"i": 4, "r": 1.0, "n": 1, "j": None, "t": "lone \udc80 surrogate"},
        {"i": 5, "r": 10**400, "n": 1, "j": None},  # too large for a float
        {"i": 6, "r": -inf, "n": 6, "j": [nan]},
    ]
    e = hub.engine("""
hub: {dead_letter: dlq}
sources: {s: {script: {name: s, finite: true}}}
sinks:
  db:
    sqlite: {path: hub.db, table: t, columns: {i: INTEGER, r: REAL, n: INTEGER, j: JSON, t: TEXT}}
    batch: {size: 10}
  dlq: {memory: {}}
pipelines: {p: {from: s, to: db}}
""")
    assert e.finished.wait(10) and e.stop()
    con = sqlite3.connect(hub.tmp / "hub.db")
    rows = con.execute("SELECT i, r, n, j FROM t ORDER BY i").fetchall()
    con.close()
    assert rows == [(0, None, 1, '{"x":[1.5,null]}'), (1, 1.5, None, None), (2, float(2**70), 1, None),
                    (6, None, 6, "[null]")]
    reasons = {d["record"]["i"]: d["reason"] for d in hub.out["dlq"]}
    assert sorted(reasons) == [3, 4, 5]
    assert "does not fit in SQLite's 64-bit INTEGER" in reasons[3]
    assert "surrogate" in reasons[4] and "too large" in reasons[5]
    assert e.metrics.value("edgestream_sink_nonfinite_values_total", component="db") == 5
    assert e.metrics.value("edgestream_sink_records_total", component="db") == 4


KEYED = """
hub: {dead_letter: dlq}
sources: {s: {script: {name: s, finite: true}}}
sinks:
  db: {sqlite: {path: hub.db, table: r, key: [_id], columns: {_id: TEXT, n: INTEGER}}}
  dlq: {memory: {}}
pipelines: {p: {from: s, to: db}}
"""


def rows_of(hub, query="SELECT _id, n FROM r ORDER BY _id"):
    con = sqlite3.connect(hub.tmp / "hub.db")
    try:
        return con.execute(query).fetchall()
    finally:
        con.close()


def test_a_key_makes_the_sink_an_upsert_so_a_result_written_again_replaces_itself(hub):
    hub.scripts["s"] = [{"_id": "a", "n": 1}, {"_id": "b", "n": 2}, {"_id": "a", "n": 3}, {"_id": None, "n": 4},
                        {"n": 5}]
    e = hub.engine(KEYED)
    assert e.finished.wait(10) and e.stop()
    hub.scripts["s"] = [{"_id": "b", "n": 20}]  # a replay after a restart
    e = hub.engine(KEYED)
    assert e.finished.wait(10) and e.stop()
    assert rows_of(hub) == [("a", 3), ("b", 20)]
    assert [d["reason"].split(": ", 1)[1] for d in hub.out["dlq"]] == \
        ["key column '_id' is missing or null (an upsert needs the whole key)"] * 2
    assert rows_of(hub, "SELECT name FROM sqlite_master WHERE type = 'index'") == [("edgestream_key_r__id",)]


def test_a_key_on_every_column_keeps_the_first_row(hub):
    hub.scripts["s"] = [{"n": 1}, {"n": 1, "x": 2}]
    e = hub.engine("""
sources: {s: {script: {name: s, finite: true}}}
sinks: {db: {sqlite: {path: hub.db, table: r, key: [n], extra: ignore}}}
pipelines: {p: {from: s, to: db}}
""")
    assert e.finished.wait(10) and e.stop()
    assert rows_of(hub, "SELECT n FROM r") == [(1,)]


def test_a_result_id_that_is_not_a_column_is_left_out_not_refused(hub):
    hub.scripts["s"] = [{"_id": "a", "n": 1}]
    e = hub.engine(KEYED.replace("key: [_id], columns: {_id: TEXT, n: INTEGER}", "columns: {n: INTEGER}"))
    assert e.finished.wait(10) and e.stop()
    assert rows_of(hub, "SELECT n FROM r") == [(1,)] and not hub.out.get("dlq")


def test_a_key_cannot_be_made_unique_over_rows_that_repeat_it(hub):
    con = sqlite3.connect(hub.tmp / "hub.db")
    con.execute("CREATE TABLE r (_id TEXT, n INTEGER)")
    con.execute("INSERT INTO r VALUES ('a', 1), ('a', 2)")
    con.commit()
    con.close()
    with pytest.raises(StartError, match=r"cannot make key \['_id'\] unique in table 'r' .* rows already share a key"):
        hub.engine(KEYED.replace("finite: true", "finite: false"))


@pytest.mark.parametrize("sink, says", [
    ("{path: x.db, table: r, key: [a], columns: {b: TEXT}}", "key column 'a' is not among `columns`"),
    ("{path: x.db, table: r, key: [a, a]}", "a column is named twice"),
    ("{path: x.db, table: r, key: [\"a b\"]}", "is not a plain identifier"),
])
def test_bad_keys_are_config_errors(hub, sink, says):
    from edgestream_hub.errors import ConfigError

    with pytest.raises(ConfigError, match=says):
        hub.config(f"sources: {{s: {{script: {{name: s}}}}}}\nsinks: {{db: {{sqlite: {sink}}}}}\n"
                   "pipelines: {p: {from: s, to: db}}\n")


def test_processes_opening_one_new_database_at_once_all_open_it(tmp_path):
    # the workers of one hub open their SQLite sink at the same moment: SQLite refuses a concurrent switch
    # to WAL at once ("database is locked") instead of waiting, so the sink tries again. Two processes open
    # 40 new databases, each at the same instant.
    import subprocess
    import sys
    import time

    code = ("import sys, time\n"
            "from edgestream_hub.components import ComponentContext\n"
            "from edgestream_hub.connectors.sqlite import SqliteSink\n"
            "folder, t0 = sys.argv[1], float(sys.argv[2])\n"
            "for k in range(40):\n"
            "    while time.time() < t0 + k * 0.06: pass\n"
            "    s = SqliteSink({'path': f'{folder}/race-{k}.db', 'table': 't', 'columns': {'a': 'integer'},\n"
            "                    'extra': 'drop', 'key': None}, ComponentContext('sink', 'db', 'db'))\n"
            "    s.open()\n"
            "    s.con.close()\n"
            "print('opened all')\n")
    start = time.time() + 2.0  # after both processes imported the hub
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path), str(start)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(out.strip() == "opened all" for out, _ in outs), [err[-500:] for _, err in outs]
