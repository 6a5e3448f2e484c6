"""One rule for event timestamps: a number (epoch milliseconds; a float is truncated) or an ISO-8601
time (UTC when it names no zone). Anything else, a numeric string included, is a bad timestamp."""

from __future__ import annotations

import pytest

from edgestream_hub.api import SimpleContext
from edgestream_hub.sql.errors import SqlRuntimeError
from edgestream_hub.sql.functions import ts_ms
from edgestream_hub.sql.processor import SqlProcessor


@pytest.mark.parametrize("value,ms", [
    (1000, 1000), (1000.9, 1000), (-5, -5), ("1970-01-01T00:00:01Z", 1000), ("1970-01-01T00:00:01.001Z", 1001),
    ("1970-01-01T00:00:01.001+00:00", 1001), ("1970-01-01T01:00:00+01:00", 0), ("1970-01-01T00:00:02", 2000),
    ("2023-11-14T22:13:20.123Z", 1_700_000_000_123),
])
def test_good_timestamps(value, ms):
    assert ts_ms(value) == ms


@pytest.mark.parametrize("value", ["1000", "1e3", " 1000 ", "1_000", "+5", "soon", "", True, False, [1], {"t": 1},
                                   float("inf"), float("nan")])
def test_bad_timestamps(value):
    with pytest.raises(SqlRuntimeError, match="^bad timestamp"):
        ts_ms(value)


def test_numeric_strings_are_dead_lettered_in_the_query_like_any_bad_timestamp():
    ctx = SimpleContext()
    p = SqlProcessor("SELECT v FROM s", ctx)
    assert p.process([{"ts": "1000", "v": 1}, {"ts": "1e3", "v": 2}, {"ts": 1000, "v": 3}], 0) == [{"v": 3}]
    assert [r for _, r in ctx.dead] == [
        "bad timestamp '1000': a number in a string; give epoch milliseconds as a number or an ISO-8601 time",
        "bad timestamp '1e3': a number in a string; give epoch milliseconds as a number or an ISO-8601 time"]
