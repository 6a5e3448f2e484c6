"""``edgestream agent bench``: one JSON object of figures, from the board build of MicroPython."""

from __future__ import annotations

import json
from pathlib import Path

from edgestream_tools.cli import main

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "agent.json"
# a standard config: 3 filters, a sliding and a count window, and a sensor
# that reads blocks
STANDARD = {"device": "bench-1", "sensors": [
    {"name": "temp", "period_ms": 10,
     "filters": [{"range": {"min": -50, "max": 150}}, {"calibrate": {"slope": 1.8, "offset": 32}}, {"ema": 0.3}],
     "windows": [{"name": "slide", "size_ms": 2000, "every_ms": 500,
                  "aggregates": ["count", "avg", "min", "max", "stddev"]},
                 {"name": "count", "size": 100, "aggregates": ["count", "sum", "min", "max", "first", "last"]}]},
    {"name": "vib", "period_ms": 1, "block": 32, "source": {"type": "sim", "wave": "noise", "noise": 2},
     "filters": [{"median": 5}], "windows": [{"name": "w", "size_ms": 100}]}]}
KEYS: dict[str, type | tuple[type, ...]] = {
    "samples_per_s": int, "alloc_bytes_per_sample": (int, float), "heap_used": int, "heap_free": int,
    "samples": int, "results": int, "elapsed_ms": (int, float), "sensors": int, "native": bool,
    "board": str, "profile": str}


def bench(capsys, *args: str) -> tuple[int, dict, str]:
    rc = main(["agent", "bench", *args])
    out, err = capsys.readouterr()
    lines = out.splitlines()
    return rc, (json.loads(lines[0]) if rc == 0 else {}), err if rc == 0 else err + out


def test_prints_one_json_object_with_the_figures(capsys, tmp_path):
    cfg = tmp_path / "agent.json"
    cfg.write_text(json.dumps(STANDARD))
    rc, fig, _ = bench(capsys, "--config", str(cfg), "--samples", "6400")
    assert rc == 0
    assert set(fig) == set(KEYS) and all(isinstance(fig[k], t) for k, t in KEYS.items()), fig
    assert fig["alloc_bytes_per_sample"] == 0  # the steady state allocates nothing
    assert fig["samples"] == 6400 and fig["sensors"] == 2 and fig["results"] > 30
    assert fig["samples_per_s"] > 0 and fig["elapsed_ms"] > 0
    assert 0 < fig["heap_used"] < 100 * 1024 and fig["heap_free"] > 0
    assert (fig["board"], fig["profile"], fig["native"]) == ("esp32", "frozen", True)


def test_a_board_and_the_mpy_profile(capsys):
    # the example's hardware sources (adc, i2c) are simulated
    rc, fig, _ = bench(capsys, "--config", str(EXAMPLE), "--samples", "2000", "--board", "tiny", "--profile", "mpy")
    assert rc == 0 and fig["samples"] == 2000 and fig["alloc_bytes_per_sample"] == 0
    assert (fig["board"], fig["profile"], fig["native"]) == ("tiny", "mpy", True)
    assert fig["heap_used"] + fig["heap_free"] <= 64 * 1024


def test_a_bad_config_exits_2_with_the_validators_message(capsys, tmp_path):
    bad = tmp_path / "agent.json"
    bad.write_text(json.dumps({"sensors": [{"name": "a", "windows": [{"size_ms": 0}]}]}))
    rc, _, err = bench(capsys, "--config", str(bad))
    assert rc == 2 and f"config {bad}: sensors[0].windows[0].size_ms: must be > 0" in err
    rc, _, err = bench(capsys, "--config", str(tmp_path / "missing.json"))
    assert rc == 2 and "missing.json: cannot read" in err
    rc, _, err = bench(capsys, "--config", str(EXAMPLE), "--samples", "0")
    assert rc == 2 and "--samples: expected a count > 0" in err


def test_a_config_the_board_cannot_start_exits_3_with_the_check_sentence(capsys, tmp_path):
    # a sliding window of 3000 values in the tiny heap from .mpy: what takes the memory, as check and replay
    # say it
    big = tmp_path / "agent.json"
    big.write_text(json.dumps({"sensors": [{"name": "t", "windows": [{"name": "w", "size": 3000, "every": 10}]}]}))
    rc, _, err = bench(capsys, "--config", str(big), "--board", "tiny", "--profile", "mpy")
    assert rc == 3, err
    assert "does not fit: the agent does not fit tiny's 64 KB heap: it runs out of memory while building " \
        "sensors[0] (t)" in err and "Traceback" not in err, err
