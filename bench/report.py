"""One way for every benchmark to report a figure, and the ``bench/RESULTS.md`` written from them.

A benchmark measures a figure several times and calls :func:`figure` with the runs (one value per
run); the median and the spread (min-max) are taken here, the line is printed, and the figure is kept
in :data:`REPORT`. ``python -m bench`` runs every benchmark and then writes ``bench/RESULTS.md``
(:func:`render`): the machine (CPU, cores, Python, MicroPython, mosquitto), the figures that have a
target, and one table per section. Notes say what a table cannot (a peer that did not install, what
a figure includes).

>>> r = Report()
>>> f = r.figure("SQL", "tumbling / hand loop", [0.9, 1.1, 1.0], "ratio", target=">= 0.5", echo=False)
>>> (f.median, f.low, f.high, f.met)
(1.0, 0.9, 1.1, True)
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
_TARGET = re.compile(r"^\s*(<=|>=|<|>)\s*([-+0-9.eE]+)\s*$")


@dataclass(frozen=True)
class Figure:
    """One measured figure: the median of ``runs`` values and their spread."""

    section: str
    name: str
    median: float
    low: float
    high: float
    runs: int
    unit: str
    target: str | None = None  # "< 50", ">= 0.5": compared with the median

    @property
    def met(self) -> bool | None:
        """Whether the median meets the target (None: no target)."""
        if self.target is None:
            return None
        m = _TARGET.match(self.target)
        if m is None:
            raise ValueError(f"figure {self.name!r}: target {self.target!r} is not '<op> <number>' (op: < <= > >=)")
        op, bound = m.group(1), float(m.group(2))
        return {"<": self.median < bound, "<=": self.median <= bound, ">": self.median > bound,
                ">=": self.median >= bound}[op]


def fmt(x: float) -> str:
    """A figure's number at a precision that fits its size (1,234,567; 123; 12.3; 1.23; 0.0123)."""
    a = abs(x)
    if a >= 1000:
        return f"{x:,.0f}"
    if a >= 100:
        return f"{x:.0f}"
    if a >= 10:
        return f"{x:.1f}"
    if a >= 0.1 or a == 0:
        return f"{x:.2f}"
    return f"{x:.3g}"


@dataclass
class Report:
    """The figures, notes and machine facts of one benchmark run, in the order they were reported."""

    figures: list[Figure] = field(default_factory=list)
    notes: dict[str, list[str]] = field(default_factory=dict)
    machine_extra: dict[str, str] = field(default_factory=dict)

    def figure(self, section: str, name: str, runs: Sequence[float] | float, unit: str, *,
               target: str | None = None, echo: bool = True) -> Figure:
        """Keep (and print, unless ``echo`` is false) the median and min-max of ``runs`` (one value per run)."""
        xs = [float(runs)] if isinstance(runs, (int, float)) else [float(x) for x in runs]
        if not xs:
            raise ValueError(f"figure {name!r}: no runs")
        f = Figure(section, name, statistics.median(xs), min(xs), max(xs), len(xs), unit, target)
        _ = f.met  # a malformed target fails here, where it was written, not when RESULTS.md is
        self.figures.append(f)
        if echo:
            print(f"  = {name}: {line(f)}", flush=True)
        return f

    def note(self, section: str, text: str, *, echo: bool = True) -> None:
        """A sentence under a section's table (what a figure includes, a peer that could not run, and why)."""
        self.notes.setdefault(section, []).append(text)
        if echo:
            print(f"  note: {text}", flush=True)

    def machine(self, key: str, value: str) -> None:
        """A fact for the machine section that only a benchmark knows (a peer's version)."""
        self.machine_extra[key] = value


#: The report every benchmark writes to; ``python -m bench`` renders it.
REPORT = Report()
figure = REPORT.figure
note = REPORT.note


def line(f: Figure) -> str:
    spread = f"{fmt(f.low)}-{fmt(f.high)}, n={f.runs}" if f.runs > 1 else "one run"
    target = "" if f.target is None else f"  (target {f.target}: {'met' if f.met else 'MISSED'})"
    return f"{fmt(f.median)} {f.unit} ({spread}){target}"


