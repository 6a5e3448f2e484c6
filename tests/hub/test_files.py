"""File source (CSV/JSON lines, once/follow) and file sink (rotation) on real files."""

from __future__ import annotations

import json
import os

from hubtest import wait_for


def jl(path):
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_csv_once_converts_numbers_and_dead_letters_bad_rows(hub):
    (hub.tmp / "in.csv").write_text("device,temp,note\nd1,21.5,ok\nd2,22,\nd3,oops\nd4,-1,\"a,b\"\n")
    e = hub.engine("""
hub: {dead_letter: dlq}
sources: {f: {file: {path: in.csv}}}
sinks: {out: {memory: {}}, dlq: {memory: {}}}
pipelines: {p: {from: f, to: out}}
""")
    assert e.finished.wait(10)
    assert e.stop()
    assert hub.out["out"] == [{"device": "d1", "temp": 21.5, "note": "ok"}, {"device": "d2", "temp": 22, "note": None},
                              {"device": "d4", "temp": -1, "note": "a,b"}]
    assert "in.csv: line 4: 2 columns, the header has 3" in hub.out["dlq"][0]["reason"]


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
    assert "line 2: not JSON" in reasons[0] and "line 3: expected a JSON object, got list" in reasons[1]
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
    assert (hub.tmp / "out.csv").read_text() == 'a,b\n1,x\n2,\n4,"[1, 2]"\nnan,\n'
    assert "fields ['c'] are not among the CSV columns" in hub.out["dlq"][0]["reason"]
