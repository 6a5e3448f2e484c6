"""``edgestream sql`` end to end: streaming input, merge order, bad input, strict JSON output, stream names."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st
from ttytest import run_with_pty_stderr

from edgestream_hub.api import SimpleContext
from edgestream_hub.sql.cli import interleave, merge_by_time
from edgestream_hub.sql.processor import SqlProcessor
from edgestream_tools.cli import main

# every test here runs with each JSON engine (tests/conftest.py): the outputs must not depend on it
pytestmark = pytest.mark.usefixtures("json_engine")

CLI = [sys.executable, "-m", "edgestream_tools.cli", "sql"]
JOIN = "SELECT a.id, a.v, b.w FROM a JOIN b ON a.id = b.id GROUP BY TUMBLINGWINDOW(ss, 1)"


def jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def rows(text: str) -> list:
    return [json.loads(line) for line in text.splitlines()]


def sql(capsys, *args: str) -> tuple[int, Any, str]:
    rc = main(["sql", *args])
    cap = capsys.readouterr()
    return rc, rows(cap.out) if rc == 0 else cap.out, cap.err


# -- 1. streaming -------------------------------------------------------------------
def read_line(stream, deadline: float) -> bytes:
    """One line from a pipe, or b"" once the deadline passes (bounded wait)."""
    buf = b""
    while not buf.endswith(b"\n") and time.monotonic() < deadline:
        ready, _, _ = select.select([stream], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(stream.fileno(), 1)
        if not chunk:
            break
        buf += chunk
    return buf


def test_stdin_is_streamed_results_come_out_as_records_arrive():
    p = subprocess.Popen(CLI + ["SELECT id, count(*) AS n FROM s GROUP BY id, TUMBLINGWINDOW(ss, 1)", "--input", "s=-"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdin is not None
    try:
        for ts in (10, 20, 1500):  # the third record closes the first window
            p.stdin.write((json.dumps({"id": "a", "ts": ts}) + "\n").encode())
        p.stdin.flush()
        first = read_line(p.stdout, time.monotonic() + 30)
        assert json.loads(first) == {"id": "a", "n": 2}  # while stdin is still open
        out, err = p.communicate(timeout=30)  # closes stdin: end of input
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, err
    assert rows(out.decode()) == [{"id": "a", "n": 1}]


def test_stdin_and_a_file_give_the_same_rows(tmp_path, capsys):
    recs = [{"id": f"d{i % 3}", "ts": i * 7, "v": i} for i in range(5000)]
    path = jsonl(tmp_path / "s.jsonl", recs)
    q = "SELECT id, count(*) AS n, sum(v) AS sv FROM s GROUP BY id, TUMBLINGWINDOW(ss, 2)"
    piped = subprocess.run(CLI + [q, "--input", "s=-"], input=path.read_bytes(), capture_output=True, timeout=60)
    assert piped.returncode == 0, piped.stderr
    rc, from_file, _ = sql(capsys, q, "--input", f"s={path}")
    assert rc == 0 and rows(piped.stdout.decode()) == from_file and len(from_file) == 18 * 3


# -- 2. several inputs: merged incrementally by event time ---------------------------
def hub_order(streams: dict[str, list]) -> list:
    """The records as a hub pipeline receives them from sources that send each file in its order.

    A record arrives when its source's clock (the largest time it has sent)
    reaches it: a record late in its own file arrives late, right after the
    record it follows.
    """
    arrivals = []
    for i, (name, recs) in enumerate(streams.items()):
        clock = float("-inf")
        for j, r in enumerate(recs):
            t = r.get("ts")
            if isinstance(t, int):
                clock = max(clock, t)
            arrivals.append((clock, i, j, dict(r, _stream=name)))
    return [r for *_, r in sorted(arrivals, key=lambda x: x[:3])]


def in_the_hub(query: str, streams: dict[str, list]) -> tuple[list, SimpleContext]:
    ctx = SimpleContext()
    proc = SqlProcessor(query, ctx)
    out: list = []
    for rec in hub_order(streams):  # one record per batch: arrival by arrival
        out += proc.process([rec], 0)
    return out + proc.flush(), ctx


def test_a_record_late_in_its_own_file_is_late(tmp_path, capsys):
    a = jsonl(tmp_path / "a.jsonl", [{"id": "k", "ts": 0, "v": 1}, {"id": "k", "ts": 2500, "v": 2},
                                     {"id": "k", "ts": 500, "v": 3}])
    b = jsonl(tmp_path / "b.jsonl", [{"id": "k", "ts": 100, "w": 10}, {"id": "k", "ts": 2600, "w": 20}])
    late = tmp_path / "late.jsonl"
    rc, got, err = sql(capsys, JOIN, "--input", f"a={a}", "--input", f"b={b}", "--late-records", str(late))
    assert rc == 0, err
    assert got == [{"id": "k", "v": 1, "w": 10}, {"id": "k", "v": 2, "w": 20}]
    assert rows(late.read_text()) == [{"id": "k", "ts": 500, "v": 3, "_stream": "a"}]
    assert "1 late" in err


def test_iso_8601_timestamps_merge_in_time_order(tmp_path, capsys):
    a = jsonl(tmp_path / "a.jsonl", [{"id": "k", "ts": "1970-01-01T00:00:05Z", "v": 1},
                                     {"id": "k", "ts": "1970-01-01T00:00:06.500+00:00", "v": 2}])
    b = jsonl(tmp_path / "b.jsonl", [{"id": "k", "ts": 1000, "w": 10}, {"id": "k", "ts": 5500, "w": 20},
                                     {"id": "k", "ts": 6900, "w": 30}])
    late = tmp_path / "late.jsonl"
    rc, got, err = sql(capsys, JOIN, "--input", f"a={a}", "--input", f"b={b}", "--late-records", str(late))
    assert rc == 0, err
    assert got == [{"id": "k", "v": 1, "w": 20}, {"id": "k", "v": 2, "w": 30}]
    assert late.read_text() == "" and err == ""
    merged = merge_by_time([("a", rows(a.read_text())), ("b", rows(b.read_text()))], "ts")
    assert [(r["_stream"], r.get("v", r.get("w"))) for r in merged] == [
        ("b", 10), ("a", 1), ("b", 20), ("a", 2), ("b", 30)]


def test_a_record_without_a_usable_time_goes_out_at_once_and_is_dead_lettered(tmp_path, capsys):
    a = jsonl(tmp_path / "a.jsonl", [{"id": "k", "ts": 3000, "v": 1}, {"id": "k", "ts": "soon", "v": 2},
                                     {"id": "k", "v": 3}])
    b = jsonl(tmp_path / "b.jsonl", [{"id": "k", "ts": 3100, "w": 1}])
    assert [r.get("v", r.get("w")) for r in merge_by_time(
        [("a", rows(a.read_text())), ("b", rows(b.read_text()))], "ts")] == [1, 2, 3, 1]
    dead = tmp_path / "dead.jsonl"
    rc, got, err = sql(capsys, JOIN, "--input", f"a={a}", "--input", f"b={b}", "--dead-letters", str(dead))
    assert rc == 0 and got == [{"id": "k", "v": 1, "w": 1}]
    assert [d["reason"] for d in rows(dead.read_text())] == ["bad timestamp 'soon': expected epoch milliseconds",
                                                               "missing timestamp"]


JOIN_QUERIES = [
    JOIN,
    "SELECT a.id, count(*) AS n, sum(b.w) AS sw FROM a LEFT JOIN b ON a.id = b.id GROUP BY a.id, TUMBLINGWINDOW(ss, 1)",
    "SELECT a.id, b.w FROM a JOIN b ON a.id = b.id GROUP BY HOPPINGWINDOW(ss, 2, 1)",
]


def stream(name_field: str) -> st.SearchStrategy:
    rec = st.fixed_dictionaries({"id": st.sampled_from(["x", "y"]), "ts": st.integers(0, 6000),
                                 name_field: st.integers(0, 9)})
    return st.lists(rec, max_size=12).map(lambda rs: rs + [{"id": "x", "ts": "bad", name_field: 0}][:len(rs) % 2])


@settings(max_examples=40)
@given(st.sampled_from(JOIN_QUERIES), stream("v"), stream("w"))
def test_a_join_gives_what_the_hub_gives_on_the_same_records(tmp_path_factory, query, a, b):
    tmp = tmp_path_factory.mktemp("join")
    hub_rows, ctx = in_the_hub(query, {"a": a, "b": b})
    late, dead = tmp / "late.jsonl", tmp / "dead.jsonl"
    args = ["sql", query, "--input", f"a={jsonl(tmp / 'a.jsonl', a)}", "--input", f"b={jsonl(tmp / 'b.jsonl', b)}",
            "--late-records", str(late), "--dead-letters", str(dead)]
    out_path = tmp / "out.jsonl"
    with open(out_path, "w") as out:
        saved, sys.stdout = sys.stdout, out
        try:
            assert main(args) == 0
        finally:
            sys.stdout = saved
    assert rows(out_path.read_text()) == hub_rows
    assert rows(late.read_text()) == ctx.late_records
    assert [d["reason"] for d in rows(dead.read_text())] == [reason for _, reason in ctx.dead]


# -- 3. text: UTF-8 and byte-order marks ----------------------------------------------
def test_invalid_utf8_in_jsonl_exits_2_naming_the_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"ts": 1, "v": "ok"}\n\n{"ts": 2, "v": "\xff"}\n{"ts": 3}\n')
    rc, out, err = sql(capsys, "SELECT * FROM s", "--input", f"s={bad}")
    assert rc == 2 and out == ""
    assert f"edgestream sql: cannot read --input s={bad}: line 3: not UTF-8 text" in err


def test_invalid_utf8_in_csv_names_the_line_too(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"ts,v\n1,a\n2,\xe9t\xe9\n")
    rc, _, err = sql(capsys, "SELECT * FROM s", "--input", f"s={bad}")
    assert rc == 2 and f"cannot read --input s={bad}: line 3: not UTF-8 text" in err


@pytest.mark.parametrize("name,text", [("s.jsonl", '{"ts": 1, "v": 1}\n{"ts": 2, "v": 2}\n'),
                                       ("s.csv", "ts,v\n1,1\n2,2\n")])
def test_a_byte_order_mark_is_accepted(tmp_path, capsys, name, text):
    path = tmp_path / name
    path.write_bytes("\ufeff".encode() + text.encode())
    rc, got, err = sql(capsys, "SELECT ts, v FROM s", "--input", f"s={path}")
    assert rc == 0 and got == [{"ts": 1, "v": 1}, {"ts": 2, "v": 2}] and err == ""


# -- 4. strict JSON in and out --------------------------------------------------------
def test_rows_and_output_files_hold_no_nan_or_infinity_tokens(tmp_path, capsys):
    # sum() of two 1e308 overflows to infinity inside the query: written as null, counted once;
    # 1e400 is valid JSON text beyond a float's range: refused at ingest as its line's dead letter
    s = tmp_path / "s.jsonl"
    s.write_text('{"id": "a", "ts": 1000, "v": 1e308}\n{"id": "a", "ts": 1001, "v": 1e308}\n'
                 '{"id": "a", "ts": 2500, "v": 1}\n{"id": "a", "ts": 10, "v": 2}\n'
                 '{"id": "a", "ts": 2600, "v": -1e400}\n')
    dead, late = tmp_path / "dead.jsonl", tmp_path / "late.jsonl"
    rc, got, err = sql(capsys, "SELECT id, sum(v) AS s FROM s GROUP BY id, TUMBLINGWINDOW(ss, 1)",
                       "--input", f"s={s}", "--dead-letters", str(dead), "--late-records", str(late))
    assert rc == 0
    assert got == [{"id": "a", "s": None}, {"id": "a", "s": 1}]
    assert rows(late.read_text()) == [{"id": "a", "ts": 10, "v": 2}]
    assert "-1e400 is out of range" in rows(dead.read_text())[0]["reason"]
    for text in (late.read_text(), dead.read_text()):
        assert "Infinity" not in text and "NaN" not in text
    assert err.count("non-finite") == 1 and "1 non-finite number(s) (NaN or infinity) written as null" in err


def test_non_json_numbers_and_deep_nesting_are_that_lines_dead_letter(tmp_path, capsys):
    s = tmp_path / "s.jsonl"
    s.write_text('{"ts": 1, "v": 1}\n{"ts": 2, "v": NaN}\n{"ts": 3, "v": -Infinity}\n'
                 '{"ts": 4, "v": ' + "[" * 100_000 + "]" * 100_000 + '}\n{"ts": 5, "v": 5}\n')
    dead = tmp_path / "dead.jsonl"
    rc, got, err = sql(capsys, "SELECT ts, v FROM s", "--input", f"s={s}", "--dead-letters", str(dead))
    assert rc == 0 and got == [{"ts": 1, "v": 1}, {"ts": 5, "v": 5}]
    reasons = [d["reason"] for d in rows(dead.read_text())]
    assert reasons[0].startswith(f"{s}:2: bad JSON: NaN is not a JSON number")
    assert reasons[1].startswith(f"{s}:3: bad JSON: -Infinity is not a JSON number")
    assert reasons[2] == f"{s}:4: bad JSON: JSON nested too deeply"
    assert "3 record(s) dead-lettered" in err


# -- 5. stream names ------------------------------------------------------------------
@pytest.mark.parametrize("query,inputs,message", [
    ("SELECT * FROM devicez", ["s"],
     "the query reads stream 'devicez' but no --input gives it (given: s); did you mean 's'?"),
    ("SELECT * FROM devicez", ["devices", "rooms"],
     "the query reads stream 'devicez' but no --input gives it (given: devices, rooms); did you mean 'devices'?"),
    ("SELECT * FROM devices", ["devices", "devicez"],
     "--input devicez is not a stream of the query (it reads: devices)"),
    (JOIN, ["a", "c"], "the query reads stream 'b' but no --input gives it (given: a, c); did you mean 'c'?"),
    (JOIN, ["a", "b", "bb"], "--input bb is not a stream of the query (it reads: a, b)"),
])
def test_streams_and_inputs_must_match(tmp_path, capsys, query, inputs, message):
    path = jsonl(tmp_path / "s.jsonl", [{"ts": 1}])
    args = [x for name in inputs for x in ("--input", f"{name}={path}")]
    rc, out, err = sql(capsys, query, *args)
    assert rc == 2 and out == ""
    assert err == f"edgestream sql: {message}\n"


def test_an_input_given_twice_or_two_stdins_is_refused(tmp_path, capsys):
    path = jsonl(tmp_path / "s.jsonl", [{"ts": 1}])
    rc, _, err = sql(capsys, "SELECT * FROM s", "--input", f"s={path}", "--input", f"s={path}")
    assert rc == 2 and "--input s is given 2 times" in err
    rc, _, err = sql(capsys, JOIN, "--input", "a=-", "--input", "b=-")
    assert rc == 2 and "only one --input can read stdin" in err


# -- 8. progress ------------------------------------------------------------------------
def test_progress_shows_on_a_terminal_and_is_cleared(tmp_path):
    path = jsonl(tmp_path / "s.jsonl", [{"id": "a", "ts": i} for i in range(20_000)])
    rc, tty = run_with_pty_stderr(CLI + ["SELECT count(*) AS n FROM s GROUP BY TUMBLINGWINDOW(ss, 1)",
                                         "--input", f"s={path}"])
    assert rc == 0
    text = tty.decode()
    assert "edgestream sql: 1,000 records, " in text and "/s, " in text and "%" in text
    assert text.endswith("\r\x1b[K")  # the line is cleared at the end


def test_no_progress_when_stderr_is_not_a_terminal(tmp_path):
    path = jsonl(tmp_path / "s.jsonl", [{"id": "a", "ts": i} for i in range(20_000)])
    p = subprocess.run(CLI + ["SELECT count(*) AS n FROM s GROUP BY TUMBLINGWINDOW(ss, 1)", "--input", f"s={path}"],
                       capture_output=True, timeout=60)
    assert p.returncode == 0 and p.stderr == b""
    assert len(p.stdout.splitlines()) == 20


# -- inputs without a time field -----------------------------------------------------------
UNTIMED = [{"id": f"d{i % 3}", "v": i} for i in range(2500)]  # more than one batch


def test_a_file_without_timestamps_says_how_to_run_it(tmp_path, capsys):
    path = jsonl(tmp_path / "s.jsonl", UNTIMED)
    rc, got, err = sql(capsys, "SELECT id, v FROM s", "--input", f"s={path}")
    assert rc == 0 and got == []
    assert "2500 record(s) dead-lettered" in err
    # the first dead letters are shown as in every other run
    assert err.count("  dead letter: missing timestamp: ") == 5 and '{"id":"d0","v":0}' in err
    assert err.endswith("edgestream sql: no record had a 'ts' field: name the time field with --time-field NAME, "
                        "or use --processing-time\n")
    rc, _, err = sql(capsys, "SELECT id, v FROM s", "--input", f"s={path}", "--time-field", "at")
    assert "no record had a 'at' field" in err


def test_no_hint_when_some_records_have_the_time_field(tmp_path, capsys):
    path = jsonl(tmp_path / "s.jsonl", [{"id": "a", "ts": 1}, {"id": "b"}])
    rc, got, err = sql(capsys, "SELECT id FROM s", "--input", f"s={path}")
    assert rc == 0 and got == [{"id": "a"}]
    assert "1 record(s) dead-lettered" in err and "--processing-time" not in err


def test_processing_time_times_records_as_they_are_read(tmp_path, capsys):
    path = jsonl(tmp_path / "s.jsonl", UNTIMED)
    rc, got, err = sql(capsys, "SELECT id, v FROM s", "--input", f"s={path}", "--processing-time")
    assert rc == 0 and err == ""
    assert got == [{"id": r["id"], "v": r["v"]} for r in UNTIMED]
    before = int(time.time() * 1000)
    rc, got, err = sql(capsys, "SELECT id, count(*) AS n, sum(v) AS sv, window_end() AS we FROM s "
                               "GROUP BY id, TUMBLINGWINDOW(ss, 10)", "--input", f"s={path}", "--processing-time")
    after = int(time.time() * 1000)
    assert rc == 0 and err == ""
    # every window still open at the end of input is flushed: each record counted once, in windows of the run
    assert sum(r["n"] for r in got) == 2500 and sum(r["sv"] for r in got) == sum(range(2500))
    assert all(before < r["we"] <= after + 10_000 for r in got)
    assert [r["we"] for r in got] == sorted(r["we"] for r in got)


def test_processing_time_reads_several_inputs_in_turn(tmp_path, capsys):
    a = jsonl(tmp_path / "a.jsonl", [{"k": 1, "v": i} for i in range(3)])
    b = jsonl(tmp_path / "b.jsonl", [{"k": 1, "w": "x"}])
    rc, got, err = sql(capsys, "SELECT a.v, b.w FROM a JOIN b ON a.k = b.k GROUP BY TUMBLINGWINDOW(dd, 1)",
                       "--input", f"a={a}", "--input", f"b={b}", "--processing-time")
    assert rc == 0 and err == ""
    assert got == [{"v": i, "w": "x"} for i in range(3)]  # one batch: one time, one window
    merged = interleave([("a", rows(a.read_text())), ("b", rows(b.read_text()))])
    assert [(r["_stream"], r.get("v", r.get("w"))) for r in merged] == [("a", 0), ("b", "x"), ("a", 1), ("a", 2)]


def test_processing_time_and_a_time_field_exclude_each_other(tmp_path, capsys):
    path = jsonl(tmp_path / "s.jsonl", UNTIMED[:1])
    rc, out, err = sql(capsys, "SELECT id FROM s", "--input", f"s={path}", "--processing-time", "--time-field", "ts")
    assert rc == 2 and "--time-field and --processing-time exclude each other" in err


def test_lines_cut_across_reads_are_read_whole_and_numbered(tmp_path, monkeypatch):
    """The reader parses a read's lines together: lines cut off at the end of a read, blank lines (Unicode
    whitespace too), bad lines and values that are not objects keep their own line numbers in every read."""
    from edgestream_hub.sql.tables import InputError, RecordReader

    monkeypatch.setattr(RecordReader, "CHUNK", 7)  # most lines span several reads
    lines = ['{"v": 1}', "", "  \u00a0 ", '{"v": 2, "s": "\u00e9\u6f22"}', "NaN", "[1]", '{"v": 3}\r', "5",
             '{"v": ' + "9" * 25 + "}", '{"v": 4}']
    path = tmp_path / "in.jsonl"
    path.write_bytes("\ufeff".encode() + "\n".join(lines).encode())  # no newline after the last line
    bad: list[str] = []
    got = list(RecordReader(path, lambda raw, why: bad.append(why)))
    assert got == [{"v": 1}, {"v": 2, "s": "\u00e9\u6f22"}, {"v": 3}, {"v": int("9" * 25)}, {"v": 4}]
    assert [b.split(": ", 1)[0] for b in bad] == [f"{path}:5", f"{path}:6", f"{path}:8"]
    path.write_bytes(b'{"v": 1}\n{"v": 2}\n{"v": "\xff"}\n{"v": 4}\n')
    with pytest.raises(InputError, match="not UTF-8 text") as e:
        list(RecordReader(path))
    assert e.value.line_number == 3

