"""File source (CSV/JSON lines, once/follow) and file sink (rotation) on real files."""

from __future__ import annotations

import json
import os

import pytest
from hubtest import read_once, wait_for
from hypothesis import given, settings, strategies as st

from edgestream_hub.components import ComponentContext
from edgestream_hub.connectors.files import FileSink, json_line_encoder
from edgestream_hub.jsonio import finite

# with each JSON engine (tests/conftest.py): the results must not depend on it
pytestmark = pytest.mark.usefixtures("json_engine")


def jl(path):
    """The lines written so far (one still being written, without its newline, waits)."""
    text = path.read_text() if path.exists() else ""
    return [json.loads(x) for x in text[:text.rfind("\n") + 1].splitlines()]


def test_csv_once_converts_numbers_and_dead_letters_bad_rows(hub):
    out, dlq = read_once(hub, "in.csv", "device,temp,note\nd1,21.5,ok\nd2,22,\nd3,oops\nd4,-1,\"a,b\"\n")
    assert out == [{"device": "d1", "temp": 21.5, "note": "ok"}, {"device": "d2", "temp": 22, "note": None},
                   {"device": "d4", "temp": -1, "note": "a,b"}]
    assert "in.csv: line 4: 2 columns, the header has 3" in dlq[0]["reason"]


def test_jsonl_follow_tails_rotation_and_truncation(hub):
    src = hub.tmp / "in.jsonl"
    src.write_text('{"i":0}\nnot json\n[1]\n{"i":1}\n{"i":')
    e = hub.engine("""
hub: {dead_letter: dlq}
sources: {f: {file: {path: in.jsonl, mode: follow, poll_interval: 10ms}}}
sinks: {out: {memory: {}}, dlq: {memory: {}}}
pipelines: {p: {from: f, to: out}}
""")
    assert wait_for(lambda: len(hub.out.get("out", [])) == 2)
    with open(src, "a") as f:
        f.write('2}\n')  # the half-written line completes
    assert wait_for(lambda: len(hub.out["out"]) == 3)
    os.rename(src, hub.tmp / "in.jsonl.1")  # rotated away
    src.write_text('{"i":3}\n')
    assert wait_for(lambda: len(hub.out["out"]) == 4)
    with open(src, "a") as f:
        f.write('{"i":4}\n')
    assert wait_for(lambda: len(hub.out["out"]) == 5)
    src.write_text('{"i":5}\n')  # truncated and rewritten in place (shorter than what was read)
    assert wait_for(lambda: len(hub.out["out"]) == 6)
    assert e.stop()
    assert [r["i"] for r in hub.out["out"]] == [0, 1, 2, 3, 4, 5]
    reasons = [d["reason"] for d in hub.out["dlq"]]
    assert "line 2: not JSON" in reasons[0] and "line 3: expected a JSON object, got an array" in reasons[1]
    assert e.metrics.value("edgestream_source_decode_errors_total", component="f") == 2


def test_file_sink_rotates_by_size_and_keeps_n(hub):
    hub.scripts["s"] = [{"i": i, "pad": "x" * 80} for i in range(200)]
    e = hub.engine("""
sources: {s: {script: {name: s, finite: true}}}
sinks: {out: {file: {path: logs/out.jsonl, rotate_size: 2KB, keep: 3}, batch: {size: 7}}}
pipelines: {p: {from: s, to: out}}
""")
    assert e.finished.wait(10)
    assert e.stop()
    rotated = sorted((hub.tmp / "logs").glob("out-*.jsonl"))
    assert len(rotated) == 3
    assert all(p.stat().st_size <= 2000 + 200 for p in rotated)
    tail = [r["i"] for p in sorted(rotated, key=lambda p: p.stat().st_mtime_ns) for r in jl(p)] + [
        r["i"] for r in jl(hub.tmp / "logs" / "out.jsonl")]
    assert tail == list(range(200 - len(tail), 200))  # the newest, in order, none lost inside the kept files


