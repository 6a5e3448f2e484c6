"""The progress line: drawn on a terminal only, at most a few times a second, cleared at the end."""

from __future__ import annotations

import io
import os

from edgestream_hub.progress import Progress, byte_position, byte_size


def terminal() -> tuple[int, io.TextIOWrapper]:
    """A pty: (master fd to read what was drawn, the slave as a text stream)."""
    master, slave = os.openpty()
    return master, open(slave, "w", encoding="utf-8")


def drawn(master: int) -> str:
    os.set_blocking(master, False)
    try:
        return os.read(master, 65536).decode()
    except BlockingIOError:
        return ""


def test_draws_at_once_then_at_most_once_per_interval_and_clears():
    master, tty = terminal()
    try:
        p = Progress("job", tty, total_bytes=200, position=lambda: 50, interval_s=3600)
        p.update(1000)
        p.update(2000)  # within the interval: not drawn
        text = drawn(master)
        assert text.startswith("\r\x1b[Kjob: 1,000 records, ") and text.endswith("/s, 25%")
        assert "2,000" not in text
        p.interval_s = 0
        p._next = 0
        p.update(3000)
        assert "job: 3,000 records" in drawn(master)
        p.done()
        assert drawn(master) == "\r\x1b[K"
        p.update(4000)  # done is final
        assert drawn(master) == ""
    finally:
        tty.close()
        os.close(master)


def test_output_to_the_same_terminal_clears_the_line_first():
    master, tty = terminal()
    try:
        p = Progress("job", tty)
        out = p.above(tty)
        p.update(5)
        drawn(master)
        out.write("row\n")
        out.flush()
        assert drawn(master) == "\r\x1b[Krow\r\n"  # the pty turns \n into \r\n
        out.write("row\n")  # nothing shown any more: nothing to clear
        out.flush()
        assert drawn(master) == "row\r\n"
    finally:
        tty.close()
        os.close(master)


def test_nothing_when_the_stream_is_not_a_terminal(tmp_path):
    r, w = os.pipe()
    with open(w, "w") as pipe:
        p = Progress("job", pipe)
        assert not p.enabled
        p.update(10)
        p.done()
        assert p.above(pipe) is pipe
    with open(r, "rb") as f:
        assert f.read() == b""


def test_byte_size_and_position_know_regular_files_only(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    with open(path, "rb") as f:
        f.read(30)
        assert byte_size(f) == 100 and byte_position(f) == 30
    assert byte_position(f) is None  # closed
    r, w = os.pipe()
    with open(r, "rb") as pr, open(w, "wb"):
        assert byte_size(pr) is None and byte_position(pr) is None
