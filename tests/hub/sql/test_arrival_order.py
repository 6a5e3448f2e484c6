"""Order-sensitive aggregates read arrival order in every window kind, out-of-order input included.

``first_value``, ``last_value`` and ``collect`` see a window's records in the
order they arrived, whatever their timestamps (within the lateness, so none is
late); ``lag`` is computed on arrival, so it follows arrival order too.
"""

from __future__ import annotations

import pytest

from edgestream_hub.api import SimpleContext
from edgestream_hub.sql.processor import SqlProcessor

# ts order would be 1, 4, 2, 3; arrival order is 1, 2, 3, 4 (values name their arrival)
RECORDS = [{"ts": 1000, "v": 1}, {"ts": 3000, "v": 2}, {"ts": 4000, "v": 3}, {"ts": 2000, "v": 4}]
AGGS = "first_value(v) AS f, last_value(v) AS l, collect(v) AS c, sum(lag(v)) AS lags, count(*) AS n"
WINDOWS = ["TUMBLINGWINDOW(ss, 10)", "HOPPINGWINDOW(ss, 10, 5)", "SLIDINGWINDOW(ss, 10)",
           "SESSIONWINDOW(ss, 60, 10)", "COUNTWINDOW(4)", None]


@pytest.mark.parametrize("window", WINDOWS, ids=lambda w: (w or "no window").split("(")[0])
def test_every_window_kind_reads_arrival_order(window):
    group = f" GROUP BY {window}" if window else ""
    ctx = SimpleContext()
    p = SqlProcessor(f"SELECT {AGGS} FROM s{group}", ctx, lateness_ms=5000)
    rows = p.process(RECORDS, 0) + p.flush()
    assert not ctx.late_records and not ctx.dead
    whole = [r for r in rows if r["n"] == 4]  # the windows (or sliding rows) holding every record
    assert whole and all(r == {"f": 1, "l": 4, "c": [1, 2, 3, 4], "lags": 6, "n": 4} for r in whole), rows


def test_sliding_rows_read_their_range_in_arrival_order():
    """Each sliding row holds the records with ts in its range, listed in arrival order."""
    p = SqlProcessor(f"SELECT {AGGS}, window_end() AS we FROM s GROUP BY SLIDINGWINDOW(ms, 1500)", SimpleContext(),
                     lateness_ms=5000)
    rows = p.process(RECORDS, 0) + p.flush()
    assert [(r["we"], r["f"], r["l"], r["c"]) for r in rows] == [
        (1000, 1, 1, [1]), (2000, 1, 4, [1, 4]), (3000, 2, 4, [2, 4]), (4000, 2, 3, [2, 3])]
