"""Bounded state: ``max_keys`` and ``max_state_bytes``, with ``on_limit: emit_early`` or ``dead_letter``.

Below the bounds every window kind gives exactly what it gives without them. At a bound, ``emit_early``
keeps the state within it by emitting the oldest states early (rows marked ``_early``) and loses no
record; ``dead_letter`` refuses the records that would grow the state, with the reason, and what it
emits is exactly the unbounded result over the records it took.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from typing import Any

import pytest
from hubtest import wait_for
from hypothesis import HealthCheck, given, settings, strategies as st

from edgestream_hub.api import SimpleContext
from edgestream_hub.sql.errors import SqlError
from edgestream_hub.sql.limits import CHECK_EVERY, EARLY
from edgestream_hub.sql.processor import SqlProcessor

ONE_KEY_AGGS = "count(*) AS n, collect(v) AS c"
#: kind -> (query, options); every kind keeps state a limit can bound
KINDS: dict[str, tuple[str, dict[str, Any]]] = {
    "tumbling": (f"SELECT id, {ONE_KEY_AGGS} FROM s GROUP BY id, TUMBLINGWINDOW(ms, 100)", {}),
    "hopping": (f"SELECT id, {ONE_KEY_AGGS} FROM s GROUP BY id, HOPPINGWINDOW(ms, 100, 50)", {}),
    "global": (f"SELECT id, {ONE_KEY_AGGS} FROM s GROUP BY id", {}),
    "session": (f"SELECT id, {ONE_KEY_AGGS} FROM s GROUP BY id, SESSIONWINDOW(ms, 1000, 100)", {}),
    "sliding": (f"SELECT id, {ONE_KEY_AGGS} FROM s GROUP BY id, SLIDINGWINDOW(ms, 100)", {"lateness_ms": 30}),
    "count": (f"SELECT id, {ONE_KEY_AGGS} FROM s GROUP BY id, COUNTWINDOW(3)", {}),
    "window rows": ("SELECT id, v FROM s GROUP BY TUMBLINGWINDOW(ms, 100)", {"lateness_ms": 150}),
    "join": ("SELECT a.id AS id, count(*) AS n, collect(a.v) AS c FROM a JOIN b ON a.id = b.id "
             "GROUP BY a.id, TUMBLINGWINDOW(ms, 100)", {"lateness_ms": 150}),
}
HUGE: dict[str, Any] = {"max_keys": 10**9, "max_state_bytes": 10**12}
WINDOW_STATES = ("window rows", "join")  # the kinds whose states are whole windows, not groups


def stream(kind: str, n: int, keys: int, step: int = 7) -> list[dict]:
    """``n`` records in time order, keys cycling over ``keys``; ``v`` numbers them (joins: two streams)."""
    recs = [{"ts": i * step, "id": f"k{i % keys}", "v": i} for i in range(n)]
    if kind == "join":
        for i, r in enumerate(recs):
            r["_stream"] = "ab"[i // keys % 2]
    return recs


def run(kind: str, recs: list[dict], one_at_a_time: bool = False, **limits: Any) -> tuple[list, SimpleContext, Any]:
    query, options = KINDS[kind]
    ctx = SimpleContext()
    p = SqlProcessor(query, ctx, **options, **limits)
    out: list = []
    bound = limits.get("max_keys")
    for chunk in ([[r] for r in recs] if one_at_a_time else [recs]):
        out += p.process([dict(r) for r in chunk], 0)
        if bound is not None:
            assert p.executor.keys() <= bound, (kind, p.executor.keys())
    out += p.flush()
    return out, ctx, p


def bag(rows: list) -> Counter:
    return Counter(json.dumps(r, sort_keys=True) for r in rows)


# -- below the bounds: exact -----------------------------------------------------------------

records = st.lists(st.tuples(st.integers(0, 3000), st.sampled_from(["a", "b", "c", None]),
                             st.one_of(st.none(), st.integers(-50, 50)), st.sampled_from(["a", "b"])),
                   max_size=60)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records, st.sampled_from(sorted(KINDS)), st.sampled_from(["emit_early", "dead_letter"]))
def test_below_the_bounds_every_kind_is_exactly_what_it_is_without_them(rows, kind, policy):
    recs = [{"ts": ts, "id": g, "v": v, "_stream": s} for ts, g, v, s in rows]
    free, free_ctx, _ = run(kind, recs)
    bounded, ctx, p = run(kind, recs, on_limit=policy, **HUGE)
    assert bounded == free  # the same rows in the same order, none marked
    assert ctx.dead == free_ctx.dead and ctx.late_records == free_ctx.late_records
    assert p.metrics["limited_records"] == 0


def test_the_bounds_hold_in_a_long_run_that_stays_below_them():
    recs = stream("tumbling", 3 * CHECK_EVERY, keys=10)
    free, _, _ = run("tumbling", recs)
    bounded, _, p = run("tumbling", recs, max_keys=10, max_state_bytes=10**9)
    assert bounded == free and p.metrics["limited_records"] == 0


# -- emit_early ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(KINDS))
def test_emit_early_keeps_within_max_keys_and_marks_what_it_emitted_early(kind):
    recs = stream(kind, 120, keys=5)
    # a state of windows of rows and joins is a window: with lateness 150, two or three are open at once
    bound = 1 if kind in WINDOW_STATES else 3
    out, ctx, p = run(kind, recs, one_at_a_time=True, max_keys=bound)  # run() checks the bound after each record
    early = [r for r in out if r.get(EARLY) is True]
    assert early and not ctx.dead
    assert all(set(r) - {EARLY} == set(out[-1]) - {EARLY} for r in out)  # the query's columns, plus the mark
    assert p.metrics["limited_records"] > 0
    assert p.state_stats()["live_states"] == 0 or kind == "count"


@pytest.mark.parametrize("kind", ["tumbling", "global", "session"])
def test_emit_early_loses_no_record_where_each_record_is_in_one_window(kind):
    recs = stream(kind, 150, keys=6)
    out, _, _ = run(kind, recs, one_at_a_time=True, max_keys=4)
    assert any(r.get(EARLY) for r in out)
    assert sorted(v for r in out for v in r["c"]) == list(range(150))
    assert sum(r["n"] for r in out) == 150


def test_emit_early_in_hopping_windows_puts_each_record_in_both_its_windows():
    out, _, _ = run("hopping", stream("hopping", 150, keys=6), one_at_a_time=True, max_keys=7)
    assert any(r.get(EARLY) for r in out)
    assert Counter(v for r in out for v in r["c"]) == Counter({v: 2 for v in range(150)})


def test_emit_early_in_sliding_windows_still_gives_one_row_per_record():
    # lateness 30: a record's row waits until the watermark passes it; a group emitted early gives
    # the rows its records were waiting for now, each over what the group held
    out, _, _ = run("sliding", stream("sliding", 100, keys=5, step=3), one_at_a_time=True, max_keys=2)
    early = [r for r in out if r.get(EARLY)]
    assert early and len(out) == 100
    assert sorted(r["c"][-1] for r in out) == list(range(100))  # each row ends with its own record


def test_emit_early_in_count_windows_emits_what_arrived_of_the_next_window():
    out, _, p = run("count", stream("count", 100, keys=4), one_at_a_time=True, max_keys=3)
    early = [r for r in out if r.get(EARLY)]
    assert early and all(1 <= r["n"] < 3 for r in early) and all(r["n"] == 3 for r in out if r not in early)
    seen = [v for r in out for v in r["c"]]
    assert len(seen) == len(set(seen))  # no record in two windows (COUNTWINDOW(3) does not overlap)
    held = {v for b in p.executor.bufs.values() for _, (_, v) in b[0]}  # the open windows at the end
    assert set(seen) | held == set(range(100))


def test_emit_early_in_overlapping_count_windows_emits_only_the_next_windows_part():
    query = "SELECT id, collect(v) AS c FROM s GROUP BY id, COUNTWINDOW(4, 2)"
    p = SqlProcessor(query, SimpleContext(), max_keys=1)
    out = p.process([{"ts": i, "id": "a", "v": i} for i in range(5)], 0)  # windows [0..3]; 4 is in [2..5]
    assert out == [{"id": "a", "c": [0, 1, 2, 3]}]
    assert p.process([{"ts": 9, "id": "b", "v": 9}], 0) == [{"id": "a", "c": [2, 3, 4], EARLY: True}]


def test_emit_early_in_windows_of_rows_and_joins_emits_the_oldest_window():
    out, _, _ = run("window rows", stream("window rows", 60, keys=3, step=20), one_at_a_time=True, max_keys=1)
    assert sorted(r["v"] for r in out) == list(range(60)) and any(r.get(EARLY) for r in out)
    out, _, p = run("join", stream("join", 60, keys=3, step=20), one_at_a_time=True, max_keys=1)
    assert any(r.get(EARLY) for r in out) and p.metrics["limited_records"] > 0


def test_emit_early_by_bytes_keeps_the_estimate_within_the_bound_at_every_check():
    query = "SELECT id, count(*) AS n, collect(s) AS c FROM s GROUP BY id, TUMBLINGWINDOW(ss, 3600)"
    p = SqlProcessor(query, SimpleContext(), max_state_bytes=400_000)
    out: list = []
    n = 8 * CHECK_EVERY
    for i in range(0, n, CHECK_EVERY):  # one check per batch
        out += p.process([{"ts": j, "id": j % 7, "s": f"value {j:08d}"} for j in range(i, i + CHECK_EVERY)], 0)
        assert p.state_stats()["held_bytes"] <= 400_000
    out += p.flush()
    assert sum(1 for r in out if r.get(EARLY)) >= 7  # each early emission is one window's 7 groups
    assert sum(r["n"] for r in out) == n and len({x for r in out for x in r["c"]}) == n
    assert p.metrics["limited_records"] == sum(1 for r in out if r.get(EARLY))


# -- dead_letter --------------------------------------------------------------------------------------

REASON_KEYS = "state limit: max_keys (2) states held; this record needs a new one (refused until windows close)"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_dead_letter_refuses_new_keys_with_the_reason_and_is_exact_over_what_it_took(kind):
    recs = stream(kind, 150, keys=4, step=11)
    out, ctx, p = run(kind, recs, one_at_a_time=True, max_keys=2, on_limit="dead_letter")
    assert ctx.dead and {reason for _, reason in ctx.dead} == {REASON_KEYS}
    assert p.metrics["limited_records"] == len(ctx.dead) == p.metrics["dead_letters"]
    assert not any(EARLY in r for r in out)
    refused = {json.dumps(r, sort_keys=True) for r, _ in ctx.dead}
    taken = [r for r in recs if json.dumps(r, sort_keys=True) not in refused]
    exact, _, _ = run(kind, taken)
    assert bag(out) == bag(exact)


def test_dead_letter_takes_new_keys_again_once_windows_close():
    recs = [{"ts": t, "id": k, "v": t} for t, k in [(0, "a"), (1, "b"), (2, "c"), (150, "c"), (151, "d")]]
    out, ctx, _ = run("tumbling", recs, max_keys=2, on_limit="dead_letter")
    assert [r["ts"] for r, _ in ctx.dead] == [2]
    assert [(r["id"], r["n"]) for r in out] == [("a", 1), ("b", 1), ("c", 1), ("d", 1)]


def test_dead_letter_a_hopping_record_is_taken_into_all_its_windows_or_none():
    # each record is in two windows: with one state left, a new key's record is refused whole
    recs = [{"ts": 60, "id": "a", "v": 1}, {"ts": 61, "id": "b", "v": 2}, {"ts": 62, "id": "a", "v": 3}]
    out, ctx, _ = run("hopping", recs, max_keys=3, on_limit="dead_letter")
    assert [r["id"] for r, _ in ctx.dead] == ["b"]
    assert [(r["id"], r["c"]) for r in out] == [("a", [1, 3]), ("a", [1, 3])]


def test_dead_letter_by_bytes_refuses_records_until_the_window_closes():
    query = "SELECT id, count(*) AS n, collect(s) AS c FROM s GROUP BY id, TUMBLINGWINDOW(ms, 100000)"
    ctx = SimpleContext()
    p = SqlProcessor(query, ctx, max_state_bytes=200_000, on_limit="dead_letter")
    n = 6 * CHECK_EVERY
    recs = [{"ts": j, "id": j % 3, "s": f"value {j:08d}"} for j in range(n)]
    out = p.process(recs, 0)
    assert ctx.dead and all(r.startswith("state limit: the state holds more than max_state_bytes (200000)")
                            for _, r in ctx.dead)
    first = ctx.dead[0][0]["ts"]
    assert first % CHECK_EVERY == 0 and {r["ts"] for r, _ in ctx.dead} == set(range(first, n))  # all of them
    out += p.process([{"ts": 100_000, "id": 9, "s": "x"}], 0)  # the window closes: room again
    assert not p.executor.full
    out += p.process([{"ts": 100_001, "id": 9, "s": "y"}], 0) + p.flush()
    assert sum(r["n"] for r in out) == first + 2 == n - len(ctx.dead) + 2
    assert p.metrics["limited_records"] == len(ctx.dead)


@pytest.mark.parametrize("policy", ["emit_early", "dead_letter"])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_max_state_bytes_bounds_every_kind_by_its_policy(kind, policy):
    recs = stream(kind, 4 * CHECK_EVERY, keys=40, step=1)
    batches = [recs[i:i + CHECK_EVERY] for i in range(0, len(recs), CHECK_EVERY)]
    query, options = KINDS[kind]
    free = SqlProcessor(query, SimpleContext(), **options)
    free.process([dict(r) for r in batches[0]], 0)
    bound = free.state_stats()["held_bytes"] // 2  # what the first batch holds, halved: reached at once
    ctx = SimpleContext()
    p = SqlProcessor(query, ctx, **options, max_state_bytes=bound, on_limit=policy)
    out: list = []
    for b in batches:  # one reading of the bytes at the end of each batch
        out += p.process([dict(r) for r in b], 0)
        if policy == "emit_early":
            assert p.executor.held_bytes() <= bound
    out += p.flush()
    assert p.metrics["limited_records"] > 0
    if policy == "emit_early":
        assert not ctx.dead and any(r.get(EARLY) for r in out)
        if kind in ("tumbling", "global", "session", "window rows"):  # each record in one state: all there
            assert sorted(v for r in out for v in (r["c"] if "c" in r else [r["v"]])) == list(range(len(recs)))
    else:
        assert ctx.dead and all(r.startswith("state limit: the state holds more than max_state_bytes")
                                for _, r in ctx.dead)
        refused = {json.dumps(r, sort_keys=True) for r, _ in ctx.dead}
        exact, _, _ = run(kind, [r for r in recs if json.dumps(r, sort_keys=True) not in refused])
        assert bag(out) == bag(exact) and not any(EARLY in r for r in out)


# -- snapshots, options, the command line, the hub --------------------------------------------------

def test_a_resumed_processor_counts_the_groups_it_resumed_with():
    query, _ = KINDS["tumbling"]
    p = SqlProcessor(query, SimpleContext(), max_keys=2, on_limit="dead_letter")
    p.process([{"ts": 1, "id": "a", "v": 1}, {"ts": 2, "id": "b", "v": 2}, {"ts": 3, "id": "c", "v": 3}], 0)
    ctx = SimpleContext()
    q = SqlProcessor(query, ctx, max_keys=2, on_limit="dead_letter", resume_state=json.loads(json.dumps(p.snapshot())))
    q.process([{"ts": 4, "id": "d", "v": 4}, {"ts": 5, "id": "a", "v": 5}], 0)
    assert [r["id"] for r, _ in ctx.dead] == ["d"] and q.metrics["limited_records"] == 2


@pytest.mark.parametrize("kw,message", [
    ({"max_keys": 0}, "max_keys must be a whole number >= 1, got 0"),
    ({"max_keys": True}, "max_keys must be a whole number >= 1, got True"),
    ({"max_state_bytes": -5}, "max_state_bytes must be a whole number >= 1, got -5"),
    ({"on_limit": "drop"}, "on_limit must be one of emit_early, dead_letter, got 'drop'"),
])
def test_bad_limits_are_refused(kw, message):
    with pytest.raises(SqlError, match=message):
        SqlProcessor(KINDS["tumbling"][0], SimpleContext(), **kw)


def test_a_query_without_state_refuses_limits():
    with pytest.raises(SqlError, match="this query keeps none"):
        SqlProcessor("SELECT id, lag(v) AS p FROM s", SimpleContext(), max_keys=10)


def test_the_command_line_takes_the_limits(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"ts": i, "id": i % 3}) + "\n" for i in range(6)))
    query = "SELECT id, count(*) AS n FROM s GROUP BY id, TUMBLINGWINDOW(ss, 1)"
    cmd = [sys.executable, "-m", "edgestream_tools.cli", "sql", query, "--input", f"s={src}", "--max-keys", "2"]
    p = subprocess.run(cmd + ["--on-limit", "dead_letter", "--dead-letters", str(tmp_path / "dead.jsonl")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert [json.loads(x) for x in p.stdout.splitlines()] == [{"id": 0, "n": 2}, {"id": 1, "n": 2}]
    assert "the state limit was reached: 2 record(s) dead-lettered" in p.stderr
    dead = [json.loads(x) for x in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert [d["record"]["id"] for d in dead] == [2, 2] and dead[0]["reason"].startswith("state limit: max_keys (2)")
    p = subprocess.run(cmd + ["--max-state-bytes", "1MiB"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "window state(s) emitted early (rows marked _early)" in p.stderr
    assert sum(json.loads(x)["n"] for x in p.stdout.splitlines()) == 6 and '"_early":true' in p.stdout
    p = subprocess.run(cmd[:-1] + ["0"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "argument --max-keys: expected a whole number >= 1, got 0" in p.stderr


def test_the_hub_counts_what_a_limit_did_and_dead_letters_with_the_reason(hub):
    hub.scripts["s"] = [{"ts": i, "id": i % 4, "v": i} for i in range(40)]
    e = hub.engine("""