def test_file_sink_rotates_by_age(hub):
    from hubtest import PAUSE

    hub.scripts["s"] = [{"i": 0}, PAUSE, {"i": 1}]
    e = hub.engine("""
sources: {s: {script: {name: s}}}
sinks: {out: {file: {path: out.jsonl, rotate_interval: 50ms}, batch: {size: 1, linger: 0ms}}}
pipelines: {p: {from: s, to: out}}
""")
    assert wait_for(lambda: len(jl(hub.tmp / "out.jsonl")) == 1)
    import time

    time.sleep(0.1)  # let the file age past rotate_interval (not a timing assertion)
    hub.resume["s"].set()
    assert wait_for(lambda: len(jl(hub.tmp / "out.jsonl")) == 1 and jl(hub.tmp / "out.jsonl")[0]["i"] == 1)
    assert e.stop()
    (old,) = hub.tmp.glob("out-*.jsonl")
    assert jl(old) == [{"i": 0}]


def test_csv_sink_writes_a_header_and_rejects_unknown_fields(hub):
    hub.scripts["s"] = [{"a": 1, "b": "x"}, {"a": 2}, {"a": 3, "c": 9}, {"a": 4, "b": [1, 2]}, {"a": float("nan")}]
    e = hub.engine("""
hub: {dead_letter: dlq}
sources: {s: {script: {name: s, finite: true}}}
sinks: {out: {file: {path: out.csv}}, dlq: {memory: {}}}
pipelines: {p: {from: s, to: out}}
""")
    assert e.finished.wait(10)
    assert e.stop()
    assert (hub.tmp / "out.csv").read_text() == 'a,b\n1,x\n2,\n4,"[1,2]"\n,\n'  # NaN is written as null
    assert "fields ['c'] are not among the CSV columns" in hub.out["dlq"][0]["reason"]
    assert e.metrics.value("edgestream_sink_nonfinite_values_total", component="out") == 1


def test_hostile_lines_between_good_ones_are_dead_lettered_and_reading_goes_on(hub):
    from hubtest import HOSTILE_JSON

    lines = []
    for i, bad in enumerate(HOSTILE_JSON.values()):
        lines += [b'{"i": %d}' % i, bad]
    (hub.tmp / "in.jsonl").write_bytes(b"\n".join(lines + [b'{"i": 100}']) + b"\n")
    (hub.tmp / "in.csv").write_bytes(b"i,v\n1,a\n2," + b"x" * 200_000 + b"\n3,\xff\n4,nan\n5,b\n")
    e = hub.engine("""
hub: {dead_letter: dlq}
sources: {j: {file: {path: in.jsonl}}, c: {file: {path: in.csv}}}
sinks: {out: {memory: {}}, dlq: {memory: {}}}
pipelines: {pj: {from: j, to: out}, pc: {from: c, to: out}}
""")
    assert e.finished.wait(10)
    assert e.stop()
    out = hub.out["out"]
    assert [r["i"] for r in out if "v" not in r] == [*range(len(HOSTILE_JSON)), 100]
    assert [(r["i"], r["v"]) for r in out if "v" in r] == [(1, "a"), (4, "nan"), (5, "b")]  # "nan" stays text
    reasons = [d["reason"] for d in hub.out["dlq"]]
    assert len(reasons) == len(HOSTILE_JSON) + 2
    csv_reasons = [r for r in reasons if "in.csv" in r]  # the two sources race: only each one's order is fixed
    assert "in.csv: line 3: not CSV: field larger than field limit (131072)" in csv_reasons[0]  # header: line 1
    assert "in.csv: line 4: not UTF-8" in csv_reasons[1]
    assert e.metrics.value("edgestream_source_decode_errors_total", component="j") == len(HOSTILE_JSON)
    assert e.metrics.value("edgestream_source_decode_errors_total", component="c") == 2
    big = next(d["record"] for d in hub.out["dlq"] if "field larger" in d["reason"])
    assert big["bytes"] == 200_002 and len(big["payload"]) == 1024  # the start of the line, not all of it


