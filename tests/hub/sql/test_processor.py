"""SqlProcessor as the engine uses it: ticks, idle sources, processing time, snapshots, memory, tables, UDFs."""

from __future__ import annotations

import json
import sqlite3

import pytest

from edgestream_hub.api import SimpleContext
from edgestream_hub.sql.errors import SqlError
from edgestream_hub.sql.processor import SqlProcessor
from edgestream_hub.sql.tables import load_table

TUMBLE = "SELECT id, count(*) AS n, window_start() AS ws FROM s GROUP BY id, TUMBLINGWINDOW(ss, 1)"


def test_quiet_source_closes_windows_after_idle_timeout():
    p = SqlProcessor(TUMBLE, SimpleContext(), idle_timeout_ms=5000)
    assert p.process([{"id": "a", "ts": 100}, {"id": "a", "ts": 900}], now_ms=1_000_000) == []
    assert p.tick(1_003_000) == []  # quiet, but not for idle_timeout yet
    # after the idle timeout the watermark moves with the wall clock: 900 + 5000 >= 1000
    assert p.tick(1_005_000) == [{"id": "a", "n": 2, "ws": 0}]
    assert p.tick(1_009_000) == []  # emitted once
    assert p.flush() == []


def test_without_idle_timeout_a_quiet_source_keeps_windows_open():
    p = SqlProcessor(TUMBLE, SimpleContext())
    p.process([{"id": "a", "ts": 100}], now_ms=0)
    assert p.tick(10**12) == []
    assert p.flush() == [{"id": "a", "n": 1, "ws": 0}]


def test_processing_time_mode_ignores_record_timestamps():
    p = SqlProcessor(TUMBLE, SimpleContext(), processing_time=True)
    assert p.process([{"id": "a"}, {"id": "a", "ts": "junk"}], now_ms=5_100) == []
    assert p.process([{"id": "b"}], now_ms=5_900) == []
    assert p.tick(5_999) == []
    assert p.tick(6_000) == [{"id": "a", "n": 2, "ws": 5000}, {"id": "b", "n": 1, "ws": 5000}]
    assert p.process([{"id": "a"}], now_ms=6_001) == []
    assert p.flush() == [{"id": "a", "n": 1, "ws": 6000}]


@pytest.mark.parametrize("query", [
    TUMBLE,
    "SELECT id, count(DISTINCT v) AS d, median(v) AS m FROM s GROUP BY id, HOPPINGWINDOW(ss, 2, 1)",
    "SELECT id, sum(v) AS s FROM s GROUP BY id, SESSIONWINDOW(ss, 10, 1)",
    "SELECT id, sum(v) AS s FROM s GROUP BY id, SLIDINGWINDOW(ss, 1)",
    "SELECT id, collect(v) AS c FROM s GROUP BY id, COUNTWINDOW(3)",
    "SELECT id, v, lag(v) OVER (PARTITION BY id) AS p FROM s",
    "SELECT id, ts FROM s GROUP BY TUMBLINGWINDOW(ss, 1)",
    "SELECT id, min(v) AS lo, max(v) AS hi, median(v) AS m, count(DISTINCT v) AS d, stddev(v) AS sd, collect(v) AS c "
    "FROM s GROUP BY id, SLIDINGWINDOW(ss, 2)",
    "SELECT id, sum(v - lag(v) OVER (PARTITION BY id)) AS d FROM s WHERE had_changed(true, v) GROUP BY id, "
    "TUMBLINGWINDOW(ss, 1)",
    "SELECT id, v, lag(v) AS p FROM s GROUP BY TUMBLINGWINDOW(ss, 1)",
])
def test_snapshot_resume_continues_exactly(query):
    recs = [{"id": f"k{i % 3}", "ts": i * 170, "v": i % 7} for i in range(60)]
    ctx = SimpleContext()
    whole = SqlProcessor(query, ctx, lateness_ms=200)
    expected = whole.process(recs, 0) + whole.flush()
    first = SqlProcessor(query, SimpleContext(), lateness_ms=200)
    got = first.process(recs[:25], 0)
    state = json.loads(json.dumps(first.snapshot()))  # must survive JSON
    second = SqlProcessor(query, SimpleContext(), lateness_ms=200, resume_state=state)
    got += second.process(recs[25:], 0) + second.flush()
    assert got == expected


def test_resume_state_of_another_query_is_refused():
    snap = SqlProcessor(TUMBLE, SimpleContext()).snapshot()
    with pytest.raises(SqlError):
        SqlProcessor("SELECT id FROM s", SimpleContext(), resume_state=snap)


