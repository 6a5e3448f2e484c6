"""sum and avg give one answer for the same values, whatever the window kind: the correctly rounded
sum of the values (and that sum divided by the count), as ``math.fsum`` computes it."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from edgestream_hub.api import SimpleContext
from edgestream_hub.sql.processor import SqlProcessor

#: every window kind, each with one window that holds all the records of the test
WINDOWS = ["", "TUMBLINGWINDOW(ss, 1000)", "HOPPINGWINDOW(ss, 1000, 1000)", "SESSIONWINDOW(ss, 1000, 1000)",
           "SLIDINGWINDOW(ss, 1000)", "COUNTWINDOW({n})"]


def sums(values: list, window: str, shuffle_ts: bool = False) -> dict:
    w = window.format(n=len(values))
    q = "SELECT sum(v) AS s, avg(v) AS a FROM s" + (f" GROUP BY {w}" if w else "")
    p = SqlProcessor(q, SimpleContext(), lateness_ms=10**6)
    n = len(values)
    ts = [n - i for i in range(n)] if shuffle_ts else list(range(1, n + 1))
    out = p.process([{"ts": t, "v": v} for t, v in zip(ts, values)], 0) + p.flush()
    return out[-1]  # sliding: the row of the record with the largest ts covers all


def _float(x: Fraction | float) -> float:
    try:
        return float(x)
    except OverflowError:
        return math.inf if x > 0 else -math.inf


def exact(values: list) -> tuple:
    total = sum(Fraction(v) for v in values)
    return _float(total), _float(total / len(values))


@pytest.mark.parametrize("window", WINDOWS)
def test_point_one_two_three(window):
    assert sums([0.1, 0.2, 0.3], window) == {"s": 0.6, "a": 0.2}


@pytest.mark.parametrize("window", WINDOWS)
def test_integers_stay_integers(window):
    got = sums([1, 2, 3, 10**30], window)
    assert got["s"] == 10**30 + 6 and isinstance(got["s"], int)


@pytest.mark.parametrize("window", WINDOWS)
def test_cancellation_is_exact(window):
    assert sums([1e308, 1.0, -1e308, 2**-1074], window)["s"] == 1.0
    assert sums([1e308, 1e308, -1e308], window)["s"] == 1e308


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False) | st.integers(-10**20, 10**20), min_size=1,
                max_size=40), st.booleans())
def test_every_window_kind_gives_the_correctly_rounded_sum_and_mean(values, shuffle_ts):
    want_sum, want_avg = exact(values)
    for window in WINDOWS:
        got = sums(values, window, shuffle_ts and window != "COUNTWINDOW({n})")
        assert got["a"] == want_avg, (window, got, want_avg)
        if all(isinstance(v, int) for v in values):
            assert got["s"] == sum(values), (window, got)
        else:
            assert got["s"] == want_sum, (window, got, want_sum)
