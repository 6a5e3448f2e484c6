"""Operators take values of their kind: arithmetic numbers only, logic booleans (and NULL) only.

A value of another kind fails the record (dead-lettered with a reason naming the operator and the
kinds); a literal of another kind is a compile error. Booleans are not numbers, strings are never
converted, and logical operators always return TRUE, FALSE or NULL.
"""

from __future__ import annotations

import pytest

from edgestream_hub.api import SimpleContext
from edgestream_hub.sql.errors import SqlError
from edgestream_hub.sql.processor import SqlProcessor


def run(query: str, records: list, **kw) -> tuple[list, list]:
    ctx = SimpleContext()
    p = SqlProcessor(query, ctx, **kw)
    out = p.process(records, 0) + p.flush()
    return out, [reason for _, reason in ctx.dead]


# -- arithmetic -------------------------------------------------------------------------------------------
STRNUM = [{"ts": 1, "temp": "21.5"}, {"ts": 2, "temp": 21.5}]


def test_a_numeric_string_is_not_a_number_in_arithmetic():
    out, dead = run("SELECT temp * 2 AS t, temp + temp AS u FROM s", STRNUM)
    assert out == [{"t": 43.0, "u": 43.0}]
    assert dead == ["cannot apply * to string '21.5' and number 2: arithmetic takes numbers "
                    "(CAST the string, or join text with || or concat)"]


@pytest.mark.parametrize("expr,op", [
    ("v + 1", "+"), ("1 + v", "+"), ("v - 1", "-"), ("v * 3", "*"), ("v / 2", "/"), ("v % 2", "%"),
    ("v + w", "+"), ("w * v", "*"), ("v * 100000000 * 100000000", "*"), ("1 - v - 2", "-"),
])
@pytest.mark.parametrize("value,what", [
    ("ab", "string 'ab'"), ([1, 2], "array [1,2]"), ({"a": 1}, 'object {"a":1}'), (True, "boolean true"),
    (False, "boolean false"),
])
def test_every_arithmetic_operator_takes_numbers_only(expr, op, value, what):
    out, dead = run(f"SELECT {expr} AS x FROM s", [{"ts": 1, "v": value, "w": 2}, {"ts": 2, "v": 4, "w": 2}])
    assert len(out) == 1 and isinstance(out[0]["x"], (int, float)) and not isinstance(out[0]["x"], bool)
    assert len(dead) == 1 and dead[0].startswith(f"cannot apply {op} to ") and what in dead[0], dead


@pytest.mark.parametrize("value", ["ab", [1], True, {"a": 1}])
def test_unary_minus_takes_numbers_only(value):
    out, dead = run("SELECT -v AS x FROM s", [{"ts": 1, "v": value}, {"ts": 2, "v": 3}])
    assert out == [{"x": -3}]
    assert len(dead) == 1 and dead[0].startswith("cannot apply - to "), dead


@pytest.mark.parametrize("fn", ["abs(v)", "round(v)", "round(v, 1)", "floor(v)", "ceil(v)", "sqrt(v)", "power(v, 2)",
                                "power(2, v)", "mod(v, 2)", "mod(7, v)", "sign(v)", "exp(v)", "ln(v)", "log(v)",
                                "log(2, v)", "sin(v)", "atan2(v, 1)"])
@pytest.mark.parametrize("value", [True, "4", [4]])
def test_arithmetic_functions_take_numbers_only(fn, value):
    out, dead = run(f"SELECT {fn} AS x FROM s", [{"ts": 1, "v": value}, {"ts": 2, "v": 4}])
    assert len(out) == 1
    name = fn.split("(")[0]
    assert len(dead) == 1 and f"{name}()" in dead[0] and "number" in dead[0], dead


def test_a_huge_power_of_integers_fails_the_record_instead_of_exhausting_memory():
    out, dead = run("SELECT power(v, w) AS x FROM s", [{"ts": 1, "v": 10, "w": 10**9}, {"ts": 2, "v": 2, "w": 10}])
    assert out == [{"x": 1024}]
    assert len(dead) == 1 and "power()" in dead[0] and "too large" in dead[0], dead


