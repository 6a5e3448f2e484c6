"""The board build and the profiles that run on it (edgestream_tools.boardbuild, .micropython)."""

from __future__ import annotations

import os
import platform

import pytest

from edgestream_tools import boardbuild, bundle, micropython as mp

PROBE = (
    "import sys, gc\n"
    "gc.collect()\n"
    "a = gc.mem_alloc()\n"
    "import edgestream_agent.agent, edgestream_agent.link, edgestream_shared.frame\n"
    "gc.collect()\n"
    "print(sys.maxsize, edgestream_agent.agent.__file__, gc.mem_alloc() - a)\n"
)


def probe(profile: str) -> tuple[int, str, int]:
    maxsize, file, used = mp.run_code(PROBE, board="esp32", profile=profile).split()
    return int(maxsize), file, int(used)


@pytest.mark.skipif("EDGESTREAM_MICROPYTHON" in os.environ,
                    reason="profiles choose the binary only without the override")
def test_the_frozen_profile_runs_the_checkouts_agent_frozen_on_31_bit_small_ints():
    maxsize, file, used = probe("frozen")
    assert maxsize == 2**31 - 1  # small ints end at 2**30, as on ESP32 and RP2040
    assert not file.endswith(".mpy") and not file.startswith("/")  # from the firmware, not a file
    assert used < 8192  # code and names in "flash": module objects and classes on the heap
    assert boardbuild.is_current("frozen")  # built from this checkout's sources


@pytest.mark.skipif("EDGESTREAM_MICROPYTHON" in os.environ,
                    reason="profiles choose the binary only without the override")
def test_the_mpy_profile_imports_compiled_modules_on_the_stock_build():
    maxsize, file, used = probe("mpy")
    assert maxsize == 2**31 - 1
    assert file.endswith("edgestream_agent/agent.mpy")
    # code and interned names on the heap too, as on a stock firmware
    assert used > 3 * probe("frozen")[2]


def test_an_unknown_profile_is_refused():
    with pytest.raises(mp.MicroPythonError, match="unknown profile 'flash': expected one of frozen, mpy, host"):
        mp.command("esp32", "flash")


def test_the_frozen_build_goes_stale_when_a_device_module_changes(tmp_path, monkeypatch):
    names = {p.relative_to(boardbuild.ROOT) for p in boardbuild.inputs("frozen")}
    for _, rel in bundle.sources():
        assert any(str(n).endswith(str(rel)) for n in names), rel
    for manifest in ("firmware/manifest.py", "agent/manifest.py", "agent/mqtt/manifest.py", "shared/manifest.py"):
        assert boardbuild.ROOT / manifest in boardbuild.inputs("frozen"), manifest
    # the stamp follows the content of every input
    extra = boardbuild.ROOT / "build" / "board" / "stamp-probe.py"
    extra.parent.mkdir(parents=True, exist_ok=True)
    extra.write_text("x = 1\n")
    try:
        real = boardbuild.inputs
        monkeypatch.setattr(boardbuild, "inputs", lambda v: [*real(v), extra])
        before = boardbuild.stamp_value("frozen")
        extra.write_text("x = 2\n")
        assert boardbuild.stamp_value("frozen") != before
    finally:
        extra.unlink()


def test_cross_flags_say_how_to_build_32_bit_or_why_not(monkeypatch):
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    assert boardbuild.cross_flags() == ["-m32"]
    monkeypatch.setattr(platform, "machine", lambda: "armv7l")
    assert boardbuild.cross_flags() == []
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    with pytest.raises(boardbuild.BoardBuildError, match="no 32-bit build on a aarch64 host.*EDGESTREAM_MICROPYTHON"):
        boardbuild.cross_flags()


def test_an_unknown_variant_is_refused():
    with pytest.raises(boardbuild.BoardBuildError, match="unknown board build variant 'tiny'"):
        boardbuild.binary("tiny")
