"""The built-in ``filter`` processor compares as the SQL engine does: a boolean is not a number."""

from __future__ import annotations

import pytest

from edgestream_hub.api import SimpleContext
from edgestream_hub.processors import Filter


@pytest.mark.parametrize("op,value,kept", [
    ("eq", 1, [1, 1.0]),
    ("eq", True, [True]),
    ("eq", 0, [0]),
    ("eq", False, [False]),
    ("ne", 1, [True, 0, False, "1", [1], [True], None]),
    ("in", [1, "x"], [1, 1.0]),
    ("in", [True], [True]),
    ("eq", [1], [[1]]),
    ("eq", [True], [[True]]),
])
def test_filter_equality_keeps_booleans_and_numbers_apart(op, value, kept):
    values = [1, True, 0, False, 1.0, "1", [1], [True], None]
    ctx = SimpleContext()
    f = Filter("v", op, value, ctx)
    out = f.process([{"v": v} for v in values], 0)
    got = [r["v"] for r in out]
    assert len(got) == len(kept) and all(type(a) is type(b) and a == b for a, b in zip(got, kept)), got
    assert ctx.dead == []
