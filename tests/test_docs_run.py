"""The docs run as written: every fenced block of the Markdown docs is run or checked, or says why not.

Docs note (the convention; README.md, "Docs that run as written", says the same for contributors).
The blocks are found by parsing the Markdown files (``README.md``, ``*/README.md``, ``docs/*.md``), so
a block added later is tested without touching this file. Each block gets a language, and the
language says what is done with it:

- ``sh``: every command runs with ``bash -o pipefail`` in a fresh folder laid out like the
  repository's root (copies of ``examples/`` and ``docs/``), with this venv's ``edgestream`` first on
  PATH, and must exit 0 within ``TIMEOUT_S``. Write paths as from the repository's root
  (``examples/readings.jsonl``).
- ``console``: ``$ command`` lines run the same way, and the lines after each, up to the next
  ``$``, must be exactly what it prints on stdout.
- ``yaml``: a complete ``hub.yaml``, which must pass ``edgestream hub check`` (it is written into
  ``examples/``, so relative file names find the example files; each ``${VAR}`` without a default is
  set to a placeholder value, as a reader sets it).
- ``json``: a complete ``agent.json``, which must pass the agent's validator.
- ``python``: runs with this venv's python and must exit 0; a marked one must compile and its
  imports must work (so the names it shows exist).
- ``sql``: a query, which must compile (``edgestream sql "EXPLAIN ..."``).
- ``toml``: must parse. ``text``: never run (diagrams, grammars, usage lines, log lines).

A block that cannot run as written says so with one HTML comment on the line right before its
fence, which the reader of the Markdown source sees next to the block:

- ``<!-- not run: REASON -->`` (sh, console, python): needs hardware, a broker or the network, runs
  until stopped, or is a set-up command (``make demo``, ``make test``: never run from here, marked or
  not). Shell blocks are still checked for syntax, and an ``edgestream hub run`` in them has its
  config checked with ``hub check`` (the same ``-c`` and ``--set``) instead. Say what is needed in the
  block too (``# needs a board ...``).
- ``<!-- fragment -->`` (yaml, json, python, sql, toml): a piece of a bigger whole. A yaml fragment of
  a ``hub.yaml`` is completed with what it leaves out (a file source, a stdout sink, a pipeline
  between them) and then checked like a whole one; the others are only parsed.
- ``<!-- illustrative -->`` (console, yaml, json, text): an example of output or of a message, not
  what a command here prints verbatim; console commands still run, their output is not compared.
- ``<!-- file: PATH -->`` (yaml, json): the block is the file PATH of the repository, byte for byte,
  and is checked as its language says.

Besides the blocks: every complete query in an inline code span (``SELECT ... FROM ...`` without
``...``) compiles, every relative link points at a file of the repository, and every
``examples/...`` path the docs name exists. A block whose info string has the tag ``device-recipe``
is run, with a broker or a pty, by ``tests/agent/test_readme_recipes.py``: here it is only checked
like a marked one.
"""

from __future__ import annotations

import ast
import gzip
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TIMEOUT_S = 120
# The files of the repository a command may use, copied into each block's folder.
WORKSPACE = ("examples", "docs")
# Files a reader brings that the examples cannot ship (a TLS fragment names its CA certificate):
# hub check only looks that they exist.
READER_FILES = {"examples/ca.pem": "-----BEGIN CERTIFICATE-----\n(the CA of your broker)\n-----END CERTIFICATE-----\n"}
# Tags in an info string that hand a block to another test, which runs it with what it needs.
RUN_ELSEWHERE = {"device-recipe": "tests/agent/test_readme_recipes.py"}