@pytest.mark.parametrize("window", ["TUMBLINGWINDOW(ss, 1)", "HOPPINGWINDOW(ss, 4, 1)", "SESSIONWINDOW(ss, 60, 2)",
                                    "SLIDINGWINDOW(ss, 3)", "COUNTWINDOW(50, 10)"])
def test_memory_stays_flat_over_a_long_run(window):
    """Live window/group state does not grow with the number of records for a fixed key set."""
    p = SqlProcessor(f"SELECT id, count(*) AS n, max(v) AS m FROM s GROUP BY id, {window}", SimpleContext())
    peaks = []
    ts = 0
    for _ in range(20):
        batch = []
        for i in range(2000):
            ts += 7
            batch.append({"id": i % 20, "ts": ts, "v": i})
        p.process(batch, 0)
        peaks.append(p.metrics["live_states"])
    assert max(peaks[10:]) <= max(peaks[:10]) * 1.1 + 5, peaks


def test_udf_from_the_registry_and_its_failure_is_one_record():
    def boom(x):
        if x == 0:
            raise ValueError("zero")
        return x * 100

    ctx = SimpleContext()
    p = SqlProcessor("SELECT scale(v) AS s FROM s", ctx, functions={"scale": boom})
    assert p.process([{"ts": 1, "v": 1}, {"ts": 2, "v": 0}, {"ts": 3, "v": 2}], 0) == [{"s": 100}, {"s": 200}]
    assert len(ctx.dead) == 1 and "scale() failed" in ctx.dead[0][1]


def test_sqlite_lookup_table_refreshes(tmp_path):
    db = tmp_path / "ref.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE devices (id INTEGER, room TEXT)")
    con.execute("INSERT INTO devices VALUES (1, 'lab')")
    con.commit()
    table = load_table(f"{db}#devices")
    p = SqlProcessor("SELECT s.id, d.room FROM s LEFT JOIN devices d ON s.id = d.id", SimpleContext(),
                     tables={"devices": table})
    assert p.process([{"ts": 1, "id": 1}, {"ts": 2, "id": 2}], 0) == [{"id": 1, "room": "lab"}, {"id": 2, "room": None}]
    con.execute("INSERT INTO devices VALUES (2, 'hall')")
    con.commit()
    con.close()
    p.refresh_tables()
    assert p.process([{"ts": 3, "id": 2}], 0) == [{"id": 2, "room": "hall"}]


def test_csv_and_jsonl_tables_and_callables(tmp_path):
    csv = tmp_path / "d.csv"
    csv.write_text("id,limit,name\n1,10,a\n2,,b\n")
    jl = tmp_path / "d.jsonl"
    jl.write_text('{"id": 1, "zone": "n"}\n')
    calls = []

    def thresholds():
        calls.append(1)
        return [{"id": 1, "t": 5}]

    p = SqlProcessor(
        "SELECT s.id, c.limit AS lim, c.name, j.zone, f.t FROM s JOIN c ON s.id = c.id LEFT JOIN j ON s.id = j.id "
        "LEFT JOIN f ON s.id = f.id", SimpleContext(),
        tables={"c": load_table(str(csv)), "j": load_table(str(jl)), "f": thresholds})
    assert p.process([{"ts": 1, "id": 1}, {"ts": 2, "id": 2}, {"ts": 3, "id": 3}], 0) == [
        {"id": 1, "lim": 10, "name": "a", "zone": "n", "t": 5},
        {"id": 2, "lim": None, "name": "b", "zone": None, "t": None},
    ]
    p.refresh_tables()
    assert len(calls) == 2


def test_explain_shows_the_plan_after_the_passes():
    p = SqlProcessor("EXPLAIN SELECT d.room, avg(s.t * 2) AS a FROM s JOIN d ON s.id = d.id "
                     "WHERE s.t > 1 + 1 AND d.floor = 2 GROUP BY d.room, TUMBLINGWINDOW(ss, 10)",
                     SimpleContext(), tables={"d": [{"id": 1, "room": "x", "floor": 2}]})
    text = p.explain()
    assert "filter s (pushed down): (s.t > 2)" in text  # folded and pushed down
    assert "JOIN table d AS d: hash lookup on d.id = s.id" in text
    assert "table filter at join time: (d.floor = 2)" in text
    assert "window: tumbling size=10000ms" in text
    assert "agg[0] = avg((s.t * 2))  -- O(1) state" in text
    assert "fields used: s: id, t, ts; d: floor, id, room" in text