def _source(tmp_path, name, dead, **kw):
    from edgestream_hub.connectors.files import FileSource

    cfg = dict(path=str(tmp_path / name), format="auto", mode="follow", start="beginning", poll_interval=10,
               convert=True, batch=1000, max_line=1 << 20)
    cfg.update(kw)
    ctx = ComponentContext("source", "f", "f", base_dir=str(tmp_path),
                           dead_letter=lambda comp, pl, rec, reason: dead.append((rec, reason)))
    src = FileSource(cfg, ctx)
    src.open()
    return src


def _poll_all(src, rounds=5):
    out = []
    for _ in range(rounds):
        records, wait = src.poll()
        out += records
        if wait is None:
            break
    return out


def test_follow_holds_a_quoted_multi_line_record_until_it_is_complete(tmp_path):
    f = tmp_path / "in.csv"
    f.write_bytes(b'\xef\xbb\xbfid,v\n1,a\n2,"multi')  # a BOM, and a record cut in its quoted cell
    dead: list = []
    src = _source(tmp_path, "in.csv", dead)
    assert _poll_all(src) == [{"id": 1, "v": "a"}]
    with open(f, "ab") as w:
        w.write(b'\nline')
    assert _poll_all(src) == []  # the record's quoted cell goes on: held
    with open(f, "ab") as w:
        w.write(b'"\n3,"x\ny')
    assert _poll_all(src) == [{"id": 2, "v": "multi\nline"}]
    with open(f, "ab") as w:
        w.write(b'"\n4,1_000\n')
    assert _poll_all(src) == [{"id": 3, "v": "x\ny"}, {"id": 4, "v": "1_000"}]
    with open(f, "ab") as w:
        w.write(b"5\n6,6\n")
    assert _poll_all(src) == [{"id": 6, "v": 6}]
    assert [why.split(": ", 1)[1] for _, why in dead] == ["line 8: 1 columns, the header has 2"]
    src.close()


def test_a_line_over_max_line_is_one_dead_letter_and_line_numbers_stay_right(tmp_path):
    f = tmp_path / "in.jsonl"
    f.write_bytes(b'{"i": 0}\n{"pad": "' + b"x" * 200_000 + b'"}\n{"i": 2}\n{"i": 3}\nnot json\n')
    dead: list = []
    src = _source(tmp_path, "in.jsonl", dead, mode="once", max_line=1024)
    assert [r["i"] for r in _poll_all(src, 10)] == [0, 2, 3]
    assert [why.split(": ", 1)[1] for _, why in dead] == ["line 2: longer than 1024 bytes",
                                                         "line 5: not JSON (Expecting value: line 1 column 1 (char 0))"]
    src.close()


def test_once_refuses_a_quoted_cell_left_open_at_the_end(tmp_path):
    (tmp_path / "in.csv").write_text('id,v\n1,a\n2,"never closed\n')
    dead: list = []
    src = _source(tmp_path, "in.csv", dead, mode="once")
    assert _poll_all(src) == [{"id": 1, "v": "a"}]
    assert [why.split(": ", 1)[1] for _, why in dead] == ["line 3: a quoted cell is not closed at the end of the input"]
    src.close()


def test_keep_deletes_only_the_files_its_rotation_made(tmp_path):
    mine_before = tmp_path / "r-20250101T000000-1.jsonl"  # an earlier run's rotation: the sink's own
    mine_before.write_text("{}\n")
    os.utime(mine_before, (1, 1))
    others = ["r-important.jsonl", "r-2025.jsonl", "r-20250101T000000-1.jsonl.bak", "r-20250101T000000-x.jsonl",
              "rr-20250101T000000-1.jsonl", "r-20250101T000000-1.json", "r-20250101T0000001-1.jsonl",
              "r-\u0662\u0660\u0662\u0665\u0660\u0661\u0660\u0661T000000-1.jsonl",  # Arabic-Indic digits
              "r-20250101T000000-\uff11.jsonl"]  # a full-width 1
    for name in others:
        (tmp_path / name).write_text("precious\n")
        os.utime(tmp_path / name, (1, 1))  # older than anything the sink writes
    s = _sink(tmp_path, "r.jsonl", rotate_size=2000, keep=1)
    for i in range(20):
        s.write([{"i": i, "pad": "x" * 200} for _ in range(5)])
    s.close()
    for name in others:
        assert (tmp_path / name).read_text() == "precious\n", name
    rotated = s.rotated()
    assert len(rotated) == 1 and not mine_before.exists()


