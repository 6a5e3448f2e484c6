"""The manifests resolve with MicroPython's own manifest tool, one per installable part.

``tools/manifestfile.py`` from the vendored MicroPython source (unpacked by
``edgestream_tools.boardbuild``) runs each manifest in compile mode (what
micropython-lib's package builds use: ``metadata()`` first, ``require()`` by
name) and in freeze mode (a firmware build), as the board build does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edgestream_tools import boardbuild, bundle

ROOT = boardbuild.ROOT
AGENT = ROOT / "agent" / "edgestream_agent"
SHARED = ROOT / "shared" / "edgestream_shared"
MQTT = {"mqtt.py", "mqtt_tls.py", "mqtt_transport.py"}
SERIAL = {"serial_link.py"}


def resolve(manifest: Path, mode: str) -> tuple[set[str], Any]:
    """(target paths, top-level metadata) of one manifest, as makemanifest.py resolves it."""
    m = boardbuild.resolve_manifest(manifest, freeze=mode == "freeze")
    targets = [f.target_path for f in m.files()]
    assert len(targets) == len(set(targets)), f"{manifest}: a file is listed twice"
    return set(targets), m.metadata()


def agent_files(names) -> set[str]:
    return {f"edgestream_agent/{n}" for n in names}


def all_of(pkg_dir: Path) -> set[str]:
    return {p.relative_to(pkg_dir.parent).as_posix() for p in pkg_dir.rglob("*.py")}


@pytest.mark.parametrize("mode", ["compile", "freeze"])
def test_each_part_resolves_to_its_files(mode):
    core = all_of(AGENT) - agent_files(MQTT | SERIAL)
    expect = {
        "shared": all_of(SHARED),
        "agent/core": core,
        "agent/mqtt": core | agent_files(MQTT),
        "agent/serial": core | agent_files(SERIAL) | all_of(SHARED),
        "agent": all_of(AGENT) | all_of(SHARED),
    }
    for part, files in expect.items():
        got, meta = resolve(ROOT / part / "manifest.py", mode)
        assert got == files, f"{part}/manifest.py: missing {sorted(files - got)}, extra {sorted(got - files)}"
        assert meta.version and meta.description, f"{part}/manifest.py has no metadata()"


def test_the_firmware_manifest_freezes_the_port_modules_the_agent_and_shared():
    got, _ = resolve(ROOT / "firmware" / "manifest.py", "freeze")
    ours = all_of(AGENT) | all_of(SHARED)
    assert ours <= got
    assert "asyncio/__init__.py" in got  # the port's own, through $(PORT_DIR)/boards/manifest.py
    # and the board build freezes what the manifest names: every device module
    assert {str(rel) for _, rel in bundle.sources()} == ours


def test_the_agent_and_shared_manifests_go_together(tmp_path):
    # each part is require()d (its own metadata level), so two parts in one
    # build do not clash over metadata(), and a file required twice is frozen once
    top = tmp_path / "board.py"
    top.write_text(
        f'add_library("edgestream", "{ROOT}")\n'
        f'add_library("edgestream-agent", "{ROOT / "agent"}")\n'
        'require("shared", library="edgestream")\n'
        'require("mqtt", library="edgestream-agent")\n'
        'require("serial", library="edgestream-agent")\n'
    )
    got, _ = resolve(top, "freeze")
    assert got == all_of(AGENT) | all_of(SHARED)

