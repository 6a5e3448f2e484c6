"""The one ingest path every source uses: no payload escapes it, every refusal is counted and dead-lettered."""

from __future__ import annotations

import hashlib
import json
import logging

import pytest
from hubtest import HOSTILE_JSON, HOSTILE_WIRE, readings as wire
from hypothesis import given, settings, strategies as st

from edgestream_hub.components import ComponentContext
from edgestream_hub.deadletter import PREFIX_BYTES, RawInput, bounded
from edgestream_hub.ingest import Ingest
from edgestream_hub.metrics import HubMetrics

# with each JSON engine (tests/conftest.py): the results must not depend on it
pytestmark = pytest.mark.usefixtures("json_engine")

HOSTILE = dict(HOSTILE_JSON, empty=b"")


class Ctx(ComponentContext):
    """A real context whose dead letters land in a list."""

    def __init__(self) -> None:
        self.dead: list[tuple[object, str]] = []
        super().__init__("source", "src", "src", metrics=HubMetrics(),
                         dead_letter=lambda comp, pl, rec, reason: self.dead.append((rec, reason)))

    def value(self, metric: str) -> float:
        return self.metrics.value(metric, component="src")


_CASES = [("json", n, p) for n, p in HOSTILE.items()] + [("wire", n, p) for n, p in HOSTILE.items()] + [
    ("wire", n, p) for n, p in HOSTILE_WIRE.items()]


@pytest.mark.parametrize("fmt,name,payload", _CASES, ids=[f"{f}-{n}" for f, n, _ in _CASES])
def test_a_hostile_payload_is_its_own_dead_letter(fmt, name, payload):
    ctx = Ctx()
    ing = Ingest(ctx, fmt)
    d = ing.payload(payload, "test")
    assert d.records == [] and d.rejected == 1 and d.error
    assert ctx.value("edgestream_source_decode_errors_total") == 1
    ((rec, reason),) = ctx.dead
    assert isinstance(rec, RawInput) and not isinstance(rec.data, str) and bytes(rec.data) == payload
    assert reason.startswith("test: ")
    # and the next good payload is decoded as if nothing happened
    good = b'{"a": 1}' if fmt == "json" else wire("d1", 1, [0])
    assert len(ing.payload(good, "test").records) == 1


def test_the_reasons_say_what_was_wrong():
    ing = Ingest(Ctx(), "json")
    why = {name: ing.payload(p, "t").error or "" for name, p in HOSTILE.items()}
    assert "nested too deeply" in why["deep arrays"] and "nested too deeply" in why["deep objects"]
    assert "not UTF-8" in why["not UTF-8"]
    assert "NaN is not a JSON number" in why["NaN"] and "-Infinity is not a JSON number" in why["Infinity"]
    assert "1e999 is out of range" in why["float out of range"]
    assert "4300 digits" in why["int of 5000 digits"]
    assert why["a number"] == "expected a JSON object or an array of objects, got a number"
    assert why["null"] == "expected a JSON object or an array of objects, got null"


def test_an_array_keeps_its_objects_and_dead_letters_the_rest():
    ctx = Ctx()
    d = Ingest(ctx, "json").payload(b'[{"a": 1}, 2, [3], {"a": 4}]', "http")
    assert d == ([{"a": 1}, {"a": 4}], 2, None)
    assert [reason for _, reason in ctx.dead] == ["http: item 1: expected a JSON object, got a number",
                                                  "http: item 2: expected a JSON object, got an array"]
    assert ctx.value("edgestream_source_decode_errors_total") == 2
    assert Ingest(ctx, "json").payload(b"[1]", "http").error == "no JSON objects in the array (1 other values)"


def test_the_size_limit_is_a_refusal_not_a_crash():
    ctx = Ctx()
    d = Ingest(ctx, "json", max_payload=10).payload(b'{"a": "0123456789"}', "mqtt t")
    assert d.error == "payload: 19 bytes is over the 10 byte limit" and len(ctx.dead) == 1


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["wire", "json", "raw"]), st.lists(st.one_of(
    st.binary(max_size=64), st.sampled_from(sorted(HOSTILE.values())),
    st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4),
                 lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3),
                 max_leaves=10).map(lambda v: json.dumps(v).encode())), max_size=8))
