"""Compile errors carry line, column and a caret; bad SQL text and bad records never crash anything."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlglot import exp

from edgestream_hub.api import SimpleContext
from edgestream_hub.errors import EdgeStreamError
from edgestream_hub.sql.errors import SqlError
from edgestream_hub.sql.lower import Lowerer
from edgestream_hub.sql.processor import SqlProcessor

BAD = [
    ("SELECT id, count(* AS n FROM s", 1, 20, "syntax error"),
    ("SELECT id\nFROM s\nWHERE foo(x) > 1", 3, 7, "unknown function 'foo'"),
    ("SELECT x FROM s WHERE count(*) > 1", 1, 23, "aggregate count() is not allowed in WHERE"),
    ("SELECT id, v, count(*) FROM s GROUP BY id, TUMBLINGWINDOW(ss, 1)", 1, 12, "must be in GROUP BY"),
    ("SELECT TUMBLINGWINDOW(ss, 1) FROM s", 1, 8, "belongs in GROUP BY"),
    ("SELECT count(*) FROM s GROUP BY TUMBLINGWINDOW(xx, 1)", 1, 48, "unit"),
    ("SELECT count(*) FROM s GROUP BY TUMBLINGWINDOW(ss, 0)", 1, 52, "positive"),
    ("SELECT count(*) FROM s GROUP BY TUMBLINGWINDOW(ss, 1), HOPPINGWINDOW(ss, 2, 1)", 1, 56, "at most one window"),
    ("SELECT window_start() FROM s", 1, 8, "needs a window"),
    ("SELECT round(x, 1, 2) FROM s", 1, 8, "takes 1 to 2 arguments"),
    ("SELECT 1 / 0 AS z FROM s", 1, 8, "division by zero"),
    ("SELECT x FROM s ORDER BY x", 1, 26, "needs a window"),
    ("SELECT percentile(x, 2) FROM s GROUP BY TUMBLINGWINDOW(ss, 1)", 1, 22, "between 0 and 1"),
    ("SELECT sum(max(x)) FROM s GROUP BY TUMBLINGWINDOW(ss, 1)", 1, 12, "cannot be nested"),
    ("SELECT a.x FROM a JOIN b ON a.k = b.k", 1, 24, "'b' is used as a stream, and joining two streams needs a "
                                                     "TUMBLINGWINDOW"),
    ("SELECT lag(x), count(*) FROM s GROUP BY TUMBLINGWINDOW(ss, 1)", 1, 8, "inside an aggregate"),
    ("SELECT count(*) FROM s GROUP BY TUMBLINGWINDOW(ss, 1) HAVING latest(v) > 1", 1, 62, "evaluated per record"),
    ("SELECT a.k FROM a JOIN b ON a.k = b.k WHERE lag(a.v) > 1 GROUP BY TUMBLINGWINDOW(ss, 1)", 1, 45,
     "stream-stream join"),
    ("SELECT sum(lag(a.v)) FROM a JOIN b ON a.k = b.k GROUP BY TUMBLINGWINDOW(ss, 1)", 1, 12, "stream-stream join"),
    ("SELECT * , count(*) FROM s GROUP BY TUMBLINGWINDOW(ss, 1)", 1, 8, "SELECT *"),
    ("DELETE FROM s", 1, 1, "only SELECT"),
    ("", 1, 1, "empty"),
    ("SELECT x FROM s; SELECT y FROM s", 1, 1, "exactly one statement"),
    ("SELECT x FROM s GROUP BY SESSIONWINDOW(ss, 10)", 1, 26, "SESSIONWINDOW takes"),
    # negated forms the engine does not compute are refused, never run as their positive form
    ("SELECT x FROM s WHERE s NOT SIMILAR TO 'a'", 1, 23, "SIMILAR TO is not supported"),
    ("SELECT x FROM s WHERE s NOT GLOB 'a*'", 1, 23, "GLOB is not supported"),
    ("SELECT x FROM s WHERE NOT EXISTS (SELECT 1)", 1, 42, "subqueries are not supported"),
    ("SELECT x FROM s WHERE s NOT LIKE ANY ('a')", 1, 23, "LIKE ANY/ALL is not supported"),
    ("SELECT x FROM s WHERE s NOT ILIKE 'a!%' ESCAPE '!'", 1, 23, "ILIKE ... ESCAPE is not supported"),
    ("SELECT x FROM s WHERE x IS NOT 3", 1, 23, "IS takes NULL, TRUE or FALSE"),
    ("SELECT x FROM s WHERE x NOT IN ()", 1, 23, "IN needs at least one value"),
    # sqlglot drops empty list items and accepts empty clauses: each is refused where it is
    ("SELECT id,, temp FROM s", 1, 11, "expected an item after ',', got ','"),
    ("SELECT id, temp, FROM s", 1, 18, "expected an item after ',', got 'FROM'"),
    ("SELECT , id FROM s", 1, 8, "expected an item before ','"),
    ("SELECT round(v,, 1) FROM s", 1, 16, "expected an item after ','"),
    ("SELECT x FROM s WHERE x IN (1,)", 1, 31, "expected an item after ',', got ')'"),
    ("SELECT x FROM s GROUP BY x,", 1, 27, "expected an item after ',', got the end of the query"),
    ("SELECT FROM s", 1, 1, "SELECT needs at least one item"),
    ("SELECT x FROM s GROUP BY", 1, 17, "GROUP BY needs a key or a window"),
    ("SELECT x FROM s GROUP BY ALL", 1, 17, "GROUP BY ALL is not supported"),
    # sqlglot's own messages, in words (no token or class representations)
    ("SELECT id FROM", 1, 11, "expected table name but got the end of the query"),
    ("SELECT id FROM s WHERE", 1, 18, "WHERE needs a condition"),
    ("SELECT id FROM s LIMIT", 1, 18, "LIMIT needs a number"),
    ("SELECT x FROM s WHERE x BETWEEN 1", 1, 33, "BETWEEN needs a lower and an upper bound"),
    ("SELECT x FROM s\nWHERE name = 'abc", 2, 14, "unterminated string: no closing '"),
    ('SELECT "x FROM s', 1, 8, 'unterminated quoted name: no closing "'),
    ("SELECT x ` FROM s", 1, 10, "unexpected character '`'"),
    ("SELECT a ? b FROM s", 1, 8, "unsupported operator: a ? b"),
    # window arguments: sizes, hops, counts and durations are positive integer literals; a session's timeout
    # is not longer than its maximum duration (it could never end a session); no sliding-window delay
    ("SELECT count(*) FROM s GROUP BY HOPPINGWINDOW(ss, 10, 0)", 1, 55, "hop must be positive"),
    ("SELECT count(*) FROM s GROUP BY HOPPINGWINDOW(ss, -10, 5)", 1, 52, "window size must be a positive integer"),
    ("SELECT count(*) FROM s GROUP BY SLIDINGWINDOW(ss, 0)", 1, 51, "window size must be positive"),
    ("SELECT count(*) FROM s GROUP BY SLIDINGWINDOW(ss, 1.5)", 1, 51, "window size must be a positive integer"),
    ("SELECT count(*) FROM s GROUP BY SLIDINGWINDOW(ss, 5, 5)", 1, 54, "a trigger delay (eKuiper's third argument) "
                                                                       "is not supported"),
    ("SELECT count(*) FROM s GROUP BY SESSIONWINDOW(ss, 10, 0)", 1, 55, "timeout must be positive"),
    ("SELECT count(*) FROM s GROUP BY SESSIONWINDOW(ss, 10, 20)", 1, 55, "the session timeout (20000ms) is longer "
                                                                         "than its maximum duration (10000ms)"),
    ("SELECT count(*) FROM s GROUP BY SESSION(ts, INTERVAL '1' MINUTE, INTERVAL '10' SECOND)", 1, 54,
     "the arguments are SESSION(time_field, gap, max_duration)"),
    ("SELECT count(*) FROM s GROUP BY COUNTWINDOW(0)", 1, 45, "count must be positive"),
    ("SELECT count(*) FROM s GROUP BY COUNTWINDOW(5, -1)", 1, 49, "count interval must be a positive integer"),
    ("SELECT count(*) FROM s GROUP BY TUMBLE(ts, INTERVAL '0' SECOND)", 1, 53, "positive n"),
    ("SELECT count(*) FROM s GROUP BY HOP(ts, '0s', '10s')", 1, 41, "a duration like"),
    # a literal regular expression compiles with the query, whatever it is matched against
    ("SELECT regexp_matches(v, '[') AS m FROM s", 1, 26, "bad regular expression '[': unterminated character set"),
    ("SELECT regexp_like(v, 'a(b') AS m FROM s", 1, 23, "bad regular expression 'a(b': missing ), unterminated"),
    ("SELECT regexp_replace(v, '*', 'x') AS m FROM s", 1, 26, "bad regular expression '*': nothing to repeat"),
    ("SELECT regexp_replace(v, 'a', '\\9') AS m FROM s", 1, 31, "bad replacement '\\9': invalid group reference 9"),
    ("SELECT regexp_substr(v, '(?P<x') AS m FROM s", 1, 25, "bad regular expression '(?P<x'"),
    ("SELECT regexp_substr(v, 5) AS m FROM s", 1, 25, "a regular expression must be a string, got number 5"),
    ("SELECT v FROM s WHERE v REGEXP '['", 1, 32, "bad regular expression '['"),
    ("SELECT v FROM s\nWHERE v NOT RLIKE ')'", 2, 19, "bad regular expression ')': unbalanced parenthesis"),
    ("SELECT v FROM s WHERE regexp_matches('abc', '[')", 1, 45, "bad regular expression '['"),
]


@pytest.mark.parametrize("query,line,col,what", BAD, ids=[b[3] for b in BAD])
def test_compile_error_is_located(query, line, col, what):
    with pytest.raises(SqlError) as ei:
        SqlProcessor(query, SimpleContext())
    e = ei.value
    assert isinstance(e, EdgeStreamError)
    assert what in e.message, e
    assert (e.line, e.column) == (line, col), str(e)
    caret_line = e.excerpt.split("\n")[-1]
    assert caret_line == " " * (col - 1) + "^"
    assert f"line {line}, column {col}" in str(e)


@pytest.mark.parametrize("node", [
    exp.In(this=exp.column("x"), expressions=[exp.Literal.number(1)]),
    exp.Between(this=exp.column("x"), low=exp.Literal.number(1), high=exp.Literal.number(2)),
    exp.RegexpLike(this=exp.column("x"), expression=exp.Literal.string("a")),
    exp.EQ(this=exp.column("x"), expression=exp.Literal.number(1)),
])
def test_a_negation_flag_the_lowering_does_not_read_is_refused(node):
    """Whatever sqlglot marks as negated by a flag is computed as negated or refused, never run positive."""
    node.set("negate", True)
    with pytest.raises(SqlError, match="unsupported negated expression"):
        Lowerer("SELECT x FROM s").expr(node)


def test_analytic_function_in_a_table_join_condition_is_a_compile_error():
    with pytest.raises(SqlError) as ei:
        SqlProcessor("SELECT s.v FROM s JOIN t ON s.k = t.k AND lag(s.v) = t.v", SimpleContext(),
                     tables={"t": [{"k": 1, "v": 2}]})
    assert "lag() is not allowed in ON" in str(ei.value) and ei.value.column == 43


def test_unknown_table_column_is_a_compile_error():
    tables = {"d": [{"id": 1, "room": "x"}]}
    with pytest.raises(SqlError) as ei:
        SqlProcessor("SELECT s.id, d.rooom FROM s JOIN d ON s.id = d.id", SimpleContext(), tables=tables)
    assert "no column 'rooom'" in str(ei.value) and ei.value.column == 14


def test_cli_exits_2_with_the_located_error(tmp_path):
    data = tmp_path / "s.jsonl"
    data.write_text('{"ts": 1}\n')
    proc = subprocess.run([sys.executable, "-m", "edgestream_tools.cli", "sql", "SELECT x FROM s WHERE nope(x)",
                           "--input", f"s={data}"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "line 1, column 23: unknown function 'nope'" in proc.stderr
    assert "^" in proc.stderr and proc.stdout == ""


def test_a_join_with_an_unknown_side_says_both_ways_forward():
    with pytest.raises(SqlError) as ei:
        SqlProcessor("SELECT s.id, d.room FROM s JOIN devices d ON s.id = d.id", SimpleContext())
    msg = ei.value.message
    assert "'devices' is used as a stream" in msg
    assert "--table devices=PATH on the command line" in msg
    assert "tables: {devices: {file: PATH}} in the sql processor's config" in msg
    assert "GROUP BY TUMBLINGWINDOW(ss, 10)" in msg
    # given as a table, the same query compiles
    SqlProcessor("SELECT s.id, d.room FROM s JOIN devices d ON s.id = d.id", SimpleContext(),
                 tables={"devices": [{"id": 1, "room": "lab"}]})


def test_the_processor_names_the_streams_it_reads():
    p = SqlProcessor("SELECT s.id FROM s JOIN t ON s.id = t.id", SimpleContext(), tables={"t": [{"id": 1}]})
    assert p.streams == ["s"]
    p = SqlProcessor("SELECT a.k, count(*) AS n FROM a JOIN b ON a.k = b.k GROUP BY a.k, TUMBLINGWINDOW(ss, 1)",
                     SimpleContext())
    assert p.streams == ["a", "b"]


sql_words = st.sampled_from(["SELECT", "FROM", "WHERE", "GROUP BY", "HAVING", "ORDER BY", "LIMIT", "AND", "OR", "NOT",
                             "count(*)", "avg(x)", "x", "s", "s.x", "x->y", "x[0]", "(", ")", ",", "*", "+", "/", "=",
                             "1", "'a'", "NULL", "TUMBLINGWINDOW(ss, 1)", "SESSIONWINDOW(ss, 1, 1)", "COUNTWINDOW(2)",
                             "window_start()", "CASE", "WHEN", "THEN", "END", "IN", "BETWEEN", "LIKE", "IS", "AS",
                             "JOIN", "ON", "lag(x)", "OVER", "EXPLAIN", ";", "--", "\n", "\"q\"", "1e999", "-", ",,",
                             "'", "\"",
                             "ILIKE", "REGEXP", "RLIKE", "SIMILAR TO", "GLOB", "ESCAPE", "EXISTS", "ANY", "ALL",
                             "DISTINCT", "FROM s", "IS DISTINCT FROM", "<=>", "TRUE", "::", "[", "]", "{", "}", "UNION",
                             "WITH", "INTERVAL '1' SECOND", "CAST(x AS", "SELECT 1", "0x", "`", "$", "?", "@", ":x"])
LEAKS = ("Token(", "TokenType", "<Token", "<class", "sqlglot", "Invalid expression", "Unexpected token",
         "incomplete expression", "Expecting")


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=80), st.lists(sql_words, max_size=25).map(" ".join),
                 st.lists(sql_words, max_size=25).map("".join)))
def test_any_text_compiles_or_raises_sqlerror(text):
    """No query text makes the compiler raise anything but a located SqlError in plain words."""
    try:
        p = SqlProcessor(text, SimpleContext())
    except SqlError as e:
        assert e.line >= 0 and e.column >= 0
        assert not any(leak in e.message and leak not in text for leak in LEAKS), str(e)
        assert e.line >= 1 and e.column >= 1, str(e)
        return
    # whatever compiled must survive a few records
    p.process([{"ts": 1, "x": 1, "s": {"x": 2}}, {"x": None}, {}], 0)
    p.flush()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=8,
)
records = st.lists(st.one_of(st.dictionaries(st.sampled_from(["ts", "id", "v", "a", "s"]), json_values, max_size=5),
                             json_values), max_size=20)
QUERIES = [
    "SELECT id, count(*) AS n, avg(v) AS a, min(v), max(v), stddev(v), median(v), count(DISTINCT v) AS d FROM s "
    "GROUP BY id, TUMBLINGWINDOW(ms, 10)",
    "SELECT sum(v) AS s, collect(a) AS c FROM s GROUP BY HOPPINGWINDOW(ms, 20, 5)",
    "SELECT id, max(v) AS m FROM s GROUP BY id, SLIDINGWINDOW(ms, 10)",
    "SELECT id, count(*) AS n FROM s GROUP BY id, SESSIONWINDOW(ms, 100, 10)",
    "SELECT id, last_value(v) AS l FROM s GROUP BY id, COUNTWINDOW(2)",
    "SELECT v + 1 AS p, a->b AS ab, a[0] AS a0, upper(s) AS u, CAST(v AS INT) AS i, "
    "lag(v) OVER (PARTITION BY id) AS lg FROM s WHERE v > 0 OR s LIKE 'x%'",
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(QUERIES), records)
def test_bad_records_are_dead_lettered_never_raised(query, recs):
    ctx = SimpleContext()
    p = SqlProcessor(query, ctx, lateness_ms=5)
    out = p.process(recs, 0) + p.tick(10**9) + p.flush()
    assert all(isinstance(r, dict) for r in out)
    for _, reason in ctx.dead:
        assert isinstance(reason, str) and reason
    json.dumps(p.snapshot(), default=str)


def test_cli_unreadable_input_exits_2_naming_it(tmp_path, capsys):
    from edgestream_tools.cli import main

    missing = tmp_path / "nope.jsonl"
    assert main(["sql", "SELECT * FROM s", "--input", f"s={missing}"]) == 2
    assert f"cannot read --input s={missing}: No such file or directory" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"ts,v\n1,\xff\n")
    assert main(["sql", "SELECT * FROM s", "--input", f"s={bad}"]) == 2
    assert "not UTF-8 text" in capsys.readouterr().err


def test_a_pattern_computed_per_record_that_does_not_compile_is_that_records_dead_letter():
    """Only a literal pattern can be checked at compile time: one read from a field fails its record alone."""
    ctx = SimpleContext()
    p = SqlProcessor("SELECT id, regexp_matches(s, p) AS m, regexp_replace(s, 'a', r) AS x, s RLIKE p AS l FROM s",
                     ctx)
    recs = [{"ts": 1, "id": 1, "s": "abc", "p": "b", "r": "-"}, {"ts": 2, "id": 2, "s": "abc", "p": "[", "r": "-"},
            {"ts": 3, "id": 3, "s": "abc", "p": "b", "r": "\\9"}, {"ts": 4, "id": 4, "s": "abc", "p": 7, "r": "-"},
            {"ts": 5, "id": 5, "s": "abc", "p": None, "r": "-"}]
    assert p.process(recs, 0) == [{"id": 1, "m": True, "x": "-bc", "l": True},
                                  {"id": 5, "m": None, "x": "-bc", "l": None}]
    assert [(r["id"], reason) for r, reason in ctx.dead] == [
        (2, "bad regular expression '[': unterminated character set at position 0"),
        (3, "regexp_replace: bad replacement '\\9': invalid group reference 9 at position 1"),
        (4, "a regular expression must be a string, got number 7"),
    ]
