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
unless the config is invalid or the run itself failed. When stderr is a
terminal, a progress line (lines read, rate, percentage of a file) is shown
there while the replay runs and cleared at the end.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import IO, BinaryIO, Iterator, cast

from edgestream_hub.errors import EdgeStreamError
from edgestream_hub.progress import Progress, byte_position, byte_size


class ReplayError(EdgeStreamError):
    """The config is invalid, an input cannot be opened, or the replay run failed."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="agent_cmd", required=True)
    r = sub.add_parser("replay", help="run an agent config on recorded samples (JSON lines)")
    r.add_argument("--config", required=True, help="the agent.json to try")
    r.add_argument("--input", required=True,
                   help='samples, one {"t","sensor","value"} JSON object per line ("-" = stdin)')
    r.add_argument("--runtime", choices=("micropython", "cpython"), default="micropython",
                   help="interpreter that runs the pipeline (default: micropython)")
    r.add_argument("--board", choices=("esp32", "rp2040", "tiny"), default="esp32",
                   help="heap size under micropython (default: esp32)")
    from edgestream_tools.deploy import add_board_commands

    add_board_commands(sub)  # deploy, test, logs, check
    from edgestream_tools import agent_bench

    agent_bench.add_parser(sub)


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
    if args.agent_cmd == "bench":
        from edgestream_tools import agent_bench

        return agent_bench.run(args)
    if args.agent_cmd != "replay":  # pragma: no cover - argparse enforces it
        raise ReplayError(f"unknown agent command {args.agent_cmd!r}")
    _check_config(args.config)
    if args.input != "-" and not Path(args.input).is_file():
        raise ReplayError(f"input {args.input}: no such file")
    if args.runtime == "cpython":
        return _run_cpython(args.config, args.input)
    from edgestream_tools.agentcheck import DoesNotFit, check_start

    try:  # a config the board could not start is refused: the same measurement as `agent check`
        check_start(args.config, args.board, "frozen")
    except DoesNotFit as e:
        print(f"edgestream agent replay: does not fit: {e}", file=sys.stderr)
        return DoesNotFit.exit_code
    return _run_micropython(args.config, args.input, args.board)


@contextmanager
def _reading(input: str) -> Iterator[tuple[io.BufferedReader, Progress]]:
    """The input opened for bytes ("-" = stdin) and its progress line, both closed at the end."""
    # stdin's buffer is a BufferedReader too (typeshed calls it a BinaryIO): both have read1
    f = cast(io.BufferedReader, sys.stdin.buffer) if input == "-" else open(input, "rb")
    progress = Progress("edgestream agent replay", total_bytes=byte_size(f), position=lambda: byte_position(f))
    try:
        yield f, progress
    finally:
        progress.done()
        if f is not sys.stdin.buffer:
            f.close()


class _Lines:
    """The input a line at a time for ``Replay.run``, counted for the progress line."""

    def __init__(self, f: BinaryIO, progress: Progress) -> None:
        self._f = f
        self._progress = progress
        self.count = 0

    def readline(self) -> str:
        raw = self._f.readline()
        if raw:
            self.count += 1
            if not self.count & 255:
                self._progress.update(self.count)
        return raw.decode("utf-8", errors="replace")


def _run_cpython(config: str, input: str) -> int:
    from edgestream_agent.config import load
    from edgestream_agent.replay import Replay

    cfg = load(config)
    with _reading(input) as (f, progress):
        Replay(cfg, progress.above(sys.stdout), progress.above(sys.stderr)).run(_Lines(f, progress))
        sys.stdout.flush()
    return 0


def _pump(src: io.BufferedReader, dst: IO[bytes], progress: Progress) -> None:
    """Feed the input into micropython's stdin as it comes, counting lines for the progress line."""
    lines = 0
    try:
        while True:
            chunk = src.read1(1 << 16)
            if not chunk:
                break
            dst.write(chunk)
            dst.flush()
            lines += chunk.count(b"\n")
            progress.update(lines)
    except (OSError, ValueError):  # micropython has gone (failed, or killed after a broken pipe)
        pass
    finally:
        try:
            dst.close()
        except (OSError, ValueError):
            pass


def _stream_through(argv: list[str], env: dict[str, str], src: io.BufferedReader, err: IO[bytes],
                    progress: Progress) -> int:
    """Run argv with src streaming into its stdin and its stdout into ours; its exit code."""
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
    feeder = threading.Thread(target=_pump, args=(src, proc.stdin, progress), name="replay-input", daemon=True)
    feeder.start()
    out = progress.above(sys.stdout)
    try:
        for line in proc.stdout or ():
            out.write(line.decode("utf-8", errors="replace"))
        out.flush()
    except BaseException:  # a broken pipe (`... | head`: the caller exits quietly), Ctrl-C: stop it too
        proc.kill()
        raise
    finally:
        rc = proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        feeder.join(5)  # a file ends at once; a stdin that never ends is left to the daemon thread
    return rc


def _run_micropython(config: str, input: str, board: str) -> int:
    from edgestream_tools import micropython as mp
    from edgestream_tools.bundle import build

    argv = mp.command(board) + ["-m", "edgestream_agent.replay", str(config), "-"]
    # Like a board, import precompiled .mpy: compiling the sources would need
    # more heap than the board has. The input streams in through stdin (this
    # process reads it, so it can report progress); stderr goes to a temp file
    # (no pipe to fill up while stdout streams).
    with tempfile.TemporaryDirectory() as lib, tempfile.TemporaryFile() as err:
        build(Path(lib), None, 3)  # -O3: no asserts or line numbers, less heap
        with _reading(input) as (src, progress):
            rc = _stream_through(argv, mp.environment([lib]), src, err, progress)
        err.seek(0)
        text = err.read().decode("utf-8", errors="replace")
    if rc != 0:
        heap = mp.heap_for(board)
        raise ReplayError(f"micropython ({board}, heap {heap}) exited {rc}:\n{text.rstrip()}")
    sys.stderr.write(text)
    return 0
