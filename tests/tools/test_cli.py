"""The ``edgestream`` command itself: --version, usage errors, closed pipes, progress on a terminal."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from ttytest import run_with_pty_stderr

from edgestream_tools.cli import COMMANDS, EXIT_BROKEN_PIPE, CommandParser, main

EDGESTREAM = [sys.executable, "-m", "edgestream_tools.cli"]
AGENT_CONFIG = Path(__file__).resolve().parents[1] / "agent" / "data" / "replay_agent.json"


def samples(path: Path, seconds: int) -> Path:
    """Agent samples for the replay config: temp every 1 s, flow every 0.5 s."""
    with path.open("w") as f:
        for i in range(seconds):
            f.write(json.dumps({"t": i * 1000, "sensor": "temp", "value": 20 + (i % 50) / 10}) + "\n")
            f.write(json.dumps({"t": i * 1000 + 500, "sensor": "flow", "value": i % 30}) + "\n")
    return path


# -- --version and usage errors -----------------------------------------------------
def test_version_prints_the_installed_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"edgestream {version('edgestream')}\n"
    p = subprocess.run(EDGESTREAM + ["--version"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout == f"edgestream {version('edgestream')}\n" and p.stderr == ""


def test_the_top_level_lists_the_commands(capsys):
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"edgestream: choose a command: {', '.join(COMMANDS)}\n")
    assert main(["bogus"]) == 2
    assert capsys.readouterr().err.startswith(f"edgestream: unknown command 'bogus'; choose a command: "
                                              f"{', '.join(COMMANDS)}\n")


def groups() -> list[tuple[list[str], list[str]]]:
    """Every subcommand group of every command: (argv that reaches it, its commands)."""
    found = []

    def walk(parser: argparse.ArgumentParser, argv: list[str]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                found.append((argv, list(action.choices)))
                for name, sub in action.choices.items():
                    walk(sub, argv + [name])

    for name, (module, _) in COMMANDS.items():
        parser = CommandParser(prog=f"edgestream {name}")
        importlib.import_module(module).add_arguments(parser)
        walk(parser, [name])
    return found


GROUPS = groups()


def test_the_groups_are_found():
    assert {tuple(argv) for argv, _ in GROUPS} >= {("agent",), ("hub",), ("firmware",)}


@pytest.mark.parametrize("argv,commands", GROUPS, ids=[" ".join(a) for a, _ in GROUPS])
def test_a_group_without_a_command_lists_its_commands(capsys, argv, commands):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.endswith(f"edgestream {' '.join(argv)}: choose a command: {', '.join(commands)}\n")
    assert "required" not in err and "_cmd" not in err and "action" not in err


@pytest.mark.parametrize("argv,commands", GROUPS, ids=[" ".join(a) for a, _ in GROUPS])
def test_a_group_with_a_bogus_command_lists_its_commands(capsys, argv, commands):
    with pytest.raises(SystemExit) as e:
        main(argv + ["bogus"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.endswith(f"edgestream {' '.join(argv)}: unknown command 'bogus'; "
                        f"choose a command: {', '.join(commands)}\n")


# -- a closed stdout: quiet, exit 141 --------------------------------------------------
def into_head(argv: list[str], timeout: float = 120) -> tuple[int, bytes, bytes]:
    """``argv | head -1``: exit code and stderr of argv, and what head printed."""
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = subprocess.Popen(["head", "-1"], stdin=p.stdout, stdout=subprocess.PIPE)
    assert p.stdout is not None
    p.stdout.close()  # head holds the only read end now
    try:
        first, _ = head.communicate(timeout=timeout)
        _, err = p.communicate(timeout=timeout)
    finally:
        for proc in (p, head):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return p.returncode, err, first


def into_gone_head(argv: list[str], timeout: float = 120) -> tuple[int, bytes]:
    """argv writing into a pipe whose reader, ``head -1``, has already read its line and exited.

    Every write then fails (EPIPE), however little argv prints and whenever it
    prints it: the deterministic case of ``argv | head -1``.
    """
    r, w = os.pipe()
    head = subprocess.Popen(["head", "-1"], stdin=r, stdout=subprocess.DEVNULL)
    os.close(r)
    try:
        os.write(w, b"a line for head\n")
        head.wait(timeout=timeout)
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=w, stderr=subprocess.PIPE, timeout=timeout)
    finally:
        os.close(w)
        if head.poll() is None:
            head.kill()
            head.wait()
    return p.returncode, p.stderr


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("pipes")
    s = tmp / "s.jsonl"
    s.write_text("".join(json.dumps({"id": f"d{i % 7}", "ts": i, "v": i}) + "\n" for i in range(30_000)))
    (tmp / "in.jsonl").write_text("")
    (tmp / "hub.yaml").write_text("sources:\n  f: {file: {path: in.jsonl}}\nsinks:\n  out: {stdout: {}}\n"
                                  "pipelines:\n  p: {from: f, to: out}\n")
    return {"s": s, "samples": samples(tmp / "samples.jsonl", 10_000), "hub": tmp / "hub.yaml", "tmp": tmp}


def writers(inputs: dict[str, Path]) -> dict[str, list[str]]:
    """Every command that writes to stdout, with arguments that make it write."""
    replay = ["agent", "replay", "--config", str(AGENT_CONFIG), "--input", str(inputs["samples"])]
    return {
        "sql": ["sql", "SELECT id, v FROM s", "--input", f"s={inputs['s']}"],
        "sql-explain": ["sql", "EXPLAIN SELECT id FROM s"],
        "agent-replay-cpython": replay + ["--runtime", "cpython"],
        "agent-replay-micropython": replay,
        "hub-plugins": ["hub", "plugins"],
        "hub-docs": ["hub", "docs"],
        "hub-check": ["hub", "check", "-c", str(inputs["hub"])],
        "firmware-bundle": ["firmware", "bundle", "--out", str(inputs["tmp"] / "mpy")],
        "version": ["--version"],
        "help": ["--help"],
        "sql-help": ["sql", "--help"],
    }


WRITERS = ["sql", "sql-explain", "agent-replay-cpython", "agent-replay-micropython", "hub-plugins", "hub-docs",
           "hub-check", "firmware-bundle", "version", "help", "sql-help"]


@pytest.mark.parametrize("name", WRITERS)
def test_a_closed_pipe_exits_141_quietly(inputs, name):
    rc, err = into_gone_head(EDGESTREAM + writers(inputs)[name])
    assert err == b"" and rc == EXIT_BROKEN_PIPE


@pytest.mark.parametrize("name", ["sql", "agent-replay-cpython", "agent-replay-micropython"])
def test_piping_a_long_output_into_head(inputs, name):
    argv = writers(inputs)[name]
    rc, err, first = into_head(EDGESTREAM + argv)
    assert rc == EXIT_BROKEN_PIPE and err == b""
    assert json.loads(first)  # head got the first row


# -- progress on a terminal --------------------------------------------------------------
@pytest.mark.parametrize("runtime", ["cpython", "micropython"])
def test_agent_replay_shows_progress_on_a_terminal_only(tmp_path, runtime):
    argv = EDGESTREAM + ["agent", "replay", "--config", str(AGENT_CONFIG), "--runtime", runtime,
                         "--input", str(samples(tmp_path / "samples.jsonl", 2000))]
    rc, tty = run_with_pty_stderr(argv)
    text = tty.decode()
    assert rc == 0, text
    assert "edgestream agent replay: " in text and " records, " in text and "%" in text
    assert "\r\x1b[Kreplay: 4000 lines" in text  # cleared before the summary
    piped = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0
    assert "edgestream agent replay" not in piped.stderr and "\r" not in piped.stderr
    assert "replay: 4000 lines" in piped.stderr


@pytest.mark.parametrize("columns", [None, "60", "0", "x"])
def test_help_is_as_wide_as_argparse_makes_it(monkeypatch, columns):
    """The commands' help formatter measures the terminal without shutil (a command's start), as argparse
    does with it: the same width for every COLUMNS."""
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    ours = CommandParser(prog="edgestream hub")
    theirs = argparse.ArgumentParser(prog="edgestream hub")
    for p in (ours, theirs):
        p.add_argument("--config", help="the hub.yaml to use " * 8)
    assert ours.format_help() == theirs.format_help()



# -- the console script skips the interpreter's teardown for a command that asks ----------
def _hub_yaml(folder: Path) -> None:
    (folder / "in.jsonl").write_text("")
    (folder / "hub.yaml").write_text("sources:\n  f: {file: {path: in.jsonl}}\nsinks:\n  out: {stdout: {}}\n"
                                     "pipelines:\n  p: {from: f, to: out}\n")
    (folder / "bad.yaml").write_text("sources:\n  f: {file: {path: nope.jsonl}}\n")


def _console(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """The console script in a child that registered an atexit handler first: it prints TEARDOWN only if
    the interpreter tore itself down."""
    code = ("import atexit, sys\natexit.register(lambda: print('TEARDOWN'))\n"
            "from edgestream_tools.cli import console\nsys.argv = ['edgestream', *sys.argv[1:]]\nconsole()")
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60, cwd=cwd)


def test_hub_check_ends_without_teardown_and_keeps_its_output_and_exit_code(tmp_path):
    _hub_yaml(tmp_path)
    ok = _console(["hub", "check", "-c", "hub.yaml"], tmp_path)
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, "hub.yaml: ok (1 sources, 1 pipelines, 1 sinks)\n", "")
    bad = _console(["hub", "check", "-c", "bad.yaml"], tmp_path)
    assert bad.returncode == 2 and bad.stdout == "" and "sources.f.file.path: line 2: file not found" in bad.stderr
    other = _console(["hub", "plugins"], tmp_path)  # a command that does not ask: the usual exit
    assert other.returncode == 0 and other.stdout.endswith("TEARDOWN\n")


def test_hub_check_in_process_returns_and_leaves_the_collector_on(tmp_path, capsys):
    import gc

    _hub_yaml(tmp_path)
    assert gc.isenabled() and main(["hub", "check", "-c", str(tmp_path / "hub.yaml")]) == 0 and gc.isenabled()
    assert main(["hub", "check", "-c", str(tmp_path / "bad.yaml")]) == 2 and gc.isenabled()
    assert "ok (1 sources, 1 pipelines, 1 sinks)" in capsys.readouterr().out
