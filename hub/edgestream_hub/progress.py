"""A one-line progress report on stderr for long command-line runs.

Shown only when the stream (stderr) is a terminal: piped or redirected, a run
prints nothing extra. The line is redrawn in place at most ``1 / interval_s``
times a second and cleared by :meth:`Progress.done`, so a finished run leaves
the terminal as it found it::

    edgestream sql: 412,000 records, 395,112/s, 41%

``position`` is asked (only when drawing) for the bytes read so far; with
``total_bytes`` the line shows a percentage. Safe to call from two threads (a
reader thread updating, the main thread writing results).
"""

from __future__ import annotations

import os
import stat
import sys
import threading
import time
from typing import IO, Any, Callable, Optional, Protocol, TextIO


def _isatty(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    if isatty is None:
        return False
    try:
        return bool(isatty())
    except (AttributeError, ValueError, OSError):
        return False


def byte_size(f: IO[Any]) -> Optional[int]:
    """Size of an open file in bytes when it is a regular file (not a pipe or a terminal), else None."""
    try:
        st = os.fstat(f.fileno())
    except (AttributeError, OSError, ValueError):
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def byte_position(f: Optional[IO[Any]]) -> Optional[int]:
    """Bytes read so far from an open binary file, or None when it cannot tell (a pipe, closed)."""
    try:
        return f.tell() if f is not None and not f.closed else None
    except (OSError, ValueError):
        return None


class TextOut(Protocol):
    """What ``Progress.above`` gives: a text stream to write results to."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


class _Above:
    """A text stream that erases the status line before each write, so output never lands on it."""

    def __init__(self, stream: TextIO, progress: "Progress") -> None:
        self._stream = stream
        self._progress = progress

    def write(self, text: str) -> int:
        self._progress.clear()
        return self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class Progress:
    """Records read, rate and percentage on one self-rewriting line of a terminal."""

    def __init__(self, label: str, stream: Optional[TextIO] = None, *, total_bytes: Optional[int] = None,
                 position: Optional[Callable[[], Optional[int]]] = None,
                 interval_s: float = 0.25) -> None:
        self.label = label
        self.stream = sys.stderr if stream is None else stream
        self.enabled = _isatty(self.stream)
        self.total_bytes = total_bytes if total_bytes else None
        self.position = position
        self.interval_s = interval_s
        self.records = 0
        self._start = time.monotonic()
        self._next = self._start  # the first update draws at once
        self._shown = False
        self._lock = threading.Lock()

    def update(self, records: int) -> None:
        """``records`` read so far; redraws when the last draw is older than the interval."""
        self.records = records
        if not self.enabled:
            return
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.interval_s
        self._draw(now)

    def _draw(self, now: float) -> None:
        rate = self.records / max(now - self._start, 1e-3)
        text = f"{self.label}: {self.records:,} records, {rate:,.0f}/s"
        pos = self.position() if self.position is not None and self.total_bytes else None
        if pos is not None and self.total_bytes:
            text += f", {min(100, 100 * pos // self.total_bytes)}%"
        with self._lock:
            try:
                self.stream.write("\r\x1b[K" + text)
                self.stream.flush()
            except (OSError, ValueError):
                self.enabled = False  # the terminal went away: stop reporting, keep running
                return
            self._shown = True

    def above(self, stream: TextIO) -> TextOut:
        """``stream``, or when it is a terminal too, a wrapper that clears the status line before each write."""
        return _Above(stream, self) if self.enabled and _isatty(stream) else stream

    def clear(self) -> None:
        """Erase the status line (the next update draws it again)."""
        with self._lock:
            if not self._shown:
                return
            self._shown = False
            try:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
            except (OSError, ValueError):
                self.enabled = False

    def done(self) -> None:
        """End of the run: erase the line for good."""
        self.clear()
        self.enabled = False
