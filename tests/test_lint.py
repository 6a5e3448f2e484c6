"""Types and lint: ``mypy`` and ``ruff check`` pass on the repository with the settings in pyproject.toml.

mypy checks the host code (hub, tools, bench and the host tests; the hub and the tools fully typed); ruff
lints everything, the device zone with pycodestyle and pyflakes only. A failure prints the tool's report.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("command", [["mypy"], ["ruff", "check", "--no-fix"]], ids=["mypy", "ruff"])
def test_the_code_is_clean(command: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(command)} found problems:\n{proc.stdout}{proc.stderr}"
