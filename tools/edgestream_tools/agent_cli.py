"""``edgestream agent replay``: try an agent config on recorded samples before flashing.

Runs the real agent pipeline (``edgestream_agent.replay``: the same filters and
windows a board runs) on a JSON-lines file of ``{"t", "sensor", "value"}``
samples and prints one JSON object per window result on stdout::

    edgestream agent replay --config agent.json --input samples.jsonl
    {"sensor": "temp", "window": "w1s", "start": 0, "end": 1000, "count": 10, "avg": 21.5}

``--runtime micropython`` (the default) runs it under the real ``micropython``
binary with the heap of ``--board``; the input streams into it line by line
(``--input -`` reads stdin). ``--runtime cpython`` runs the same code in this
process. Both print the same bytes for the same input. Bad input lines are
reported on stderr as ``line N: ...``, counted and skipped; the exit code is 0
unless the config is invalid or the run itself failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from edgestream_hub.errors import EdgeStreamError


class ReplayError(EdgeStreamError):
    """The config is invalid, an input cannot be opened, or the replay run failed."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="agent_cmd", required=True)
    r = sub.add_parser("replay", help="run an agent config on recorded samples (JSON lines)")
    r.add_argument("--config", required=True, help="the agent.json to try")
    r.add_argument("--input", required=True, help='samples, one {"t","sensor","value"} JSON object per line ("-" = stdin)')
    r.add_argument("--runtime", choices=("micropython", "cpython"), default="micropython",
                   help="interpreter that runs the pipeline (default: micropython)")
    r.add_argument("--board", choices=("esp32", "rp2040", "tiny"), default="esp32",
                   help="heap size under micropython (default: esp32)")
    from edgestream_tools.deploy import add_board_commands

    add_board_commands(sub)  # deploy, test, logs, check


def _check_config(path: str) -> None:
    # Validate on the host first: a clear error before starting an interpreter.
    from edgestream_agent.config import ConfigError, load

    try:
        load(path)
    except ConfigError as e:
        raise ReplayError(f"config {e}" if str(e).startswith(str(path)) else f"config {path}: {e}") from e


def run(args: argparse.Namespace) -> int:
    from edgestream_tools import deploy

    if args.agent_cmd in deploy.COMMANDS:
        return deploy.run(args)
    if args.agent_cmd != "replay":  # pragma: no cover - argparse enforces it
        raise ReplayError(f"unknown agent command {args.agent_cmd!r}")
    _check_config(args.config)
    if args.input != "-" and not Path(args.input).is_file():
        raise ReplayError(f"input {args.input}: no such file")
    if args.runtime == "cpython":
        return _run_cpython(args.config, args.input)
    return _run_micropython(args.config, args.input, args.board)


def _run_cpython(config: str, input: str) -> int:
    from edgestream_agent.config import load
    from edgestream_agent.replay import Replay

    r = Replay(load(config), sys.stdout, sys.stderr)
    if input == "-":
        r.run(sys.stdin)
    else:
        with open(input, encoding="utf-8", errors="replace") as f:
            r.run(f)
    sys.stdout.flush()
    return 0


def _run_micropython(config: str, input: str, board: str) -> int:
    from edgestream_tools import micropython as mp

    from edgestream_tools.bundle import build

    argv = mp.command(board) + ["-m", "edgestream_agent.replay", str(config), "-" if input == "-" else str(input)]
    # Like a board, import precompiled .mpy: compiling the sources would need
    # more heap than the board has. stderr goes to a temp file (no pipe to
    # fill up while stdout streams).
    with tempfile.TemporaryDirectory() as lib, tempfile.TemporaryFile() as err:
        build(Path(lib), None, 3)  # -O3: no asserts or line numbers, less heap
        proc = subprocess.Popen(
            argv,
            env=mp.environment([lib]),
            stdin=sys.stdin.buffer if input == "-" and hasattr(sys.stdin, "buffer") else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
        )
        out = sys.stdout
        try:
            for line in proc.stdout or ():
                out.write(line.decode("utf-8", errors="replace"))
            out.flush()
        except BrokenPipeError:  # `... | head`: the reader has gone, stop quietly
            proc.kill()
            proc.wait()
            proc.stdout.close()
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        rc = proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        err.seek(0)
        text = err.read().decode("utf-8", errors="replace")
    if rc != 0:
        heap = mp.heap_for(board)
        raise ReplayError(f"micropython ({board}, heap {heap}) exited {rc}:\n{text.rstrip()}")
    sys.stderr.write(text)
    return 0
