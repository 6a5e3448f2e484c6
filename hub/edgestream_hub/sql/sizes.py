"""Approximate sizes of held state, for the processor's state gauges (``SqlProcessor.state_stats``).

Cheap by sampling: a container is measured by ``sys.getsizeof`` plus up to
``SAMPLE`` of its items, scaled to its length, to a bounded depth; so a call
costs about the same whatever the state holds. Objects shared by several
windows are counted in each. An estimate for a gauge, not an accounting.

>>> approx_bytes([1.5] * 1000) == approx_bytes([1.5] * 1000)
True
>>> approx_bytes(list(range(10_000))) > approx_bytes(list(range(100)))
True
"""

from __future__ import annotations

import sys
from collections import deque
from itertools import islice
from typing import Any, Callable, Collection

SAMPLE = 16
DEPTH = 4
CONTAINERS = (list, tuple, dict, set, frozenset, deque)


def sample(xs: Collection[Any], k: int = SAMPLE) -> tuple[list, float]:
    """Up to ``k`` items of ``xs`` (evenly spread when it can be indexed) and the factor scaling them to all."""
    n = len(xs)
    if n <= k:
        return list(xs), 1.0
    if isinstance(xs, (list, tuple)):
        step = n / k
        return [xs[int(i * step)] for i in range(k)], n / k
    return list(islice(xs, k)), n / k


def approx_bytes(v: Any, depth: int = DEPTH) -> int:
    """Bytes of ``v`` and what it holds, estimated from a sample of each container's items."""
    size = sys.getsizeof(v)
    if depth <= 0 or not isinstance(v, CONTAINERS) or not v:
        return size
    items, scale = sample(v.items() if isinstance(v, dict) else v)
    inner = 0
    for x in items:
        if isinstance(x, tuple) and isinstance(v, dict):  # a (key, value) pair of a dict
            inner += approx_bytes(x[0], depth - 1) + approx_bytes(x[1], depth - 1)
        else:
            inner += approx_bytes(x, depth - 1)
    return size + int(inner * scale)


def scaled_sum(groups: Collection[Any], measure: Callable[[Any], int]) -> int:
    """``measure`` summed over a sample of ``groups``, scaled to all of them."""
    items, scale = sample(groups)
    return int(sum(measure(g) for g in items) * scale)