@pytest.mark.parametrize("window,shown", [
    ("HOPPINGWINDOW(ms, 10, 20)", "window: hopping size=10ms hop=20ms (gaps: a record in [j*20 + 10, (j+1)*20) "
                                  "is in no window)"),
    ("HOP(ts, '20ms', '10ms')", "window: hopping size=10ms hop=20ms (gaps"),
    ("HOPPINGWINDOW(ms, 20, 10)", "window: hopping size=20ms hop=10ms\n"),
    ("HOPPINGWINDOW(ms, 20, 20)", "window: hopping size=20ms hop=20ms\n"),
])
def test_explain_says_where_a_hopping_window_leaves_gaps(window, shown):
    """A hop longer than the window is accepted, as in Flink: the plan says which records no window takes."""
    assert shown in SqlProcessor(f"EXPLAIN SELECT count(*) AS n FROM s GROUP BY {window}", SimpleContext()).explain()


@pytest.mark.parametrize("predicate,shown", [
    ("s NOT LIKE 'b%'", "(s.s NOT LIKE 'b%')"),
    ("NOT s LIKE 'b%'", "(s.s NOT LIKE 'b%')"),
    ("s NOT ILIKE 'b%'", "(s.s NOT ILIKE 'b%')"),
    ("s NOT REGEXP 'b'", "(s.s NOT REGEXP 'b')"),
    ("s NOT RLIKE 'b'", "(s.s NOT REGEXP 'b')"),
    ("v NOT IN (1, 2)", "(s.v NOT IN (1, 2))"),
    ("v NOT BETWEEN 1 AND 2", "(s.v NOT BETWEEN 1 AND 2)"),
    ("v IS NOT NULL", "(s.v IS NOT NULL)"),
    ("b IS NOT TRUE", "(s.b IS NOT TRUE)"),
    ("NOT b IS FALSE", "(s.b IS NOT FALSE)"),
    ("v IS DISTINCT FROM w", "(s.v IS DISTINCT FROM s.w)"),
    ("v IS NOT DISTINCT FROM w", "(s.v IS NOT DISTINCT FROM s.w)"),
])
def test_explain_shows_negated_predicates(predicate, shown):
    text = SqlProcessor(f"EXPLAIN SELECT v FROM s WHERE {predicate}", SimpleContext()).explain()
    assert f"filter s (pushed down): {shown}" in text, text


def test_metrics_count_dead_late_and_emitted():
    ctx = SimpleContext()
    p = SqlProcessor(TUMBLE, ctx)
    p.process([{"id": 1, "ts": 10}, {"id": 1, "ts": 2000}, {"id": 1, "ts": 5}, {"id": 1}], 0)
    m = p.metrics
    assert (m["dead_letters"], m["late_records"], m["rows_emitted"]) == (1, 1, 1)


def test_explain_lists_analytic_functions_before_the_window():
    p = SqlProcessor("EXPLAIN SELECT id, max(v - lag(v) OVER (PARTITION BY id)) AS jump FROM s "
                     "WHERE had_changed(true, v) AND v > 1 GROUP BY id, SLIDINGWINDOW(ss, 10)", SimpleContext())
    text = p.explain()
    assert "per record, before WHERE and the window: lag(s.v) OVER (PARTITION BY s.id), had_changed(TRUE, s.v)" in text
    assert "filter s (pushed down): (s.v > 1)" in text
    assert "filter with analytic values: had_changed(TRUE, s.v)" in text


def test_variance_is_exact_for_large_values_with_a_small_spread():
    # like epoch-ms timestamps or big counters: a running mean rounds at 1e-7 here
    import statistics

    xs = [1000000000.1, 1000000000.2, 1000000000.3, 1000000000.7]
    p = SqlProcessor("SELECT stddev(v) AS sd, vars(v) AS vs FROM s GROUP BY TUMBLINGWINDOW(ms, 10)", SimpleContext())
    rows = p.process([{"ts": i, "v": x} for i, x in enumerate(xs)], 0) + p.flush()
    assert rows == [{"sd": statistics.pstdev(xs), "vs": statistics.variance(xs)}]


@pytest.mark.parametrize("window", ["TUMBLINGWINDOW(ms, 10)", "HOPPINGWINDOW(ms, 10, 10)", "SLIDINGWINDOW(ms, 10)"])
def test_a_dead_lettered_record_changes_no_aggregate(window):
    # the string fails min() only after count(*) comes first in the query: it must not be counted
    ctx = SimpleContext()
    p = SqlProcessor(f"SELECT count(*) AS n, max(v) AS hi, count(DISTINCT v) AS d FROM s GROUP BY {window}", ctx)
    rows = p.process([{"ts": 1, "v": 2}, {"ts": 2, "v": "oops"}, {"ts": 3, "v": [1]}, {"ts": 4, "v": 5}], 0)
    rows += p.flush()
    assert rows[-1] == {"n": 2, "hi": 5, "d": 2}
    assert [r["v"] for r, _ in ctx.dead] == ["oops", [1]]


