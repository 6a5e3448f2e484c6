"""bench/RESULTS.md is written from the figures the benchmarks report: the machine section, a table per
section, the targets and their verdicts. No timing here: the figures are made up."""

from __future__ import annotations

import datetime
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import report  # noqa: E402

WHEN = datetime.datetime(2026, 12, 1, 10, 30, tzinfo=datetime.timezone.utc)
MACHINE = {"CPU": "Test CPU 9000", "cores": "2", "Python": "CPython 3.11.7", "MicroPython": "1.29.0",
           "mosquitto": "mosquitto version 2.0.11"}


def sample() -> report.Report:
    r = report.Report()
    r.figure("Hub", "intake, 100-item messages / bare paho + json.loads", [0.41, 0.52, 0.47], "ratio", echo=False)
    r.figure("Hub", "peak RSS, 1,000 devices, 10 pipelines", [41.2, 43.9, 42.0], "MB", target="< 50", echo=False)
    r.figure("Agent", "pipeline / hand-written MicroPython, esp32", [0.42, 0.45, 0.44], "ratio", target=">= 0.5",
             echo=False)
    r.figure("Agent", "bundle size, esp32", 51234, "bytes", echo=False)
    r.note("Peers", "bytewax could not install: no wheel for this Python", echo=False)
    r.machine("bytewax", "not installed")
    return r


def test_machine_section_lists_every_fact() -> None:
    text = report.render(sample(), MACHINE, elapsed_s=600, when=WHEN)
    head, _, rest = text.partition("## Machine")
    assert "2026-12-01 10:30 UTC" in head
    machine = rest.split("\n## ", 1)[0]
    for key, value in {**MACHINE, "bytewax": "not installed", "time for the whole run": "10.0 min"}.items():
        assert f"| {key} | {value} |" in machine


def test_each_section_gets_a_table_of_its_figures_with_median_and_spread() -> None:
    text = report.render(sample(), MACHINE, when=WHEN)
    hub = text.split("\n## Hub\n", 1)[1].split("\n## ", 1)[0]
    assert "| figure | median | spread (min-max) | runs | unit | target |" in hub
    assert "| intake, 100-item messages / bare paho + json.loads | 0.47 | 0.41-0.52 | 3 | ratio |  |" in hub
    assert "| peak RSS, 1,000 devices, 10 pipelines | 42.0 | 41.2-43.9 | 3 | MB | < 50 (met) |" in hub
    agent = text.split("\n## Agent\n", 1)[1].split("\n## ", 1)[0]
    assert "| bundle size, esp32 | 51,234 | - | 1 | bytes |  |" in agent
    assert "intake" not in agent  # each figure in its own section only
    peers = text.split("\n## Peers\n", 1)[1]
    assert "- bytewax could not install: no wheel for this Python" in peers  # a section of notes alone


def test_targets_are_gathered_with_their_verdicts() -> None:
    text = report.render(sample(), MACHINE, when=WHEN)
    targets = text.split("\n## Targets\n", 1)[1].split("\n## ", 1)[0]
    assert "| Hub: peak RSS, 1,000 devices, 10 pipelines | 42.0 |" in targets
    assert ("| Agent: pipeline / hand-written MicroPython, esp32 | 0.44 | 0.42-0.45 | 3 | ratio "
            "| >= 0.5 (**missed**) |") in targets
    assert "intake" not in targets and "bundle" not in targets


def test_a_malformed_target_is_refused_where_it_is_reported() -> None:
    with pytest.raises(ValueError, match="target 'about 50'"):
        report.Report().figure("Hub", "RSS", [1.0], "MB", target="about 50", echo=False)
    with pytest.raises(ValueError, match="no runs"):
        report.Report().figure("Hub", "RSS", [], "MB", echo=False)


def test_write_replaces_the_file_whole(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    out.write_text("old")
    report.write(out, sample(), MACHINE)
    assert out.read_text().startswith("# Benchmark results\n")
    assert [p.name for p in tmp_path.iterdir()] == ["RESULTS.md"]


def test_machine_info_names_cpu_cores_and_versions() -> None:
    info = report.machine_info()
    for key in ("CPU", "cores", "Python", "MicroPython", "mosquitto"):
        assert info[key]


def test_bench_refuses_an_unknown_benchmark() -> None:
    p = subprocess.run([sys.executable, "-m", "bench", "bench_nope"], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 2
    assert "no benchmark bench_nope" in p.stderr
