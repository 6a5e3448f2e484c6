"""Fixtures for the hub tests; the helpers live in ``hubtest.py`` next to this file."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
# the example plugin "installed" the way pip would: a package plus its dist-info with entry_points.txt
sys.path.append(str(Path(__file__).parent / "plugin_example"))

from hubtest import Harness


@pytest.fixture
def hub(tmp_path):
    """A Harness: fresh registry (built-ins + script source + memory sink), engines stopped at the end."""
    h = Harness(tmp_path)
    try:
        yield h
    finally:
        h.close()