MIXED = [{"id": 1, "ts": 10}, {"id": 2}, {"id": 3, "ts": 20}, {"id": 4, "ts": "junk"}, {"id": 5, "ts": 30},
         {"id": 6, "ts": None}, {"id": 7, "ts": True}, {"id": 8, "ts": "1970-01-01T00:00:00.040Z"}]
GOOD = [1, 3, 5, 8]


@pytest.mark.parametrize("query,rows", [
    ("SELECT id FROM s", [{"id": i} for i in GOOD]),
    ("SELECT id, lag(id) AS p FROM s", [{"id": i, "p": p} for i, p in zip(GOOD, [None, *GOOD])]),
    ("SELECT id, lag(id) AS p FROM s WHERE id > 2", [{"id": 3, "p": 1}, {"id": 5, "p": 3}, {"id": 8, "p": 5}]),
    ("SELECT count(*) AS n, collect(id) AS ids FROM s", [{"n": 4, "ids": GOOD}]),
    ("SELECT id, count(*) AS n FROM s GROUP BY id, COUNTWINDOW(1)", [{"id": i, "n": 1} for i in GOOD]),
])
def test_records_without_a_good_timestamp_are_dead_lettered_without_a_window_too(query, rows):
    """The same records and the same reasons as a windowed query; the good records around them all come out."""
    ctx = SimpleContext()
    p = SqlProcessor(query, ctx)
    assert p.process(MIXED, 0) + p.flush() == rows
    windowed = SimpleContext()
    w = SqlProcessor("SELECT count(*) AS n FROM s GROUP BY TUMBLINGWINDOW(ss, 1)", windowed)
    w.process(MIXED, 0)
    assert ctx.dead == windowed.dead
    assert [reason for _, reason in ctx.dead] == [
        "missing timestamp", "bad timestamp 'junk': expected epoch milliseconds", "missing timestamp",
        "bad timestamp True: expected epoch milliseconds"]
    assert p.metrics["dead_letters"] == 4


def test_a_file_of_mixed_records_runs_through_edgestream_sql(tmp_path, capsys):
    from edgestream_tools.cli import main

    data = tmp_path / "s.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in MIXED))
    assert main(["sql", "SELECT id, lag(id) AS p FROM s", "--input", f"s={data}"]) == 0
    out = capsys.readouterr()
    assert [json.loads(line) for line in out.out.splitlines()] == [
        {"id": i, "p": p} for i, p in zip(GOOD, [None, *GOOD])]
    assert "missing timestamp" in out.err


def test_a_snapshot_of_an_older_state_format_is_refused_with_the_reason():
    snap = SqlProcessor(TUMBLE, SimpleContext()).snapshot()
    snap["version"] = 1
    with pytest.raises(SqlError, match="holds window state of format 1, this version keeps format 3"):
        SqlProcessor(TUMBLE, SimpleContext(), resume_state=snap)


def test_a_result_id_is_the_hash_of_its_compact_json():
    # the definition the docs give: the first 16 hex digits of the SHA-256 of [scope, start, end, key]
    import hashlib

    from edgestream_hub.sql.keys import key, key_value
    from edgestream_hub.sql.processor import result_id

    bounds = [0, -5, 10**20, None, 1.5, True, float("inf")]
    keys = ["dev1", 3, (key("a"), key(1.5)), key(True), (key(None), key("é")), ()]
    for scope in ("p/p.sql", 'é"x'):
        ident = result_id(scope)
        for ws in bounds:
            for we in bounds:
                for k in keys:
                    text = json.dumps([scope, ws, we, key_value(k)], separators=(",", ":"), default=repr)
                    assert ident(ws, we, k) == hashlib.sha256(text.encode()).hexdigest()[:16], (ws, we, k)


@pytest.mark.parametrize("query", [
    "SELECT k FROM s WHERE k <> 'a\x00b'",
    "SELECT k, count(*) AS n FROM s WHERE k <> 'a\x00b' GROUP BY k, TUMBLINGWINDOW(ss, 10)",
    "SELECT s.k, count(*) AS n FROM s JOIN t ON s.k = t.k AND t.k <> 'a\x00b' GROUP BY s.k, TUMBLINGWINDOW(ss, 10)",
])
def test_a_query_with_a_nul_character_compiles_and_runs(query):
    """A NUL in the query text (a YAML "\\0" escape) is a character like any other: the compiled code's
    file name (the query text, for tracebacks) must not refuse it."""
    p = SqlProcessor(query, SimpleContext())
    records = [{"ts": 1000, "k": "a\x00b"}, {"ts": 2000, "k": "c\x00"}]
    out = p.process(records, 0) + p.flush()
    if "JOIN" not in query:
        assert [r["k"] for r in out] == ["c\x00"]
