"""What the compiler refuses instead of misreading, and how large an expression may be.

Every refusal is a located SqlError (exit 2 in ``edgestream sql``, ``hub check`` and ``hub run``),
never a traceback and never a query that runs as something else than what was written.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edgestream_hub.api import SimpleContext
from edgestream_hub.sql.errors import SqlError
from edgestream_hub.sql.lower import MAX_DEPTH, MAX_TERMS
from edgestream_hub.sql.processor import SqlProcessor
from edgestream_hub.sql.validate import MAX_SIZE


def refused(query: str, **kw) -> SqlError:
    with pytest.raises(SqlError) as ei:
        SqlProcessor(query, SimpleContext(), **kw)
    e = ei.value
    assert e.line >= 1 and e.column >= 1 and e.excerpt.endswith("^"), str(e)
    return e


def run(query: str, records: list[dict]) -> tuple[list, list]:
    ctx = SimpleContext()
    p = SqlProcessor(query, ctx)
    return p.process(records, 0) + p.flush(), [r for _, r in ctx.dead]


# -- constructs the lowering does not read are refused ------------------------------------------------------
@pytest.mark.parametrize("query,col,what", [
    ("SELECT v FROM s TABLESAMPLE (10)", 17, "TABLESAMPLE is not supported"),
    ("SELECT * FROM s PIVOT (sum(v) FOR k IN (1, 2))", 17, "PIVOT is not supported"),
    ("SELECT * FROM s UNPIVOT (v FOR k IN (a, b))", 17, "PIVOT is not supported"),
    ("SELECT * EXCEPT (a) FROM s", 10, "SELECT * EXCEPT is not supported"),
    ("SELECT v FROM s AS t(a, b)", 22, "column aliases on a source are not supported"),
    ("SELECT v FROM db.s", 15, "a source is one name"),
    ("SELECT v FROM s LIMIT 5 BY v", 17, "LIMIT ... BY is not supported"),
    ("SELECT v FROM s FOR UPDATE", 17, "FOR UPDATE/SHARE is not supported"),
    ("SELECT count(*) FROM s GROUP BY v, TUMBLINGWINDOW(ss, 1) ORDER BY v NULLS LAST", 69,
     "NULLS LAST is not supported"),
    ("SELECT lag(v) OVER w FROM s", 8, "OVER takes only PARTITION BY"),
    ("SELECT a FROM s WINDOW w AS ()", 17, "WINDOW is not supported"),
    ("SELECT v FROM s NATURAL JOIN t", 17, "NATURAL JOIN is not supported"),
])
def test_a_construct_the_engine_does_not_compute_is_refused(query, col, what):
    e = refused(query, tables={"t": [{"v": 1}]})
    assert what in e.message and e.column == col, str(e)


def test_the_default_null_order_is_accepted():
    SqlProcessor("SELECT v, count(*) AS n FROM s GROUP BY v, TUMBLINGWINDOW(ss, 1) ORDER BY v NULLS FIRST, "
                 "n DESC NULLS LAST", SimpleContext())


@pytest.mark.parametrize("query,col,what", [
    ("SELECT 0x10 FROM s", 8, "a number followed by letters: '0x10'"),
    ("SELECT 12abc FROM s", 8, "a number followed by letters: '12abc'"),
    ("SELECT 10ms FROM s", 8, "a number followed by letters: '10ms'"),
    ("SELECT 1_000 FROM s", 8, "a number followed by letters: '1_000'"),
    ("SELECT a FROM s WHERE a = 1e", 27, "bad number '1e'"),
    ("SELECT a FROM s WHERE a = 1e+", 27, "bad number '1e'"),
    ("SELECT 1e999 FROM s", 8, "number out of range: 1e999"),
    ("SELECT 1.5.3 FROM s", 8, "a number followed by letters: '1.5.3'"),
])
def test_a_malformed_number_is_refused_where_it_is(query, col, what):
    e = refused(query)
    assert what in e.message and e.column == col, str(e)


def test_numbers_in_every_accepted_spelling():
    out, dead = run("SELECT 1e3 AS a, 1.5e-1 AS b, 1.e2 AS c, 1E+2 AS d, 10 AS e, 2.50 AS f FROM s", [{"ts": 1}])
    assert out == [{"a": 1000.0, "b": 0.15, "c": 100.0, "d": 100.0, "e": 10, "f": 2.5}] and dead == []


def test_try_cast_gives_null_where_cast_fails_the_record():
    out, dead = run("SELECT TRY_CAST('abc' AS INT) AS a, TRY_CAST(v AS INT) AS b, TRY_CAST(v AS FLOAT) AS c FROM s",
                    [{"ts": 1, "v": "x"}, {"ts": 2, "v": "12"}, {"ts": 3, "v": None}])
    assert dead == []
    assert out == [{"a": None, "b": None, "c": None}, {"a": None, "b": 12, "c": 12.0},
                   {"a": None, "b": None, "c": None}]
    out, dead = run("SELECT CAST(v AS INT) AS b FROM s", [{"ts": 1, "v": "x"}])
    assert out == [] and dead == ["cannot cast str 'x' to INT"]


# -- expression size -----------------------------------------------------------------------------------------
def chain(op: str, n: int, term: str = "v") -> str:
    return f" {op} ".join([term] * n)


@pytest.mark.parametrize("n", [2, 100, 250, MAX_TERMS])
def test_long_arithmetic_chains_compile_and_compute(n):
    out, dead = run(f"SELECT {chain('+', n)} AS x, {chain('-', n)} AS y, {chain('*', n, 'w')} AS z, "
                    f"{chain('/', n, 'w')} AS q, {chain('||', n, 'c')} AS t FROM s",
                    [{"ts": 1, "v": 1, "w": 1, "c": "a"}, {"ts": 2, "v": "a", "w": 1, "c": "a"}])
    assert out == [{"x": n, "y": 2 - n, "z": 1, "q": 1, "t": "a" * n}]
    assert len(dead) == 1 and dead[0].startswith("cannot apply + to "), dead


@pytest.mark.parametrize("n", [200, MAX_TERMS])
def test_long_or_and_case_chains_compile_and_compute(n):
    ors = " OR ".join(f"v = {i}" for i in range(n))
    ands = " AND ".join(f"v <> {i}" for i in range(1, n))
    case = "CASE " + " ".join(f"WHEN v = {i} THEN {i * 10}" for i in range(n)) + " ELSE -1 END"
    q = f"SELECT v, {case} AS c, ({ands}) AS a FROM s WHERE {ors}"
    out, dead = run(q, [{"ts": 1, "v": 3}, {"ts": 2, "v": n + 5}, {"ts": 3, "v": 0}])
    assert dead == []
    assert out == [{"v": 3, "c": 30, "a": False}, {"v": 0, "c": 0, "a": True}]


@pytest.mark.parametrize("query,what", [
    ("SELECT " + chain("+", MAX_TERMS + 1) + " FROM s", f"expression too large: more than {MAX_TERMS} terms"),
    ("SELECT v FROM s WHERE " + " OR ".join(f"v = {i}" for i in range(MAX_TERMS + 1)),
     f"expression too large: more than {MAX_TERMS} terms"),
    ("SELECT CASE " + " ".join(f"WHEN v = {i} THEN 1" for i in range(MAX_TERMS + 1)) + " END FROM s",
     f"expression too large: more than {MAX_TERMS} WHEN branches"),
    ("SELECT " + chain("+", 5000) + " FROM s", f"expression too large: more than {MAX_TERMS} terms"),
    ("SELECT " + "abs(" * (MAX_DEPTH + 1) + "v" + ")" * (MAX_DEPTH + 1) + " FROM s",
     f"expression too deep: more than {MAX_DEPTH} levels"),
    ("SELECT " + "(" * 300 + "v" + ")" * 300 + " FROM s", "expression too deep"),
    ("SELECT " + "- " * 300 + "v FROM s", "expression too deep"),
    ("SELECT " + "NOT " * 300 + "v FROM s", "expression too deep"),
])
def test_an_expression_beyond_the_limits_is_a_located_error(query, what):
    e = refused(query)
    assert what in e.message, e.message


def test_chains_nested_in_chains_stay_within_what_python_compiles():
    """Terms of chains and CASE branches add up along a path down an expression: up to MAX_SIZE compile and
    run (side by side they do not add up), beyond that the expression is refused."""
    inner = "(" + chain("+", 900) + ")"
    out, _ = run("SELECT " + " * ".join([inner] * 3) + " AS x FROM s", [{"ts": 1, "v": 1}])
    assert out == [{"x": 900 ** 3}]
    whens = " ".join(f"WHEN v = {i} THEN {i}" for i in range(MAX_TERMS - 1))
    deep = f"CASE {whens} ELSE ({chain('+', MAX_SIZE - MAX_TERMS)}) END"
    out, _ = run(f"SELECT {deep} AS x FROM s", [{"ts": 1, "v": 1}, {"ts": 2, "v": MAX_TERMS}])
    assert out == [{"x": 1}, {"x": MAX_TERMS * (MAX_SIZE - MAX_TERMS)}]
    deeper = f"CASE {whens} ELSE CASE {whens} ELSE ({chain('+', MAX_TERMS)}) END END"
    e = refused(f"SELECT {deeper} AS x FROM s")
    assert "expression too large" in e.message and f"at most {MAX_SIZE}" in e.message


def test_a_deep_expression_is_refused_at_the_level_that_crosses_the_limit():
    q = "SELECT " + "abs(" * (MAX_DEPTH + 5) + "v" + ")" * (MAX_DEPTH + 5) + " FROM s"
    e = refused(q)
    assert e.column == 8 + 4 * MAX_DEPTH, str(e)[:300]


# -- syntax errors in plain words ---------------------------------------------------------------------------
@pytest.mark.parametrize("query,col,what", [
    ("SELECT a) FROM s", 9, "unexpected ')' here"),
    ("SELECT a FROM s WHERE a = 1 b = 2", 29, "unexpected 'b' here"),
    ("SELECT a b c FROM s", 12, "unexpected 'c' here"),
    ("SELECT a FROM s WHERE a = 1 AND", 29, "expected an expression after 'AND'"),
    ("SELECT a FROM s WHERE a = AND b", 27, "expected an expression after '=', got 'AND'"),
    ("SELECT a FROM s WHERE AND", 23, "expected an expression before 'AND'"),
    ("SELECT a + FROM s", 12, "expected an expression after '+', got 'FROM'"),
    ("SELECT 1 +", 10, "expected an expression after '+'"),
    ("SELECT a FROM s WHERE NOT", 23, "expected an expression after 'NOT'"),
    ("SELECT (a FROM s", 11, "expected ')' before 'FROM'"),
    ("SELECT a FROM s WHERE (a = 1", 29, "expected ')' at the end of the query"),
])
def test_syntax_errors_are_in_plain_words(query, col, what):
    e = refused(query)
    assert e.message == f"syntax error: {what}" and e.column == col, str(e)


# -- the same located error from every command ---------------------------------------------------------------
BAD_QUERIES = [
    "SELECT a FROM s WINDOW w AS ()",
    "SELECT a FROM s WHERE a = 1e",
    "SELECT " + chain("+", 120) + " AS x FROM s WHERE " + " OR ".join(f"a = {i}" for i in range(5)) + " AND "
    + "CASE " + " ".join(f"WHEN a = {i} THEN TRUE" for i in range(3)) + " END AND " + chain("+", MAX_TERMS + 5),
    "SELECT " + chain("+", 1500) + " FROM s",
]


@pytest.mark.parametrize("query", BAD_QUERIES, ids=["window", "1e", "mixed", "1500 terms"])
def test_every_command_exits_2_with_the_located_error(tmp_path, query):
    (tmp_path / "s.jsonl").write_text('{"ts": 1, "a": 1}\n')
    sql = subprocess.run([sys.executable, "-m", "edgestream_tools.cli", "sql", query, "--input",
                          f"s={tmp_path / 's.jsonl'}"], capture_output=True, text=True, timeout=60)
    assert sql.returncode == 2 and "Traceback" not in sql.stderr, sql.stderr[-2000:]
    assert "line 1, column " in sql.stderr and sql.stderr.rstrip().endswith("^"), sql.stderr[-2000:]
    (tmp_path / "hub.yaml").write_text(
        "sources:\n  f: {file: {path: s.jsonl, mode: follow}}\nsinks:\n  out: {file: {path: out.jsonl}}\n"
        "pipelines:\n  p:\n    from: f\n    to: out\n    processors:\n"
        "      - sql: {query: " + json.dumps(query) + "}\n")
    for action in ("check", "run"):
        hub = subprocess.run([sys.executable, "-m", "edgestream_tools.cli", "hub", action, "-c", "hub.yaml"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert hub.returncode == 2 and "Traceback" not in hub.stderr, (action, hub.stderr[-2000:])
        assert "pipelines.p.processors[0].sql.query" in hub.stderr and "(query line 1, column " in hub.stderr, \
            (action, hub.stderr[-2000:])
    assert not (tmp_path / "out.jsonl").exists()