def _first_line(argv: list[str]) -> str | None:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = (p.stdout + p.stderr).strip().splitlines()
    return out[0].strip() if out else None


def machine_info() -> dict[str, str]:
    """CPU model, cores, OS, Python, MicroPython and mosquitto versions of this machine (what was found)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for text in f:
                if text.startswith("model name"):
                    cpu = text.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {"CPU": cpu, "cores": f"{os.cpu_count()} ({usable} usable by the benchmarks)",
            "OS": platform.platform(),
            "Python": f"{platform.python_implementation()} {platform.python_version()} ({sys.executable})"}
    try:
        from edgestream_tools import micropython as mp

        code = "import sys; print('.'.join(str(x) for x in sys.implementation.version))"
        exe = Path(mp.find_micropython())
        where = exe.relative_to(ROOT) if exe.is_relative_to(ROOT) else exe
        info["MicroPython"] = (f"{mp.run_code(code, board='esp32').strip()} ({where}: the board build, 32-bit "
                               "unix port with the agent frozen in)")
    except Exception as e:  # the section says what went wrong instead
        info["MicroPython"] = f"not found: {e}"
    try:
        from edgestream_tools.broker import find_mosquitto

        broker = find_mosquitto()
        info["mosquitto"] = _first_line([broker, "-h"]) or f"{broker} (no version printed)"
    except Exception as e:
        info["mosquitto"] = f"not found: {e}"
    if hasattr(os, "getloadavg"):
        info["load average at start"] = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    git = shutil.which("git")
    if git:
        rev = _first_line([git, "-C", str(ROOT), "describe", "--always", "--dirty"])
        if rev:
            info["commit"] = rev
    return info


def render(report: Report, machine: dict[str, str], *, elapsed_s: float | None = None,
           when: datetime.datetime | None = None) -> str:
    """RESULTS.md: the machine, the figures that have a target, then one table (and its notes) per section."""
    when = when or datetime.datetime.now(datetime.timezone.utc)
    out = ["# Benchmark results", "",
           f"Written by `make bench` (`python -m bench`) on {when:%Y-%m-%d %H:%M} UTC; run it again to "
           "refresh this file (do not edit it by hand). Each figure is the median of its runs with their "
           "spread (min-max); a figure with one run is exact (a size, a heap count) or says why. Ratios are "
           "EdgeStream / the yardstick named, both measured in the same run.", "",
           "## Machine", "", "| | |", "| --- | --- |"]
    facts = {**machine, **report.machine_extra}
    if elapsed_s is not None:
        facts["time for the whole run"] = f"{elapsed_s / 60:.1f} min"
    out += [f"| {k} | {_cell(v)} |" for k, v in facts.items()]
    header = ["| figure | median | spread (min-max) | runs | unit | target |",
              "| --- | ---: | --- | ---: | --- | --- |"]
    targets = [f for f in report.figures if f.target is not None]
    if targets:
        out += ["", "## Targets", "", *header]
        out += [_row(f, with_section=True) for f in targets]
    sections: list[str] = []
    for f in report.figures:
        if f.section not in sections:
            sections.append(f.section)
    sections += [s for s in report.notes if s not in sections]
    for s in sections:
        out += ["", f"## {s}", ""]
        rows = [_row(f) for f in report.figures if f.section == s]
        if rows:
            out += [*header, *rows]
        notes = report.notes.get(s, [])
        if notes:
            out += ([""] if rows else []) + [f"- {_cell(n)}" for n in notes]
    return "\n".join(out) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _row(f: Figure, with_section: bool = False) -> str:
    name = f"{f.section}: {f.name}" if with_section else f.name
    spread = f"{fmt(f.low)}-{fmt(f.high)}" if f.runs > 1 else "-"
    target = "" if f.target is None else f"{f.target} ({'met' if f.met else '**missed**'})"
    return f"| {_cell(name)} | {fmt(f.median)} | {spread} | {f.runs} | {_cell(f.unit)} | {target} |"


def write(path: Path, report: Report, machine: dict[str, str], *, elapsed_s: float | None = None) -> None:
    """Write :func:`render` to ``path`` through a temp file, so a failed run leaves the old file whole."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(render(report, machine, elapsed_s=elapsed_s))
    tmp.replace(path)