def test_string_repetition_is_never_computed():
    """'ab' * 10**9 would be a 2 GB string in Python: the record fails before anything is built."""
    out, dead = run("SELECT v * 1000000000 AS x FROM s", [{"ts": 1, "v": "ab"}])
    assert out == [] and dead[0].startswith("cannot apply * to string 'ab'")


def test_integer_and_float_arithmetic_is_unchanged():
    out, dead = run("SELECT a + b AS s, a - b AS d, a * b AS m, a / b AS q, a % b AS r, -a AS n, a * 1.5 AS f, "
                    "a + b * 2 - 1 AS e FROM s", [{"ts": 1, "a": 7, "b": 2}, {"ts": 2, "a": -7.5, "b": 2},
                                                  {"ts": 3, "a": None, "b": 2}])
    assert dead == []
    assert out == [{"s": 9, "d": 5, "m": 14, "q": 3, "r": 1, "n": -7, "f": 10.5, "e": 10},
                   {"s": -5.5, "d": -9.5, "m": -15.0, "q": -3.75, "r": -1.5, "n": 7.5, "f": -11.25, "e": -4.5},
                   {"s": None, "d": None, "m": None, "q": None, "r": None, "n": None, "f": None, "e": None}]


@pytest.mark.parametrize("query,col,what", [
    ("SELECT v + 'a' AS x FROM s", 12, "+ takes numbers: 'a' is a string"),
    ("SELECT 'a' * v AS x FROM s", 8, "* takes numbers: 'a' is a string"),
    ("SELECT v - TRUE AS x FROM s", 12, "- takes numbers: TRUE is a boolean"),
    ("SELECT -'a' AS x FROM s", 9, "- takes numbers: 'a' is a string"),
    ("SELECT v + (a || b) AS x FROM s", 13, "+ takes numbers: (s.a || s.b) is a string"),
    ("SELECT abs('x') AS x FROM s", 12, "abs() takes numbers: 'x' is a string"),
])
def test_an_operand_known_to_be_of_another_kind_is_a_compile_error(query, col, what):
    with pytest.raises(SqlError) as ei:
        SqlProcessor(query, SimpleContext())
    assert what in ei.value.message and ei.value.column == col, ei.value


# -- logic ------------------------------------------------------------------------------------------------
NB = [{"ts": 1, "v": 5}, {"ts": 2, "v": "hot"}, {"ts": 3, "v": 0}, {"ts": 4, "v": True}, {"ts": 5, "v": None}]


def test_logical_operators_take_booleans_only():
    out, dead = run("SELECT v, NOT v AS n, v AND TRUE AS a, v OR FALSE AS o FROM s", NB)
    assert out == [{"v": True, "n": False, "a": True, "o": True}, {"v": None, "n": None, "a": None, "o": None}]
    assert len(dead) == 3
    assert dead[0] == "NOT takes a boolean, got number 5"
    assert dead[1] == "NOT takes a boolean, got string 'hot'"


@pytest.mark.parametrize("expr,op", [("NOT v", "NOT"), ("v AND x", "AND"), ("x AND v", "AND"), ("v OR x", "OR"),
                                     ("x OR v", "OR"), ("FALSE AND v", "AND"), ("TRUE OR v", "OR"),
                                     ("v IS TRUE", "IS TRUE"), ("v IS NOT FALSE", "IS NOT FALSE")])
@pytest.mark.parametrize("value", [1, 0, "true", [True], {"a": True}])
def test_every_logical_operator_fails_a_non_boolean(expr, op, value):
    out, dead = run(f"SELECT {expr} AS b FROM s", [{"ts": 1, "v": value, "x": True}, {"ts": 2, "v": True, "x": True}])
    assert len(out) == 1 and isinstance(out[0]["b"], bool)
    assert len(dead) == 1 and dead[0].startswith(f"{op} takes a boolean, got "), dead


def test_logical_operators_keep_three_valued_logic():
    rows = [{"ts": i, "a": a, "b": b} for i, (a, b) in enumerate(
        [(x, y) for x in (True, False, None) for y in (True, False, None)])]
    out, dead = run("SELECT a AND b AS x, a OR b AS o, NOT a AS n FROM s", rows)
    assert dead == []
    T, F, N = True, False, None
    assert [r["x"] for r in out] == [T, F, N, F, F, F, N, F, N]
    assert [r["o"] for r in out] == [T, T, T, T, F, N, T, N, N]
    assert [r["n"] for r in out] == [F, F, F, T, T, T, N, N, N]


