"""Fixtures for the agent link tests: the helpers in linktools.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
