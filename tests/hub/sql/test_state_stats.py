"""``SqlProcessor.state_stats()``: the state held, for the engine's gauges.

``live_states`` counts open windows and groups (and the records sliding and
count windows, windows of rows and join buffers hold, and analytic
partitions); ``held_bytes`` estimates the bytes of buffered values. Both grow
with distinct keys and collected values and fall when windows close.
"""

from __future__ import annotations

import pytest

from edgestream_hub.api import SimpleContext
from edgestream_hub.sql.processor import SqlProcessor

HOLISTIC = "collect(v) AS c, count(DISTINCT v) AS d, median(v) AS m"


def _feed(p: SqlProcessor, keys: int, per_key: int, t0: int = 0) -> None:
    p.process([{"ts": t0 + i, "id": i % keys, "v": i, "s": f"r{i}"} for i in range(keys * per_key)], 0)


def test_tumbling_grows_with_keys_and_values_and_shrinks_when_windows_close():
    p = SqlProcessor(f"SELECT id, {HOLISTIC} FROM s GROUP BY id, TUMBLINGWINDOW(ss, 10)", SimpleContext())
    assert p.state_stats() == {"live_states": 0, "held_bytes": 0}
    _feed(p, keys=10, per_key=10)
    few = p.state_stats()
    assert few["live_states"] == 10 and few["held_bytes"] > 0
    _feed(p, keys=10, per_key=100, t0=100)  # more values, same keys
    more_values = p.state_stats()
    assert more_values["live_states"] == 10 and more_values["held_bytes"] > 5 * few["held_bytes"]
    _feed(p, keys=100, per_key=10, t0=2000)  # more keys
    more_keys = p.state_stats()
    assert more_keys["live_states"] == 100 and more_keys["held_bytes"] > more_values["held_bytes"]
    assert len(p.process([{"ts": 20_000, "id": 1, "v": 1}], 0)) == 100  # the window closes
    after = p.state_stats()
    assert after["live_states"] == 1 and after["held_bytes"] < few["held_bytes"]
    p.flush()
    assert p.state_stats() == {"live_states": 0, "held_bytes": 0}


def test_constant_size_aggregates_hold_no_value_bytes():
    p = SqlProcessor("SELECT id, count(*) AS n, avg(v) AS a, max(v) AS hi FROM s GROUP BY id, TUMBLINGWINDOW(ss, 10)",
                     SimpleContext())
    _feed(p, keys=20, per_key=50)
    assert p.state_stats() == {"live_states": 20, "held_bytes": 0}


@pytest.mark.parametrize("query", [
    f"SELECT id, {HOLISTIC} FROM s GROUP BY id, HOPPINGWINDOW(ss, 10, 5)",
    f"SELECT id, {HOLISTIC} FROM s GROUP BY id, SESSIONWINDOW(ss, 600, 60)",
    "SELECT id, count(*) AS n, max(v) AS hi FROM s GROUP BY id, SLIDINGWINDOW(ss, 600)",
    f"SELECT id, {HOLISTIC}, first_value(v) AS f FROM s GROUP BY id, SLIDINGWINDOW(ss, 600)",
    "SELECT id, s FROM s GROUP BY TUMBLINGWINDOW(ss, 600)",
    f"SELECT id, {HOLISTIC} FROM s GROUP BY id",
])
def test_every_kind_grows_with_what_it_holds_and_empties_at_the_end(query):
    p = SqlProcessor(query, SimpleContext(), lateness_ms=10**9)  # nothing closes before flush
    _feed(p, keys=5, per_key=20)
    small = p.state_stats()
    _feed(p, keys=50, per_key=20, t0=1000)
    big = p.state_stats()
    assert 0 < small["live_states"] < big["live_states"]
    assert 0 < small["held_bytes"] < big["held_bytes"]
    p.flush()
    assert p.state_stats() == {"live_states": 0, "held_bytes": 0}


def test_count_windows_hold_their_last_n_records_only():
    p = SqlProcessor(f"SELECT id, {HOLISTIC} FROM s GROUP BY id, COUNTWINDOW(20, 5)", SimpleContext())
    _feed(p, keys=5, per_key=20)
    full = p.state_stats()
    assert full["live_states"] == 100 and full["held_bytes"] > 0
    _feed(p, keys=5, per_key=200, t0=1000)
    later = p.state_stats()
    assert later["live_states"] == 100 and later["held_bytes"] < 2 * full["held_bytes"]


def test_stream_join_buffers_and_analytic_partitions_count():
    p = SqlProcessor("SELECT a.k, count(*) AS n FROM a JOIN b ON a.k = b.k GROUP BY a.k, TUMBLINGWINDOW(ss, 10)",
                     SimpleContext())
    p.process([{"_stream": s, "ts": i, "k": i % 3} for i, s in enumerate(["a", "b"] * 30)], 0)
    buffered = p.state_stats()
    assert buffered["live_states"] == 60 and buffered["held_bytes"] > 0
    p.flush()
    assert p.state_stats() == {"live_states": 0, "held_bytes": 0}
    lag = SqlProcessor("SELECT id, lag(v) OVER (PARTITION BY id) AS p FROM s", SimpleContext())
    _feed(lag, keys=7, per_key=3)
    stats = lag.state_stats()
    assert stats["live_states"] == 7 and stats["held_bytes"] > 0


def test_the_hub_wrapper_that_refreshes_tables_reports_the_same():
    from edgestream_hub.processors import RefreshingSql

    p = SqlProcessor(f"SELECT id, {HOLISTIC} FROM s GROUP BY id, TUMBLINGWINDOW(ss, 10)", SimpleContext())
    _feed(p, keys=3, per_key=4)
    assert RefreshingSql(p, 60_000, SimpleContext()).state_stats() == p.state_stats()