def _records_in(paths):
    return [r["i"] for p in paths for r in jl(p)]


def test_keep_follows_the_order_of_rotation_not_the_clock(tmp_path, monkeypatch):
    """A rotation stamped in the future (a gateway whose clock went back since) is still the oldest:
    each new rotation survives, and what is kept is the newest records."""
    future = tmp_path / "out-20991231T000000-1.jsonl"
    future.write_text('{"i": -1}\n')
    s = _sink(tmp_path, rotate_size=2000, keep=2)
    for b in range(30):
        s.write([{"i": 10 * b + k, "pad": "x" * 50} for k in range(10)])
    s.close()
    rotated = s.rotated()
    assert len(rotated) == 2 and future not in rotated and not future.exists()
    got = _records_in([*rotated, tmp_path / "out.jsonl"])
    assert got == list(range(300 - len(got), 300)) and len(got) > 40  # the newest, in order, nothing between lost


def test_keep_is_exact_across_a_restart_with_the_clock_set_back(tmp_path, monkeypatch):
    import time as _time

    from edgestream_hub.connectors import files

    def run(year: int, first: int) -> FileSink:
        monkeypatch.setattr(files.time, "gmtime", lambda *a: _time.struct_time((year, 1, 1, 0, 0, 0, 0, 1, 0)))
        s = _sink(tmp_path, rotate_size=500, keep=3)
        for i in range(first, first + 40):
            s.write([{"i": i, "pad": "x" * 100}])
        s.close()
        return s

    run(2030, 0)
    s = run(2001, 40)  # restarted after the clock went back 29 years
    got = _records_in([*s.rotated(), tmp_path / "out.jsonl"])
    assert got == list(range(80 - len(got), 80)) and len(s.rotated()) == 3


def test_a_failed_delete_is_logged_once_and_writing_goes_on(tmp_path, caplog, monkeypatch):
    """Something in the way of pruning (a folder named like a rotation, a file that cannot be deleted) is
    never a reason to stop writing."""
    from pathlib import Path

    (tmp_path / "out-20000101T000000-1.jsonl").mkdir()  # a folder: not a rotation of the sink's
    (tmp_path / "out-20000101T000000-1.jsonl" / "inner").write_text("x")
    stuck = tmp_path / "out-20000101T000000-2.jsonl"
    stuck.write_text("{}\n")
    real_unlink = Path.unlink

    def unlink(self, missing_ok=False):
        if self == stuck:
            raise PermissionError(13, "Permission denied", str(self))
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    s = _sink(tmp_path, rotate_size=2000, keep=1)
    for b in range(30):
        assert s.write([{"i": 10 * b + k, "pad": "x" * 50} for k in range(10)]) == []
    s.close()
    assert (tmp_path / "out-20000101T000000-1.jsonl" / "inner").read_text() == "x"
    kept = [p for p in s.rotated() if p != stuck]
    assert len(kept) == 1 and stuck.exists()
    got = _records_in([*kept, tmp_path / "out.jsonl"])
    assert got == list(range(300 - len(got), 300))
    said = [r for r in caplog.records if "cannot delete" in r.getMessage()]
    assert len(said) == 1 and said[0].levelname == "ERROR" and str(stuck) in said[0].getMessage()


