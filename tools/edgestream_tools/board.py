"""A MicroPython board on a serial port, as the deploy tools see it (through ``mpremote``'s transport).

``Board(port)`` opens the port; ``connect()`` stops whatever program runs
(Ctrl-C, as ``mpremote`` does, a few times if need be) and soft-resets it
into the raw REPL (a clean heap; ``main.py`` does not run there); ``info()`` asks the board what it is in one round
trip; ``listing()`` gives the size and hash of every file under some folders
in one round trip; ``write()``, ``rename()``, ``remove()``, ``mkdir()`` change its
filesystem (a failure names the path and what to do); ``restart()`` soft-resets it into
``main.py``; ``console()`` passes on its console lines up to one that ends the wait. Errors are
``BoardError`` with a message that says what to do; a board that goes away (unplugged, reset, a
virtual board stopped) is ``BoardGone``, whichever call meets it.
"""

from __future__ import annotations

import ast
import hashlib
import re
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from edgestream_hub.errors import EdgeStreamError

RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"  # then ">", which exec() waits for


class BoardError(EdgeStreamError):
    """No board on the port, a board that does not answer or stop, or a failed file operation."""


class FilesystemFull(BoardError):
    """The board's filesystem has no room for a file (ENOSPC)."""


class BoardGone(BoardError):
    """The serial port failed under a command: the board was unplugged, reset or stopped."""


#: What a board's OSError numbers mean for a path, and what to do (MicroPython prints only the number).
_ERRNO = {
    2: ("ENOENT", "it (or a folder above it) does not exist"),
    13: ("EACCES", "the board refuses access to it"),
    17: ("EEXIST", "it exists, as a file where a folder is needed: remove it (mpremote fs rm :{p}) and run "
                   "this again"),
    20: ("ENOTDIR", "a folder above it is a file: remove that file (mpremote fs ls, fs rm) and run this again"),
    21: ("EISDIR", "it is a folder: remove the folder (mpremote fs rm -r :{p}) and run this again"),
    28: ("ENOSPC", "the filesystem is full"),
    30: ("EROFS", "the filesystem is read-only"),
}


@dataclass
class BoardInfo:
    """What a board says about itself (``Board.info()``)."""

    impl: str                  # "micropython"
    version: tuple[int, ...]   # (1, 29, 0)
    mpy: int | None            # sys.implementation._mpy (None: cannot import .mpy files)
    platform: str              # sys.platform: "esp32", "rp2", "linux" (a virtual board)
    heap: int                  # gc.mem_free() + gc.mem_alloc()
    fs_total: int | None       # bytes, from os.statvfs("/")
    fs_free: int | None
    block: int                 # filesystem block size (statvfs f_bsize), 0 if unknown
    hash: str                  # "sha256", "crc32" or "size": how listing() compares files
    frozen_agent: str | None   # edgestream_agent.VERSION frozen into the firmware, if any
    modules: tuple[str, ...]   # built-in modules present, of those the agent's transports use

    @property
    def mpy_version(self) -> int | None:
        return None if self.mpy is None else self.mpy & 0xFF

    def describe(self) -> str:
        v = ".".join(map(str, self.version))
        fs = "" if self.fs_total is None else f", filesystem {_size(self.fs_total)} ({_size(self.fs_free or 0)} free)"
        mpy = "cannot import .mpy" if self.mpy is None else f".mpy {self.mpy & 0xFF}.{(self.mpy >> 8) & 3}"
        return f"MicroPython {v} ({self.platform}), {mpy}, heap {self.heap // 1024} KB{fs}"


_INFO = r"""
import sys, gc, os
def _i():
    impl = sys.implementation
    how = 'size'
    try:
        import hashlib
        hashlib.sha256
        how = 'sha256'
    except (ImportError, AttributeError):
        try:
            import binascii
            binascii.crc32
            how = 'crc32'
        except (ImportError, AttributeError):
            pass
    try:
        st = os.statvfs('/')
        fs = (st[0] * st[2], st[0] * st[3], st[0])
    except (OSError, AttributeError):
        fs = (None, None, 0)
    frozen = None
    path = sys.path[:]
    try:
        sys.path[:] = ['.frozen']
        import edgestream_agent
        frozen = edgestream_agent.VERSION
    except ImportError:
        pass
    finally:
        sys.path[:] = path
        sys.modules.pop('edgestream_agent', None)
    mods = []
    for m in ('socket', 'select', 'ssl', 'network', 'machine', 'hashlib', 'binascii'):
        try:
            __import__(m)
            mods.append(m)
        except ImportError:
            pass
    gc.collect()
    print(repr((impl.name, tuple(impl.version[:3]), getattr(impl, '_mpy', None), sys.platform,
                gc.mem_free() + gc.mem_alloc(), fs, how, frozen, tuple(mods))))
_i()
del _i
"""