def test_no_payload_escapes_and_every_one_is_records_or_a_counted_dead_letter(fmt, payloads):
    ctx = Ctx()
    ing = Ingest(ctx, fmt)
    refused = 0
    for p in payloads:
        d = ing.payload(p, "fuzz")  # never raises
        assert all(isinstance(r, dict) for r in d.records)
        refused += d.rejected
        assert ((d.error is None) == (d.rejected == 0 or bool(d.records))
                or (d.error or "").startswith("no JSON objects"))
    assert len(ctx.dead) == refused == ctx.value("edgestream_source_decode_errors_total")


def test_wire_sequence_counters_and_a_data_loss_warning(caplog):
    now = [100.0]
    ctx = Ctx()
    ing = Ingest(ctx, "wire", clock=lambda: now[0])
    caplog.set_level(logging.WARNING, "edgestream.hub.source.src")
    ing.payload(wire("d1", 7, [0, 1, 2]), "t")
    assert not caplog.records
    ing.payload(wire("d1", 7, [6]), "t")  # 3, 4, 5 lost: logged at once
    assert [r.getMessage() for r in caplog.records] == [
        "data loss: device d1: 3 records missing in 1 gap (last: boot 7, seq 2 -> 6) (summarised at most every 10s)"]
    assert all(r.levelno == logging.WARNING for r in caplog.records)
    caplog.clear()
    ing.payload(wire("d1", 7, [9]), "t")  # within 10 s: held back, summed up
    ing.payload(wire("d2", 1, [0]), "t")
    ing.payload(wire("d2", 1, [2]), "t")
    ing.payload(wire("d1", 7, [12]), "t")
    assert not caplog.records
    now[0] += 10
    ing.payload(wire("d1", 7, [13]), "t")  # the next payload after the interval logs the summary
    assert [r.getMessage() for r in caplog.records] == [
        "data loss: device d1: 4 records missing in 2 gaps (last: boot 7, seq 9 -> 12); device d2: 1 record missing "
        "in 1 gap (last: boot 1, seq 0 -> 2) (summarised at most every 10s)"]
    caplog.clear()
    now[0] += 1
    ing.payload(wire("d3", 1, [0, 5]), "t")
    assert not caplog.records
    ing.close()  # a stopping source reports what it held back
    assert "device d3: 4 records missing in 1 gap" in caplog.records[0].getMessage()
    v = ctx.value
    assert (v("edgestream_source_gaps_total"), v("edgestream_source_missing_records_total")) == (5, 12)


def test_a_loss_line_names_the_worst_devices_and_sums_up_the_rest(caplog):
    ctx = Ctx()
    ing = Ingest(ctx, "wire", clock=lambda: 0.0)
    ing._next_log["lost"] = 1.0  # hold everything back until close()
    for i in range(15):
        ing.payload(wire(f"d{i:02}", 1, [0]), "t")
        ing.payload(wire(f"d{i:02}", 1, [2 + i]), "t")
    caplog.set_level(logging.WARNING, "edgestream.hub.source.src")
    ing.close()
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("data loss: device d14: 15 records missing")
    assert "device d05: 6 records missing" in line and "device d04" not in line
    assert "and 5 more devices: 15 records" in line  # 1 + 2 + 3 + 4 + 5


