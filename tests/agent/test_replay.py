"""`edgestream agent replay`: the real pipeline on a recorded file, under both runtimes.

Checks that MicroPython (the real binary, board heaps) and CPython print the
same bytes, that results agree with a naive float model of the spec
(tests/agent/naive.py), that bad lines are reported with their line number,
counted and skipped, and a hypothesis differential test of random configs.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import naive
from edgestream_agent.config import validate
from edgestream_agent.replay import Replay, fmt
from edgestream_tools import cli

HOST_ONLY = True
DATA = Path(__file__).parent / "data"
CONFIG = DATA / "replay_agent.json"
SAMPLES = DATA / "replay_samples.jsonl"


def replay_cli(capsys, *args: str) -> tuple[int, str, str]:
    rc = cli.main(["agent", "replay", "--config", str(CONFIG), "--input", str(SAMPLES), *args])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def cpython_output() -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    cfg = validate(json.loads(CONFIG.read_text()))
    with SAMPLES.open() as f:
        Replay(cfg, out, err).run(f)
    return out.getvalue(), err.getvalue()


def test_both_runtimes_print_identical_results(capsys, cpython_output):
    rc_mp, out_mp, err_mp = replay_cli(capsys)  # default: micropython, esp32 heap
    rc_cp, out_cp, err_cp = replay_cli(capsys, "--runtime", "cpython")
    rc_tiny, out_tiny, _ = replay_cli(capsys, "--board", "tiny")
    assert rc_mp == rc_cp == rc_tiny == 0
    assert out_mp == out_cp == out_tiny == cpython_output[0]
    # micropython ends with the heap it used: "replay: heap used N, free M bytes"
    *err_lines, heap = err_mp.splitlines(keepends=True)
    assert "".join(err_lines) == err_cp
    used, free = map(int, re.fullmatch(r"replay: heap used (\d+), free (\d+) bytes\n", heap).groups())
    assert 90 * 1024 < used + free <= 100 * 1024
    assert len(out_mp.splitlines()) > 100


def test_bad_lines_are_reported_counted_and_skipped(cpython_output):
    out, err = cpython_output
    lines = err.splitlines()
    assert lines[:5] == [
        "line 11: missing key 'value'",
        "line 21: not valid JSON",
        "line 31: t: 1 is before the previous sample of 'temp' (t=11300); samples of a sensor must be in time order",
        'line 41: sensor: "pressure" is not in the config (sensors: temp, flow)',
        'line 51: value: expected a finite number, got "warm"',
    ]
    assert lines[-1] == "replay: 726 lines, 720 samples, %d results, 5 bad lines" % len(out.splitlines())


def _grouped(rows):
    g: dict = {}
    for r in rows:
        g.setdefault((r["sensor"], r["window"]), []).append(r)
    return g


def _close(a, b, tol):
    return abs(a - b) <= tol * max(1.0, abs(b))


def test_results_match_a_naive_model_of_the_spec(cpython_output):
    cfg = validate(json.loads(CONFIG.read_text()))
    samples: dict = {}
    for line in SAMPLES.read_text().splitlines():
        try:
            r = json.loads(line)
            t, s, v = r["t"], r["sensor"], r["value"]
        except (ValueError, KeyError):
            continue
        if s in ("temp", "flow") and isinstance(v, (int, float)) and (not samples.get(s) or t >= samples[s][-1][0]):
            samples.setdefault(s, []).append((t, v))
    got = _grouped(json.loads(line) for line in cpython_output[0].splitlines())
    checked = 0
    for s in cfg["sensors"]:
        filtered = naive.run_filters(s["filters"], samples[s["name"]])
        for w in s["windows"]:
            want = naive.run_window(w, filtered)
            have = got[(s["name"], w["name"])]
            assert [(r["start"], r["end"]) for r in have] == [(a, b) for a, b, _ in want], w["name"]
            for r, (_, _, aggs) in zip(have, want):
                for k, v in aggs.items():
                    assert _close(r[k], v, 1e-9), (w["name"], r, aggs)
                    checked += 1
    assert checked > 500


def test_stdin_input_and_errors(capsys, tmp_path, monkeypatch):
    # "-" reads stdin, streamed into micropython
    proc = subprocess.run(
        [sys.executable, "-m", "edgestream_tools.cli", "agent", "replay", "--config", str(CONFIG), "--input", "-"],
        input=SAMPLES.read_bytes(), capture_output=True, timeout=120,
    )
    assert proc.returncode == 0
    rc, out, _ = replay_cli(capsys, "--runtime", "cpython")
    assert proc.stdout.decode() == out
    bad = tmp_path / "agent.json"
    bad.write_text('{"sensors": [{"name": "a", "windows": [{"size_ms": 0}]}]}')
    assert cli.main(["agent", "replay", "--config", str(bad), "--input", str(SAMPLES)]) == 2
    assert f"config {bad}: sensors[0].windows[0].size_ms: must be > 0" in capsys.readouterr().err
    assert cli.main(["agent", "replay", "--config", str(CONFIG), "--input", str(tmp_path / "nope")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_a_config_the_board_cannot_start_is_refused_with_what_takes_the_memory(capsys, tmp_path):
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"sensors": [{"name": f"s{i}", "windows": [
        {"size": 4000, "every": 1, "aggregates": ["min", "max"]}]} for i in range(8)]}))
    rc = cli.main(["agent", "replay", "--config", str(big), "--input", str(SAMPLES), "--board", "tiny"])
    out, err = capsys.readouterr()
    assert rc == 3 and out == ""
    assert "does not fit: the agent does not fit tiny's 64 KB heap: it runs out of memory while" in err
    assert "the sensors' filters and windows" in err and "Traceback" not in err


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_fmt_is_correctly_rounded_to_15_digits(x):
    s = fmt(x)
    assert float(s) == float("%.15g" % x)
    assert json.loads(s) == float(s)


# -- differential: random pipelines against the naive model ------------------

_filters = st.one_of(
    st.builds(lambda lo, span: {"range": {"min": lo, "max": lo + span}}, st.integers(-20, 10), st.integers(0, 40)),
    st.builds(lambda lo, span: {"clamp": {"min": lo, "max": lo + span}}, st.integers(-20, 10), st.integers(0, 40)),
    st.builds(lambda a, b: {"calibrate": {"slope": a, "offset": b}}, st.sampled_from([0.5, 1, 1.8, -2]),
              st.sampled_from([0, 32, -1.5])),
    st.builds(lambda m: {"delta": {"min": m}}, st.sampled_from([0, 0.5, 1, 3])),
    st.builds(lambda i: {"throttle": {"interval_ms": i}}, st.integers(1, 3000)),
    st.builds(lambda n: {"median": {"size": n}}, st.sampled_from([1, 3, 5])),
    st.builds(lambda i: {"heartbeat": {"interval_ms": i}}, st.integers(500, 5000)),
)
_windows = st.one_of(
    st.builds(lambda s: {"size_ms": s}, st.integers(100, 5000)),
    st.builds(lambda s: {"size": s}, st.integers(1, 10)),
    st.builds(lambda s, d: {"size_ms": s, "every_ms": max(1, s // d)}, st.integers(100, 5000), st.integers(1, 5)),
    st.builds(lambda s, e: {"size": s, "every": min(s, e)}, st.integers(1, 10), st.integers(1, 10)),
)
_samples = st.lists(st.tuples(st.integers(0, 900), st.integers(-3000, 3000).map(lambda v: v / 100)),
                    min_size=1, max_size=60)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Inputs carry 2 decimals and the sensor keeps 4, and at most one calibrate:
# every filter output is then exact in fixed point, so decisions (delta,
# range) and counts must agree exactly with the float model.
@given(st.lists(_filters, max_size=3).filter(lambda fs: sum("calibrate" in f for f in fs) <= 1),
       st.lists(_windows, min_size=1, max_size=2), _samples)
def test_random_pipelines_agree_with_the_naive_model(filters, windows, steps):
    aggs = ["count", "sum", "avg", "min", "max", "stddev", "first", "last"]
    wins = [dict(w, name=f"w{i}", aggregates=aggs) for i, w in enumerate(windows)]
    cfg = validate({"sensors": [{"name": "s", "period_ms": 50, "decimals": 4, "filters": filters, "windows": wins}]})
    t = 0
    samples = []
    for dt, v in steps:
        t += dt
        samples.append((t, v))
    out, err = io.StringIO(), io.StringIO()
    r = Replay(cfg, out, err)
    for i, (t, v) in enumerate(samples):
        r.line(i + 1, json.dumps({"t": t, "sensor": "s", "value": v}))
    r.finish()
    assert r.bad == 0, err.getvalue()
    got = _grouped(json.loads(line) for line in out.getvalue().splitlines())
    filtered = naive.run_filters(cfg["sensors"][0]["filters"], samples)
    for w in cfg["sensors"][0]["windows"]:
        want = naive.run_window(w, filtered)
        have = got.get(("s", w["name"]), [])
        assert [(x["start"], x["end"]) for x in have] == [(a, b) for a, b, _ in want]
        for x, (_, _, agg) in zip(have, want):
            for k, v in agg.items():
                # a value can still be half a unit of the 4th decimal off (median
                # of two, then x0.5): sums by up to count of those
                assert _close(x[k], v, 1e-9) or abs(x[k] - v) <= 5e-5 * len(samples) + 1e-9, (k, x, agg, w)
                if k == "count":
                    assert x[k] == v