def test_a_stop_out_of_time_counts_the_batch_a_failing_sink_abandoned(hub, caplog):
    hub.scripts["s"] = [{"i": i} for i in range(300)]
    e = hub.engine("""
sources: {s: {script: {name: s, batch: 300, finite: true}}}
sinks: {out: {memory: {fail_first: 1000000}, batch: {size: 1000}, retry: {initial: 10ms, max: 10ms}}}
pipelines: {p: {from: s, to: out, batch: {size: 1000}}}
""")
    assert wait_for(lambda: e.sinks["out"].failing)
    with caplog.at_level("ERROR", logger="edgestream.hub"):
        assert not e.stop(0.3)
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("stop: ")]
    assert said == ["stop: 300 records were not drained within 0.3s"]
    assert e.metrics.value("edgestream_sink_dropped_records_total", component="out") == 300


def test_a_file_sink_that_takes_dead_letters_is_bounded_by_default(hub):
    e = hub.engine("""
hub: {dead_letter: dlq}
sources: {s: {script: {name: s}}}
sinks:
  out: {file: {path: out.jsonl}}
  dlq: {file: {path: dead.jsonl}}
  chosen: {file: {path: chosen.jsonl, rotate_size: 1MB}}
  plain: {file: {path: plain.jsonl}}
pipelines: {p: {from: s, to: [out, plain], dead_letter: chosen}}
""")
    bound = {n: (r.sink.rotate_size, r.sink.keep) for n, r in e.sinks.items()}
    assert bound == {"out": (None, 0), "dlq": (10 * 1024 * 1024, 5), "chosen": (1_000_000, 0), "plain": (None, 0)}
    assert e.stop()


def test_dead_letters_with_non_finite_numbers_are_written_with_null(hub):
    hub.scripts["s"] = [{"v": float("nan"), "reject": True}, {"v": 1}]
    e = hub.engine("""
hub: {dead_letter: dlq}
sources: {s: {script: {name: s, finite: true}}}
sinks: {out: {memory: {}}, dlq: {file: {path: dead.jsonl}}}
pipelines: {p: {from: s, to: out}}
""")
    assert e.finished.wait(10)
    assert e.stop()
    (d,) = jl(hub.tmp / "dead.jsonl")
    assert d["record"] == {"v": None, "reject": True} and "asked to be rejected" in d["reason"]
    assert e.metrics.value("edgestream_sink_nonfinite_values_total", component="dlq") == 1


def test_a_dead_letter_is_never_lost_for_its_encoding(hub, caplog):
    """A record holding a lone surrogate (no UTF-8 writer can encode it) made by a plugin: its sink rejects
    it, and the dead-letter file sink writes it, escaped, instead of losing it."""
    hub.scripts["s"] = [{"s": "a\ud800b", "\udfff": 1}, {"v": 1}]
    e = hub.engine("""
hub: {dead_letter: dlq}
sources: {s: {script: {name: s, finite: true}}}
sinks: {out: {file: {path: out.jsonl}}, dlq: {file: {path: dead.jsonl}}}
pipelines: {p: {from: s, to: out}}
""")
    assert e.finished.wait(10)
    assert e.stop()
    assert jl(hub.tmp / "out.jsonl") == [{"v": 1}]
    (d,) = jl(hub.tmp / "dead.jsonl")
    assert d["record"] == {"s": "a\\ud800b", "\\udfff": 1} and "surrogate" in d["reason"]
    assert "\\ud800" in d["reason"]  # the reason quotes it escaped too
    assert not [r for r in caplog.records if "rejected a record" in r.getMessage()]


# -- the file sink's batch encoder must write exactly what json.dumps writes --
_SINK_DEFAULTS = {"format": "auto", "columns": None, "rotate_size": None, "rotate_interval": None, "keep": 0,
                  "fsync": False}


def _sink(tmp_path, name="out.jsonl", **kw) -> FileSink:
    s = FileSink(dict(_SINK_DEFAULTS, path=str(tmp_path / name), **kw),
                 ComponentContext("sink", "out", "out", base_dir=str(tmp_path)))
    s.open()
    return s


