"""Fixtures for the laptop-to-board tools: virtual boards on ptys, driven by the real mpremote."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from boardtools import Console, Follower, VBoard


@pytest.fixture
def vboard(tmp_path):
    """Start virtual boards: ``vboard(board="esp32", *options)``; each is stopped at the end."""
    started: list[VBoard] = []

    def start(board: str = "esp32", *extra: str, folder: Path | None = None) -> VBoard:
        d = folder or tmp_path / f"board{len(started)}"
        vb = VBoard(board, d, *extra)
        started.append(vb)
        return vb

    try:
        yield start
    finally:
        for vb in started:
            vb.stop()


@pytest.fixture
def console():
    opened: list[Console] = []

    def open_(port: str) -> Console:
        c = Console(port)
        opened.append(c)
        return c

    try:
        yield open_
    finally:
        for c in opened:
            c.close()


@pytest.fixture
def follow():
    """Start long-running edgestream commands: ``follow("agent", "logs", ...)``; each is stopped at the end."""
    started: list[Follower] = []

    def start(*args: str) -> Follower:
        f = Follower(*args)
        started.append(f)
        return f

    try:
        yield start
    finally:
        for f in started:
            f.stop()