LANGUAGES = ("sh", "console", "yaml", "json", "python", "sql", "toml", "text")
MARKERS = {  # marker -> the languages it may mark
    "not run": ("sh", "console", "python"),
    "fragment": ("yaml", "json", "python", "sql", "toml"),
    "illustrative": ("console", "yaml", "json", "text"),
    "file": ("yaml", "json"),
}
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+|~~~+)\s*(?P<info>[^`]*)$")
MARKER = re.compile(r"^\s*<!--\s*(?P<body>.*?)\s*-->\s*$")


def doc_files() -> list[Path]:
    """The Markdown the docs are made of: the top-level files, each folder's README, docs/."""
    files = [*REPO.glob("*.md"), *REPO.glob("*/README.md"), *REPO.glob("docs/*.md")]
    return sorted({p for p in files if not p.parent.name.startswith(".") and ".egg-info" not in p.parent.name})


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its language and tags, its text and the marker before it."""

    doc: str
    line: int
    lang: str
    tags: tuple[str, ...]
    text: str
    marker: str | None  # "not run", "fragment", "illustrative", "file", or None
    note: str  # what follows the marker's colon: the reason, or the file

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"

    @property
    def skipped(self) -> bool:
        """Not to be run here: marked ``not run``, or handed to another test by a tag."""
        return self.marker == "not run" or bool(self.tags)


def parse_blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, each with the HTML-comment marker before it (if any)."""
    lines = path.read_text().splitlines()
    doc = path.relative_to(REPO).as_posix()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = len(m["indent"]), m["fence"]
        end = i + 1
        while end < len(lines) and not lines[end].strip().startswith(fence[0] * len(fence)):
            end += 1
        body = "\n".join(line[indent:] if not line[:indent].strip() else line for line in lines[i + 1:end])
        words = m["info"].split()
        marker, note = None, ""
        k = i - 1
        while k >= 0 and not lines[k].strip():  # blank lines between marker and fence are allowed
            k -= 1
        mm = MARKER.match(lines[k]) if k >= 0 else None
        if mm:
            marker, _, note = (part.strip() for part in mm["body"].partition(":"))
        blocks.append(Block(doc, i + 1, words[0] if words else "", tuple(words[1:]), body + "\n" if body else "",
                            marker, note))
        i = end + 1
    return blocks


ALL_BLOCKS = [b for p in doc_files() for b in parse_blocks(p)]


# --- running commands ---------------------------------------------------------------------------

@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A folder laid out like the repository's root: copies of what the docs' commands use."""
    for name in WORKSPACE:
        shutil.copytree(REPO / name, tmp_path / name)
    return tmp_path


def command_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a reader has after ``make install``: the venv's commands first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGESTREAM_") or k == "EDGESTREAM_MICROPYTHON"}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra or {})
    return env


def run(cmd: str | list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """One command, as a shell line (bash, pipefail) or an argv; bounded in time, stdin empty."""
    argv = ["bash", "-o", "pipefail", "-c", cmd] if isinstance(cmd, str) else cmd
    return subprocess.run(argv, cwd=cwd, env=env or command_env(), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=TIMEOUT_S)


def shell_commands(text: str) -> list[str]:
    """The commands of a shell block: logical lines (``\\`` continues one), blanks and comments left out."""
    out, cur = [], ""
    for line in text.splitlines():
        cur += line[:-1] + " " if line.endswith("\\") else line
        if line.endswith("\\"):
            continue
        if cur.strip() and not cur.strip().startswith("#"):
            out.append(cur.strip())
        cur = ""
    return out


def console_steps(text: str) -> list[tuple[str, str]]:
    """The ``$ command`` lines of a console block, each with the output shown after it."""
    steps: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps and steps[-1][0].endswith("\\") and not steps[-1][1]:
            steps[-1] = (steps[-1][0][:-1] + " " + line.strip(), [])
        elif steps:
            steps[-1][1].append(line)
        else:
            raise AssertionError(f"console block: output before the first '$ ' line: {line!r}")
    return [(cmd, "".join(f"{line}\n" for line in out)) for cmd, out in steps]


def must_succeed(block: Block, cmd: str | list[str], r: subprocess.CompletedProcess[str]) -> None:
    shown = cmd if isinstance(cmd, str) else shlex.join(cmd)
    assert r.returncode == 0, (f"{block.where}: `{shown}` exited {r.returncode}\n"
                               f"stdout:\n{r.stdout[-2000:]}\nstderr:\n{r.stderr[-2000:]}")
    assert "Traceback (most recent call last)" not in r.stderr, (
        f"{block.where}: `{shown}` printed a traceback:\n{r.stderr}")


def hub_run_as_check(cmd: str) -> list[str] | None:
    """``edgestream hub run -c X [--set ...]`` as the ``hub check`` of the same config; else None.

    >>> hub_run_as_check("edgestream hub run -c h.yaml --log-format json --log-level=debug --set a=1")
    ['edgestream', 'hub', 'check', '-c', 'h.yaml', '--set', 'a=1']
    """
    argv = shlex.split(cmd, comments=True)
    if argv[:3] != ["edgestream", "hub", "run"]:
        return None
    out, rest = ["edgestream", "hub", "check"], iter(argv[3:])
    for arg in rest:  # the options only `run` takes
        if arg in ("--log-level", "--log-format"):
            next(rest, None)
        elif not arg.startswith(("--log-level=", "--log-format=")):
            out.append(arg)
    return out


# --- the checks, one per language ---------------------------------------------------------------

def check_sh(block: Block, ws: Path) -> None:
    r = run(["bash", "-n", "-c", block.text], ws)
    assert r.returncode == 0, f"{block.where}: not valid shell: {r.stderr}"
    for cmd in shell_commands(block.text):
        if block.skipped:
            check = hub_run_as_check(cmd)
            if check:
                must_succeed(block, check, run(check, ws))
            continue
        refuse_set_up(block, cmd)
        must_succeed(block, cmd, run(cmd, ws))


def refuse_set_up(block: Block, cmd: str) -> None:
    """``make demo`` / ``make test`` are never run from here (``make test`` would run this test)."""
    assert not re.match(r"(sudo\s+)?make\b", cmd), (
        f"{block.where}: `{cmd}` is a set-up command: mark the block <!-- not run: set-up command -->")


def check_console(block: Block, ws: Path) -> None:
    steps = console_steps(block.text)
    assert steps, f"{block.where}: a console block shows '$ command' lines (else use text)"
    if block.skipped:
        return
    for cmd, shown in steps:
        refuse_set_up(block, cmd)
        r = run(cmd, ws)
        must_succeed(block, cmd, r)
        if block.marker != "illustrative":
            assert r.stdout == shown, (
                f"{block.where}: `{cmd}` printed something else than the docs show "
                f"(or mark the block <!-- illustrative -->)\nprinted:\n{r.stdout}\nshown:\n{shown}")


def complete_hub_yaml(fragment: dict[str, Any]) -> dict[str, Any]:
    """A fragment of a hub.yaml made whole: the sources, sinks and pipelines it leaves out, added.

    A ``processors:`` list goes into a pipeline; a pipeline without ``from``/``to`` reads a file
    source / writes a stdout sink; a source that feeds nothing gets a pipeline of its own; MQTT
    components get a local ``broker``.
    """
    cfg = {"broker": {"host": "127.0.0.1", "port": 1883}, **fragment}
    if "processors" in cfg:
        cfg["pipelines"] = {"docs": {"processors": cfg.pop("processors")}}
    sources, sinks = dict(cfg.get("sources") or {}), dict(cfg.get("sinks") or {})
    pipelines = {name: dict(p or {}) for name, p in (cfg.get("pipelines") or {}).items()}
    if not pipelines:
        pipelines = {f"from_{s}": {"from": s} for s in sources} or {"docs": {}}
    for p in pipelines.values():
        p.setdefault("from", next(iter(sources), "docs_in"))
        p.setdefault("to", list(sinks) or ["docs_out"])
        for name in [p["from"]] if isinstance(p["from"], str) else p["from"]:
            sources.setdefault(name, {"file": {"path": "readings.jsonl", "mode": "once"}})
        for name in [p["to"]] if isinstance(p["to"], str) else p["to"]:
            sinks.setdefault(name, {"stdout": {}})
    return {**cfg, "sources": sources, "sinks": sinks, "pipelines": pipelines}


def check_yaml(block: Block, ws: Path) -> None:
    data = yaml.safe_load(block.text)
    if block.marker == "illustrative":
        return
    assert isinstance(data, dict), f"{block.where}: a hub.yaml is a mapping (or mark the block)"
    if block.marker == "fragment":
        data = complete_hub_yaml(data)
    for rel, text in READER_FILES.items():
        (ws / rel).write_text(text)
    config = ws / "examples" / "docs-block.yaml"
    config.write_text(block.text if block.marker != "fragment" else yaml.safe_dump(data, sort_keys=False))
    unset = re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", block.text)
    argv = ["edgestream", "hub", "check", "-c", str(config)]
    r = run(argv, ws, command_env({name: "example" for name in unset}))
    assert r.returncode == 0, f"{block.where}: hub check refuses it:\n{r.stderr}\n{config.read_text()}"


def check_json(block: Block, ws: Path) -> None:
    if block.marker == "illustrative":
        return
    data = json.loads(block.text)
    if block.marker == "fragment":
        return
    assert isinstance(data, dict) and "sensors" in data, (
        f"{block.where}: a json block is a whole agent.json (or mark it <!-- fragment --> / <!-- illustrative -->)")
    from edgestream_agent.config import ConfigError, validate

    try:
        validate(data)
    except ConfigError as e:
        raise AssertionError(f"{block.where}: the agent's validator refuses it: {e}") from e


def check_python(block: Block, ws: Path) -> None:
    tree = ast.parse(block.text, block.where)
    if block.marker or block.skipped:
        # Not run: its imports still name what the code base has (device code imports under CPython too).
        imports: list[ast.stmt] = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
        script = ast.unparse(ast.Module(body=imports, type_ignores=[]))
    else:
        script = block.text
    (ws / "docs_block.py").write_text(script)
    must_succeed(block, f"python docs_block.py:\n{script}", run([sys.executable, "docs_block.py"], ws))


def check_sql(block: Block, ws: Path) -> None:
    if block.marker == "fragment":
        return
    explain(block, block.text.strip(), ws)


def explain(block: Block, query: str, ws: Path) -> None:
    argv = ["edgestream", "sql", f"EXPLAIN {query}"]
    r = run(argv, ws)
    assert r.returncode == 0, f"{block.where}: the query does not compile:\n{query}\n{r.stderr}"


def check_toml(block: Block, ws: Path) -> None:
    if sys.version_info >= (3, 11):
        import tomllib

        tomllib.loads(block.text)
    else:
        pytest.skip("tomllib is new in Python 3.11")


def check_text(block: Block, ws: Path) -> None:
    """Never run."""


CHECKS: dict[str, Callable[[Block, Path], None]] = {
    "sh": check_sh, "console": check_console, "yaml": check_yaml, "json": check_json,
    "python": check_python, "sql": check_sql, "toml": check_toml, "text": check_text,
}


def check_marker(block: Block) -> None:
    assert block.lang in LANGUAGES, (f"{block.where}: give the block one of the languages {', '.join(LANGUAGES)} "
                                     f"(got {block.lang or 'none'!r}); see tests/test_docs_run.py")
    if block.tags:  # the words after a hand-over tag are for the test it names
        tag = block.tags[0]
        assert tag in RUN_ELSEWHERE, (f"{block.where}: unknown tag {tag!r} after the language "
                                      f"(known: {', '.join(RUN_ELSEWHERE)})")
        assert (REPO / RUN_ELSEWHERE[tag]).is_file(), (
            f"{block.where}: {tag} blocks are run by {RUN_ELSEWHERE[tag]}, which is missing")
    if block.marker is None:
        return
    assert block.marker in MARKERS, (f"{block.where}: unknown marker <!-- {block.marker} -->; "
                                     f"known: {', '.join(MARKERS)}")
    assert block.lang in MARKERS[block.marker], (
        f"{block.where}: <!-- {block.marker} --> marks {', '.join(MARKERS[block.marker])} blocks, not {block.lang}")
    if block.marker == "not run":
        assert block.note, f"{block.where}: say why: <!-- not run: needs a board on /dev/ttyUSB0 -->"
    if block.marker == "file":
        path = REPO / block.note
        assert path.is_file(), f"{block.where}: <!-- file: {block.note} --> names no file of the repository"
        assert path.read_text() == block.text, f"{block.where}: the block differs from {block.note}"


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=[f"{b.where}-{b.lang or 'none'}" for b in ALL_BLOCKS])
def test_block_runs_as_written(block: Block, workspace: Path) -> None:
    check_marker(block)
    CHECKS[block.lang](block, workspace)


# --- prose: inline queries, links, example paths ------------------------------------------------

def prose(path: Path) -> str:
    """A Markdown file without its fenced blocks (blank lines keep the line numbers)."""
    out, fence = [], None
    for line in path.read_text().splitlines():
        m = FENCE.match(line)
        if m and (fence is None or m["fence"].startswith(fence)):
            fence = None if fence else m["fence"]
            out.append("")
        else:
            out.append("" if fence else line)
    return "\n".join(out)


def inline_queries() -> list[tuple[str, str]]:
    """Whole queries in inline code spans, with where they are (``docs/sql.md:217``)."""
    found = []
    for path in doc_files():
        text = prose(path)
        for m in re.finditer(r"`(SELECT\b[^`]*\bFROM\b[^`]*)`", text):
            if "..." not in m[1]:
                line = text.count("\n", 0, m.start()) + 1
                found.append((f"{path.relative_to(REPO).as_posix()}:{line}", " ".join(m[1].split())))
    return found


@pytest.mark.parametrize("where,query", inline_queries())
def test_inline_query_compiles(where: str, query: str, workspace: Path) -> None:
    doc, _, line = where.partition(":")
    explain(Block(doc, int(line), "sql", (), query, None, ""), query, workspace)


def test_links_point_into_the_repository() -> None:
    bad = []
    for path in doc_files():
        for m in re.finditer(r"\]\(([^)\s]+)\)", prose(path)):
            target = m[1].split("#")[0]
            if not target or re.match(r"[a-z]+:", target):
                continue
            resolved = (path.parent / target).resolve()
            if REPO not in resolved.parents or not resolved.exists():
                bad.append(f"{path.relative_to(REPO)}: ({m[1]})")
    assert not bad, "links to nothing in the repository:\n" + "\n".join(bad)


def test_named_example_files_exist() -> None:
    named = {m[1] for p in doc_files() for m in re.finditer(r"\b(examples/[\w./-]*\w)", p.read_text())}
    missing = sorted(n for n in named if not (REPO / n).exists())
    assert named and not missing, f"the docs name example files that do not exist: {missing}"


def test_compressed_readings_hold_the_readings() -> None:
    packed = (REPO / "examples/readings.jsonl.gz").read_bytes()
    assert gzip.decompress(packed) == (REPO / "examples/readings.jsonl").read_bytes()