def test_dead_letters_are_bounded_whatever_was_refused():
    big = b"[" * (10 * 1024 * 1024)
    d = bounded(RawInput(big, "t/x"))
    assert d["topic"] == "t/x" and d["bytes"] == len(big) and len(d["payload"]) == PREFIX_BYTES
    assert len(d["sha256"]) == 16 and d["sha256"] == bounded(RawInput(big))["sha256"] != bounded(b"[")["sha256"]
    assert bounded(b"\xff\xfe") == {"payload": "\\xff\\xfe", "bytes": 2,
                                     "sha256": hashlib.sha256(b"\xff\xfe").hexdigest()[:16]}
    small = {"device": "d1", "v": float("nan")}
    assert bounded(small) is not small and bounded(small)["device"] == "d1"
    large = {"blob": "x" * 5000}
    assert bounded(large)["bytes"] == len(json.dumps(large, separators=(",", ":")))
    assert bounded(large)["payload"].startswith('{"blob":"xxx') and len(bounded(large)["payload"]) == PREFIX_BYTES
    cyclic: dict = {}
    cyclic["self"] = cyclic
    assert bounded(cyclic)["error"].startswith("a dict that JSON cannot hold")


def test_a_seq_or_boot_out_of_the_protocol_range_is_that_payloads_dead_letter():
    ctx = Ctx()
    ing = Ingest(ctx, "wire")
    item = '{"seq":%d,"sensor":"temp","window":"w","start":0,"end":1,"aggs":{"a":1}}'
    msg = '{"v":1,"dev":"d1","boot":%d,"kind":"results","items":[%s]}'
    for boot, seqs in ((1, [99999999999999999999999999999]), (1, [0, 2**31]), (2**31, [0])):
        d = ing.payload((msg % (boot, ",".join(item % s for s in seqs))).encode(), "mqtt t")
        assert d.records == [] and d.rejected == 1
    assert [reason for _, reason in ctx.dead] == [
        "mqtt t: items[0].seq: 99999999999999999999999999999 is out of range (0..2147483647)",
        "mqtt t: items[1].seq: 2147483648 is out of range (0..2147483647)",
        "mqtt t: boot: 2147483648 is out of range (0..2147483647)"]
    ok = (msg % (2**31 - 1, item % (2**31 - 1))).encode()
    assert len(ing.payload(ok, "t").records) == 1
    assert ctx.value("edgestream_source_missing_records_total") == 0


def test_duplicates_and_forgotten_gaps_are_logged_not_only_counted(caplog):
    from edgestream_hub.wire import MAX_GAPS

    now = [100.0]
    ctx = Ctx()
    ing = Ingest(ctx, "wire", clock=lambda: now[0])
    caplog.set_level(logging.WARNING, "edgestream.hub.source.src")
    ing.payload(wire("d1", 7, [0, 1, 2]), "t")
    ing.payload(wire("d1", 7, [1, 2]), "t")  # a resend: logged at once
    assert [r.getMessage() for r in caplog.records] == [
        "duplicates dropped: device d1: 2 records (last: boot 7, seq 2) (summarised at most every 10s)"]
    caplog.clear()
    ing.payload(wire("d1", 7, [0]), "t")  # within 10 s: held back
    assert not caplog.records
    for i in range(MAX_GAPS + 2):  # 0, 2, 4, ...: one more gap than the tracker remembers
        ing.payload(wire("d2", 1, [2 * i]), "t")
    msgs = [r.getMessage() for r in caplog.records]
    assert msgs[0].startswith("data loss: device d2: 1 record missing")
    assert msgs[1] == (f"forgot 1 sequence gap (more than {MAX_GAPS} open at once in a stream; a record that "
                       "arrives below a forgotten gap is kept unchecked): device d2: 1 gap (last: boot 1, seqs 1..1) "
                       "(summarised at most every 10s)")
    caplog.clear()
    ing.payload(wire("d2", 1, [1]), "t")
    ing.close()
    assert [r.getMessage() for r in caplog.records if "duplicates" in r.getMessage()] == [
        "duplicates dropped: device d1: 1 record (last: boot 7, seq 0) (summarised at most every 10s)"]
    v = ctx.value
    assert (v("edgestream_source_duplicates_total"), v("edgestream_source_forgotten_gaps_total"),
            v("edgestream_source_unchecked_records_total")) == (3, 1, 1)
