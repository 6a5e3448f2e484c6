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
    assert con.execute("SELECT a, b, c FROM t ORDER BY a").fetchall() == [(1, "x", '{"k": 1}'), (2, "y", None)]
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