# Size and hash of every file under some folders and of some paths (a folder
# among them has size -1), one line per path as it is found (no list of them
# all on the board); read in 256-byte pieces into one buffer (the agent is
# stopped, but a small heap is small).
_LIST = r"""
import os
def _l(roots, files, how):
    buf = bytearray(256)
    mv = memoryview(buf)
    def h(p):
        n = c = 0
        d = None
        if how == 'sha256':
            import hashlib
            d = hashlib.sha256()
        elif how == 'crc32':
            import binascii
        with open(p, 'rb') as f:
            while True:
                k = f.readinto(buf)
                if not k:
                    break
                n += k
                if d is not None:
                    d.update(mv[:k])
                elif how == 'crc32':
                    c = binascii.crc32(mv[:k], c)
        if d is not None:
            import binascii
            return n, binascii.hexlify(d.digest()).decode()
        return n, '%%08x' %% (c & 0xffffffff) if how == 'crc32' else ''
    def walk(d):
        try:
            entries = list(os.ilistdir(d))
        except OSError:
            return
        for e in entries:
            p = d + '/' + e[0]
            if e[1] & 0x4000:
                print(repr((p, -1, '')))
                walk(p)
            else:
                print(repr((p,) + h(p)))
    for r in roots:
        walk(r)
    for f in files:
        try:
            print(repr((f, -1, '') if os.stat(f)[0] & 0x4000 else (f,) + h(f)))
        except OSError:
            pass
_l(%r, %r, %r)
del _l
"""
#: Paths per round trip where a command names many (their list is source code the board compiles).
BATCH = 12


def _size(n: int) -> str:
    return f"{n / 1024:.0f} KB" if n < 10 * 1024 * 1024 else f"{n / 1024 / 1024:.0f} MB"


def os_errno(text: str) -> int | None:
    """The errno of a board's traceback that ends in an OSError ("OSError: 20", "OSError: [Errno 2] ENOENT")."""
    m = re.search(r"OSError: (?:\[Errno )?(\d+)", text.strip().splitlines()[-1] if text.strip() else "")
    return int(m.group(1)) if m else None


def digest(data: bytes, how: str) -> str:
    """The host side of ``listing()``'s comparison, for one file's bytes."""
    if how == "sha256":
        return hashlib.sha256(data).hexdigest()
    if how == "crc32":
        return "%08x" % (zlib.crc32(data) & 0xFFFFFFFF)
    return ""