hub: {dead_letter: dlq}
state: {enabled: false}  # the stop flushes the open windows instead of checkpointing them
sources: {s: {script: {name: s}}}
sinks: {out: {memory: {}}, dlq: {memory: {}}}
pipelines:
  p:
    from: s
    processors:
      - sql: {query: "SELECT id, count(*) AS n FROM s GROUP BY id, TUMBLINGWINDOW(ss, 1)", max_keys: 3,
              on_limit: dead_letter}
    to: out
""")
    assert wait_for(lambda: len(hub.out.get("dlq", [])) == 10)
    assert e.metrics.value("edgestream_processor_limited_records_total", component="p.sql") == 10
    assert e.stop()
    assert sorted((r["id"], r["n"]) for r in hub.out["out"]) == [(0, 10), (1, 10), (2, 10)]
    assert all("state limit: max_keys (3)" in str(d) for d in hub.out["dlq"])


@pytest.mark.parametrize("kind", ["tumbling", "session", "count", "join"])
def test_rows_emitted_early_have_ids_of_their_own(kind):
    # an upserting sink keyed on the result id must keep every part of a window a bound split, and a
    # window that was never split keeps the id it has without bounds
    recs = stream(kind, 120, keys=5)
    out, _, _ = run(kind, recs, one_at_a_time=True, max_keys=1 if kind == "join" else 3, id_field="_id",
                    id_scope="p/p.sql")
    early = [r for r in out if r.get(EARLY)]
    assert early and len({r["_id"] for r in out}) == len(out)
    free, _, _ = run(kind, recs, id_field="_id", id_scope="p/p.sql")
    unsplit = {r["_id"] for r in free}
    assert all(r["_id"] not in unsplit for r in early)
