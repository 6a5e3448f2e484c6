"""`hub check` refuses exactly what `hub run` refuses: a corpus of bad configs through both commands.

Each ``bad_configs/<name>.yaml`` says what is wrong with it (``# expect: <path>: <message>``) and marks
the line the error must name with ``# <-``. Both commands run as real processes, each in its own copy
of the folder: ``check`` must exit 2 with that one located error, ``run`` must exit 2 with the same
text, before it opens or creates anything, and neither may print a traceback.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from edgestream_hub.config import SECTIONS
from edgestream_hub.registry import KINDS, Registry

CORPUS = Path(__file__).parent / "bad_configs"
CASES = sorted(p.stem for p in CORPUS.glob("*.yaml"))


def expected(name: str) -> str:
    """The located error a corpus entry declares: ``path: line N: message``."""
    text = (CORPUS / f"{name}.yaml").read_text()
    m = re.search(r"^# expect: (.*)$", text, re.M)
    assert m, f"{name}.yaml has no '# expect:' line"
    marked = [i for i, line in enumerate(text.splitlines(), 1) if line.endswith("# <-")]
    assert len(marked) == 1, f"{name}.yaml must mark exactly one line with '# <-'"
    path, _, message = m.group(1).partition(": ")
    return f"{path}: line {marked[0]}: {message}"


def _run_both(root: Path, env: dict[str, str], name: str) -> dict[str, Any]:
    d = root / name
    d.mkdir()
    for f in CORPUS.iterdir():
        if f.suffix != ".yaml" or f.stem == name:  # the fixtures and this one config
            shutil.copy(f, d / f.name)
    before = {p.name for p in d.iterdir()}
    out: dict[str, Any] = {}
    for action in ("check", "run"):
        try:
            r = subprocess.run([sys.executable, "-m", "edgestream_tools.cli", "hub", action, "-c", f"{name}.yaml"],
                               cwd=d, env=env, capture_output=True, text=True, timeout=30)
            out[action] = (r.returncode, r.stderr, r.stdout)
        except subprocess.TimeoutExpired as e:  # run accepted the config and started serving
            out[action] = (None, str(e.stderr or ""), str(e.stdout or ""))
    out["created"] = sorted({p.name for p in d.iterdir()} - before)
    return out


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """``check`` and ``run`` on every corpus entry (three entries at a time)."""
    root = tmp_path_factory.mktemp("bad_configs")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGESTREAM_")}
    with ThreadPoolExecutor(3) as pool:
        return dict(zip(CASES, pool.map(lambda n: _run_both(root, env, n), CASES)))


def test_the_corpus_is_big_enough():
    assert len(CASES) >= 25


@pytest.mark.parametrize("name", CASES)
def test_check_and_run_refuse_with_the_same_located_error(results, name):
    want = expected(name)
    rc, err, out = results[name]["check"]
    assert rc == 2, f"hub check accepted {name}.yaml: {out}{err}"
    assert err.startswith(f"edgestream hub check: {name}.yaml: {want}"), err
    assert "config errors:" not in err, f"expected exactly one error:\n{err}"
    rc_run, err_run, _ = results[name]["run"]
    assert rc_run == 2, f"hub run exited {rc_run} on {name}.yaml:\n{err_run}"
    assert err_run.removeprefix("edgestream hub run: ") == err.removeprefix("edgestream hub check: ")
    assert results[name]["created"] == [], "hub run created files before refusing the config"


def test_no_corpus_entry_prints_a_traceback(results):
    shown = {n: r[a][1] for n, r in results.items() for a in ("check", "run") if "Traceback" in r[a][1]}
    assert not shown, shown


def test_the_corpus_covers_every_section_and_component_type():
    """Each section and each built-in source, processor and sink type has a bad value of its own."""
    paths = [expected(n).split(": ")[0] for n in CASES]
    sections = {p.split(".")[0] for p in paths}
    assert set(SECTIONS) <= sections, set(SECTIONS) - sections
    seen = {("source", m.group(1)) for p in paths if (m := re.match(r"sources\.[^.]+\.(\w+)", p))}
    seen |= {("sink", m.group(1)) for p in paths if (m := re.match(r"sinks\.[^.]+\.(\w+)", p))}
    seen |= {("processor", m.group(1)) for p in paths if (m := re.search(r"processors\[\d+\]\.(\w+)", p))}
    r = Registry()
    r.load_entry_points(paths=[])
    every = {(kind, t.name) for kind in KINDS for t in r.types(kind)}
    assert every <= seen, sorted(every - seen)


@pytest.mark.parametrize("name, fix", [
    ("file_source_unknown_format", (", format: xml", "")),
    ("sql_table_column_missing", ("r.floor", "r.room")),
    ("metrics_listen_without_port", ("localhost", "localhost:0")),
])
def test_an_entry_fixed_is_a_good_config(hub, name, fix):
    """The entries share good fixtures and a good skeleton: each fails for its own reason only."""
    for f in CORPUS.iterdir():
        if f.suffix != ".yaml":
            shutil.copy(f, hub.tmp / f.name)
    hub.config((CORPUS / f"{name}.yaml").read_text().replace(*fix))