class Board:
    """One board on one serial port; see the module docstring."""

    def __init__(self, port: str, timeout: float = 10.0) -> None:
        from mpremote.transport import TransportError  # type: ignore[import-untyped]
        from mpremote.transport_serial import SerialTransport  # type: ignore[import-untyped]

        self.port = port
        self.timeout = timeout
        try:
            self.t = SerialTransport(port, baudrate=115200)
        except TransportError as e:
            raise BoardError(f"no board on {port}: {e} (is it plugged in, and the right port? "
                             f"Another program may hold it: close it first)") from None
        # every read returns within the timeout: a board that stops answering
        # is an error, never a hang
        self.t.serial.timeout = timeout
        self.stopped = ""  # what a program printed when connect() stopped it

    def close(self) -> None:
        try:
            if self.t.in_raw_repl:
                self.t.exit_raw_repl()
            self.t.close()
        except OSError:  # the board went away meanwhile
            self.t.serial.close()

    @contextmanager
    def _io(self) -> Iterator[None]:
        """Turn the serial port failing under a command into BoardGone (pyserial's errors are OSErrors)."""
        try:
            yield
        except OSError as e:
            raise BoardGone(f"the board on {self.port} went away ({e}): was it unplugged or reset? Connect it "
                            "and run this again") from None

    def __enter__(self) -> Board:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the REPL --------------------------------------------------------------------
    def _read_for(self, seconds: float, until: bytes | None = None) -> bytes:
        """What the board prints within seconds (or up to and including ``until``): bounded even
        when a program prints without pause (mpremote's read_until is not)."""
        out = b""
        end = time.monotonic() + seconds
        s = self.t.serial
        while time.monotonic() < end:
            n = s.in_waiting
            if n:
                out += s.read(1 if until is not None else n)
                if until is not None and out.endswith(until):
                    break
            else:
                time.sleep(0.01)
        return out

    def connect(self) -> None:
        """Stop a running program (Ctrl-C), then soft-reset into the raw REPL: a clean heap, main.py not running."""
        with self._io():
            self._connect()

    def _connect(self) -> None:
        s = self.t.serial
        seen = b""
        for attempt in range(3):
            s.write(b"\r\x03")
            seen += self._read_for(0.2 + 0.3 * attempt)
            s.write(b"\r\x01")
            got = self._read_for(self.timeout / 3, RAW_BANNER)
            seen += got
            if got.endswith(RAW_BANNER):
                if b"Traceback" in seen or b"KeyboardInterrupt" in seen:
                    self.stopped = seen.decode(errors="replace")
                self.reset()
                return
        if not seen.strip():
            raise BoardError(f"no MicroPython answers on {self.port} (no REPL prompt within {self.timeout:g} s): "
                             f"is a board on it, and is it running MicroPython? (A silent program that turned "
                             f"Ctrl-C off looks the same: reset the board and run this again.)")
        raise BoardError(f"the board on {self.port} is busy: a program does not stop on Ctrl-C (it turned "
                         f"Ctrl-C off or catches KeyboardInterrupt). Reset the board and run this again; it "
                         f"printed: {seen.decode(errors='replace')[-300:]!r}")

    def reset(self) -> None:
        """Soft reset in the raw REPL (main.py does not run): what mpremote does before its first command."""
        from mpremote.transport import TransportError

        try:
            with self._io():
                self.t.enter_raw_repl(soft_reset=True, timeout_overall=self.timeout)
        except TransportError as e:
            raise BoardError(f"the board on {self.port} did not come back from a soft reset: {e}") from None

    def exec(self, code: str, timeout: float = 30, consumer: Callable[[bytes], None] | None = None) -> bytes:
        """Run code in the raw REPL; its output, or BoardError with the board's traceback."""
        from mpremote.transport import TransportError

        try:
            with self._io():
                self.t.exec_raw_no_follow(code)
                out, err = self.t.follow(timeout, consumer)
        except TransportError as e:
            raise BoardError(f"the board on {self.port} stopped answering: {e}") from None
        if err:
            text = err.decode(errors="replace").strip()
            if "ENOSPC" in text or "Errno 28" in text or text.endswith("OSError: 28"):
                raise FilesystemFull(text)
            raise BoardError(f"the board raised:\n{text}")
        return out

    def eval(self, code: str, timeout: float = 30) -> Any:
        return ast.literal_eval(self.exec(code, timeout).decode().strip())

    # -- what the board is and has ------------------------------------------------------
    def info(self) -> BoardInfo:
        impl, version, mpy, platform, heap, fs, how, frozen, mods = self.eval(_INFO)
        return BoardInfo(impl, tuple(version), mpy, platform, heap, fs[0], fs[1], fs[2], how, frozen, tuple(mods))

    def listing(self, roots: list[str], files: list[str], how: str) -> dict[str, tuple[int, str]]:
        """{path: (size, hash)} of the files under roots and of files; folders have size -1."""
        out: dict[str, tuple[int, str]] = {}
        for i in range(0, max(len(files), 1), BATCH):
            text = self.exec(_LIST % (roots if i == 0 else [], files[i:i + BATCH], how), timeout=120).decode()
            for line in text.splitlines():
                if line.strip():
                    p, n, d = ast.literal_eval(line)
                    out[p] = (n, d)
        return out

    # -- files -------------------------------------------------------------------------------
    def _fs(self, path: str, doing: str, code: str) -> None:
        """Run a filesystem operation on path; an OSError on the board becomes a message naming path."""
        try:
            self.exec(code)
        except BoardGone:
            raise
        except BoardError as e:
            n = os_errno(str(e))
            if n is None or n == 28:
                raise
            name, what = _ERRNO.get(n, (f"errno {n}", ""))
            raise BoardError(f"the board could not {doing} {path} (OSError {n}, {name})"
                             + (f": {what.format(p=path.lstrip('/'))}" if what else "")) from None

    def write(self, path: str, data: bytes) -> None:
        """Write a file in place (512-byte pieces); on ENOSPC what was written is removed again."""
        try:
            self._fs(path, "write", f"f=open({path!r},'wb')\nw=f.write")
            for i in range(0, len(data), 512):
                self.exec(f"w({bytes(data[i:i + 512])!r})")
            self.exec("f.close()\ndel f, w")
        except FilesystemFull:
            try:
                self.exec(f"import os\ntry:\n f.close()\nexcept Exception:\n pass\nos.remove({path!r})")
            except BoardError:
                pass
            raise

    def rename(self, moves: list[tuple[str, str]]) -> None:
        """Rename (old, new) pairs in order, a few per round trip; a file at new is replaced (as POSIX rename)."""
        for i in range(0, len(moves), BATCH):
            part = moves[i:i + BATCH]
            self._fs(", ".join(n for _, n in part), "move into place",
                     f"import os\nfor a, b in {part!r}:\n os.rename(a, b)")

    def discard(self, paths: list[str]) -> None:
        """Remove files that may not exist, a few per round trip (what a command cut short left)."""
        for i in range(0, len(paths), BATCH):
            self.exec(f"import os\nfor p in {paths[i:i + BATCH]!r}:\n try:\n  os.remove(p)\n except OSError:\n  pass")

    def mkdir(self, path: str) -> None:
        """Make a folder; one that exists is fine, a file of that name is not (EEXIST names it)."""
        self._fs(path, "make the folder", f"import os\ntry:\n os.mkdir({path!r})\nexcept OSError as e:\n"
                                          f" if e.args[0] != 17 or not os.stat({path!r})[0] & 0x4000: raise")

    def remove(self, path: str, folder: bool = False) -> None:
        self._fs(path, "remove", f"import os\nos.{'rmdir' if folder else 'remove'}({path!r})")

    # -- restarting ---------------------------------------------------------------------------
    def restart(self, done: Callable[[str], bool], timeout: float, on_line: Callable[[str], None]) -> str | None:
        """Soft-reset into main.py; pass each console line to on_line until done(line).

        Returns the line that ended the wait, or None after timeout seconds.
        """
        with self._io():
            self.t.exit_raw_repl()
            self._read_for(5, b">>> ")
            self.t.serial.write(b"\x04")
        return self.console(done, timeout, on_line)

    def console(self, done: Callable[[str], bool], timeout: float, on_line: Callable[[str], None]) -> str | None:
        """Pass each console line to on_line until done(line) (returned) or timeout seconds (None)."""
        with self._io():
            return self._console(done, timeout, on_line)

    def _console(self, done: Callable[[str], bool], timeout: float, on_line: Callable[[str], None]) -> str | None:
        s = self.t.serial
        buf = b""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            n = s.in_waiting
            if not n:
                time.sleep(0.02)
                continue
            buf += s.read(n)
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                line = raw.decode(errors="replace").rstrip("\r")
                on_line(line)
                if done(line):
                    return line
            if buf.endswith(b">>> ") and done(buf.decode(errors="replace")):
                # the REPL's prompt ends no line: it waits for input, nothing more comes
                line = buf.decode(errors="replace")
                on_line(line)
                return line
        if buf:
            on_line(buf.decode(errors="replace").rstrip("\r"))
        return None


def parent_folders(paths: list[str]) -> list[str]:
    """Every folder the paths need, parents first ("/lib/a/b.mpy" -> "/lib", "/lib/a")."""
    out: list[str] = []
    for p in paths:
        for parent in reversed(PurePosixPath(p).parents):
            s = str(parent)
            if s != "/" and s not in out:
                out.append(s)
    return out