def _reference(r):
    """What the sink must write for r, or None if r must be rejected (json.dumps and UTF-8 decide,
    after non-finite numbers became null)."""
    try:
        return (json.dumps(finite(r)[0], separators=(",", ":"), allow_nan=False, ensure_ascii=False)
                + "\n").encode("utf-8")
    except (TypeError, ValueError):
        return None


_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=6),
                  st.sampled_from(["\ud800", "é\u2028\"\\", "a\nb"]))
_records = st.dictionaries(st.text(max_size=4), st.recursive(
    _leaf, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3), max_leaves=8),
    max_size=5)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(_records, st.integers()), max_size=12))
def test_jsonl_batches_write_what_json_dumps_writes_and_reject_only_bad_records(tmp_path_factory, batch):
    tmp = tmp_path_factory.mktemp("sink")
    s = _sink(tmp)
    rejected = s.write(batch)
    s.close()
    want = [_reference(r) if isinstance(r, dict) else None for r in batch]
    assert (tmp / "out.jsonl").read_bytes() == b"".join(w for w in want if w is not None)
    assert [id(r) for r, _ in rejected] == [id(r) for r, w in zip(batch, want) if w is None]
    assert all(reason.startswith("file sink out: ") for _, reason in rejected)


def test_one_bad_record_does_not_cost_its_batch(tmp_path):
    cyclic: dict = {"i": "loop"}
    cyclic["self"] = cyclic
    batch: list = [{"i": 0}, {"i": float("nan")}, {"i": 2, "s": "\udcff"}, "not a record", cyclic,
                   {"i": 5, "x": {1, 2}}, {"i": 6, "t": "żółw"}]
    s = _sink(tmp_path)
    rejected = s.write(batch)
    s.close()
    assert jl(tmp_path / "out.jsonl") == [{"i": 0}, {"i": None}, {"i": 6, "t": "żółw"}]  # NaN is written as null
    reasons = [reason for _, reason in rejected]
    assert len(reasons) == 4
    assert "surrogate" in reasons[0] and "expected a record" in reasons[1]
    assert "Circular reference" in reasons[2] and "set is not JSON serializable" in reasons[3]


def test_the_encoder_forgets_a_failed_record():
    """A failed encode leaves cycle markers behind; reset() clears them so the next record is fine."""
    encode, reset = json_line_encoder()
    inner = {"v": float("inf")}
    outer = {"inner": inner}
    try:
        encode(outer)
    except ValueError:
        reset()
    else:
        raise AssertionError("inf was encoded")
    inner["v"] = 1.5
    assert "".join(encode(outer)) == '{"inner":{"v":1.5}}'


def test_size_rotation_splits_a_batch_where_the_file_fills(tmp_path):
    s = _sink(tmp_path, rotate_size=1000)
    s.write([{"i": i, "pad": "x" * 40} for i in range(10)])  # ~500 bytes: one write, no rotation
    assert not list(tmp_path.glob("out-*.jsonl"))
    s.write([{"i": i, "pad": "x" * 40} for i in range(10, 40)])  # crosses 1000 bytes on the way
    s.close()
    rotated = sorted(tmp_path.glob("out-*.jsonl"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))  # out-<time>-<n>
    assert rotated and all(p.stat().st_size < 1000 + 60 for p in rotated)
    got = [r["i"] for p in rotated for r in jl(p)] + [r["i"] for r in jl(tmp_path / "out.jsonl")]
    assert got == list(range(40))


@settings(max_examples=150, deadline=None)
@given(_records)
def test_the_ascii_encoder_the_mqtt_sink_uses_matches_json_dumps(r):
    encode, reset = json_line_encoder(ensure_ascii=True)
    try:
        want = json.dumps(r, separators=(",", ":"), allow_nan=False)
    except ValueError:
        want = None
    try:
        got = "".join(encode(r))
    except ValueError:
        reset()
        got = None
    assert got == want
