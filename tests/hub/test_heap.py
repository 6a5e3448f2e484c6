"""The hub's malloc settings: applied on glibc, a user's own glibc variables left alone."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from edgestream_hub import heap

glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                           reason="the settings are glibc's")


@glibc
def test_applies_both_settings() -> None:
    assert heap._apply({}) == {"MALLOC_ARENA_MAX": heap.ARENA_MAX, "MALLOC_MMAP_THRESHOLD_": heap.MMAP_THRESHOLD}


@glibc
def test_leaves_a_setting_the_user_chose() -> None:
    assert heap._apply({"MALLOC_ARENA_MAX": "4"}) == {"MALLOC_MMAP_THRESHOLD_": heap.MMAP_THRESHOLD}
    assert heap._apply({"MALLOC_ARENA_MAX": "4", "MALLOC_MMAP_THRESHOLD_": "65536"}) == {}


@glibc
def test_service_start_tunes_once_per_process(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text("")
    cfg = tmp_path / "hub.yaml"
    cfg.write_text(f"state: {{enabled: false}}\nsources:\n  s: {{file: {{path: {tmp_path / 'in.jsonl'}}}}}\n"
                   f"sinks:\n  o: {{file: {{path: {tmp_path / 'out.jsonl'}}}}}\npipelines:\n  p: {{from: s, to: o}}\n")
    code = ("import sys\nfrom edgestream_hub import heap\nfrom edgestream_hub.service import HubService\n"
            "assert heap._done is None\nsvc = HubService(sys.argv[1]).start()\n"
            "print(sorted(heap._done or {}))\nsvc.stop()\n")
    out = subprocess.run([sys.executable, "-c", code, str(cfg)], capture_output=True, text=True,
                         timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['MALLOC_ARENA_MAX', 'MALLOC_MMAP_THRESHOLD_']"