COND = "condition s.v is a {}, not a boolean (TRUE, FALSE or NULL)"


@pytest.mark.parametrize("query,reason", [
    ("SELECT v FROM s WHERE v", COND),
    ("SELECT v FROM s WHERE v AND ts > 0", COND),
    ("SELECT v FROM s WHERE ts > 0 AND (v OR ts < 0)", "OR takes a boolean, got {}"),
    ("SELECT CASE WHEN v THEN 'y' ELSE 'n' END AS v FROM s", COND),
    ("SELECT count(*) AS n FROM s GROUP BY v, TUMBLINGWINDOW(ss, 10) HAVING v", "condition s.v is a {}, not a "
                                                                               "boolean (TRUE, FALSE or NULL)"),
])
def test_a_condition_that_is_not_a_boolean_fails(query, reason):
    out, dead = run(query, [{"ts": 1, "v": "hot"}, {"ts": 2, "v": 7}, {"ts": 3, "v": True}, {"ts": 4, "v": None}])
    assert len(out) == 1 + ("CASE" in query)  # TRUE passes; NULL counts as false (CASE gives its ELSE)
    assert dead == [reason.format("string 'hot'"), reason.format("number 7")]


def test_a_condition_on_a_joined_table_that_is_not_a_boolean_fails():
    tables = {"t": [{"k": 1, "flag": "yes"}, {"k": 2, "flag": True}]}
    out, dead = run("SELECT s.k FROM s JOIN t ON s.k = t.k AND t.flag", [{"ts": 1, "k": 1}, {"ts": 2, "k": 2}],
                    tables=tables)
    # a table row whose join-time filter cannot be computed is left out of the join, as documented
    assert out == [{"k": 2}] and dead == []
    out, dead = run("SELECT s.k FROM s LEFT JOIN t ON s.k = t.k WHERE t.flag",
                    [{"ts": 1, "k": 1}, {"ts": 2, "k": 2}], tables=tables)
    assert out == [{"k": 2}] and len(dead) == 1 and "not a boolean" in dead[0]


@pytest.mark.parametrize("query,col,what", [
    ("SELECT v FROM s WHERE v + 1", 23, "WHERE takes a boolean: (s.v + 1) is a number"),
    ("SELECT NOT 'a' AS x FROM s", 12, "NOT takes a boolean: 'a' is a string"),
    ("SELECT v AND 1 AS x FROM s", 14, "AND takes a boolean: 1 is a number"),
    ("SELECT v FROM s WHERE v = 1 OR 'x'", 32, "OR takes a boolean: 'x' is a string"),
    ("SELECT CASE WHEN 1 THEN 2 END AS x FROM s", 18, "CASE WHEN takes a boolean: 1 is a number"),
    ("SELECT count(*) AS n FROM s GROUP BY TUMBLINGWINDOW(ss, 1) HAVING count(*)", 67,
     "HAVING takes a boolean: count(*) is a number"),
    ("SELECT 'a' IS TRUE AS x FROM s", 8, "IS TRUE takes a boolean: 'a' is a string"),
])
def test_a_condition_known_not_to_be_boolean_is_a_compile_error(query, col, what):
    with pytest.raises(SqlError) as ei:
        SqlProcessor(query, SimpleContext())
    assert what in ei.value.message and ei.value.column == col, ei.value


def test_folding_a_constant_never_skips_the_kind_check():
    """TRUE AND v must fail for a non-boolean v, as v AND TRUE does; FALSE AND v too (both sides computed)."""
    for q in ("SELECT TRUE AND v AS a FROM s", "SELECT FALSE AND v AS a FROM s", "SELECT v OR FALSE AS a FROM s",
              "SELECT TRUE OR v AS a FROM s"):
        out, dead = run(q, [{"ts": 1, "v": "hot"}, {"ts": 2, "v": None}])
        assert len(out) == 1 and out[0]["a"] in (None, True, False), (q, out)
        assert len(dead) == 1, (q, dead)
