"""``edgestream vboard``: a virtual board on a pty, driven by the real ``mpremote``.

It is the real ``micropython`` binary with a board's heap cap, its folder as
the board's filesystem and its console on a pty::

    $ edgestream vboard --board esp32 --dir board/
    vboard: esp32 on /dev/pts/7
    $ mpremote connect /dev/pts/7 fs ls :      # or: edgestream agent deploy --port /dev/pts/7 ...

What makes the unix port behave like a board on a serial console:

- The filesystem: the board folder is mounted at ``/`` (``os.VfsPosix``), the
  current directory is ``/`` and ``sys.path`` is ``['', '.frozen', '/lib']``,
  as on ESP32 and RP2040. ``--fs-size`` makes it a littlefs filesystem of that
  size instead (``os.VfsLfs2`` on a block device backed by ``flash.img`` in the
  folder): a full filesystem refuses writes with ``OSError: [Errno 28] ENOSPC``
  as a board's flash does; the host's ``/dev/pts`` is then mounted at
  ``/dev/pts``, so a pty's path is a serial port for the agent (on the folder
  filesystem a symlink in the folder to the pty is).
- Soft reset: the unix port has none; a Ctrl-D at the REPL (friendly or raw),
  ``machine.soft_reset()`` or ``sys.exit()`` end its process. The supervisor
  (this process, CPython) then starts it again on the same pty, prints
  ``MPY: soft reboot``, runs ``boot.py`` and, in the friendly REPL mode,
  ``main.py`` (from the board folder, as a board does), and enters the REPL
  mode the board was in: after a soft reset from the raw REPL it prints
  ``raw REPL; CTRL-B to exit`` and ``>``, which is what ``mpremote`` waits for.
- Ctrl-C: while code runs, the port catches SIGINT (``KeyboardInterrupt``);
  at the REPL, Ctrl-C is a byte its line editor reads. The supervisor checks
  which (``SigCgt`` in ``/proc/<pid>/status``) and sends SIGINT or the byte,
  so Ctrl-C interrupts a running ``main.py`` and ``mpremote``'s Ctrl-C,
  Ctrl-A enters the raw REPL over a running program, as on a board; code
  that turned the interrupt off (``micropython.kbd_intr(-1)``, as
  ``mpremote mount`` does) gets the byte.
- The console: bytes are passed through unchanged. While no program has the
  pty open, the board's output is dropped (as a USB console nobody reads);
  while one has, a slow reader slows the board down.
- The interpreter dies with the supervisor (``PR_SET_PDEATHSIG`` on Linux, and
  the console pty is its controlling terminal: when the supervisor goes, the
  pty hangs up and the interpreter gets SIGHUP). An interpreter that cannot
  start or boot is an error at the first start; later, a restart that fails
  or an interpreter killed by a signal is said on the console and retried
  with a growing delay (0.2 s doubling to 5 s), and after five within 30 s
  the supervisor gives up with a message. A board that resets itself right
  after every start (``sys.exit()`` in ``boot.py``) restarts with the same
  growing delay, so it does not spin.

``--report-mpy 5`` makes ``sys.implementation._mpy`` report another ``.mpy``
version (that of an older firmware) to try ``agent deploy``'s firmware check.

Linux only (ptys, ``/proc``). One supervisor runs one board until SIGINT or
SIGTERM; it then stops the interpreter and removes the folder if it made it.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import termios
import time
import tty
from collections.abc import Callable
from pathlib import Path

from edgestream_hub.errors import EdgeStreamError
from edgestream_hub.parent_death import die_with_parent
from edgestream_tools import micropython as mp


class VBoardError(EdgeStreamError):
    """The virtual board cannot start (no micropython, a bad folder or size)."""


# In-band markers the boot script prints for the supervisor (never passed on).
_MARK = b"\x1b]vb:"
UP, RUN, REPL, RESET = b"up", b"run", b"repl", b"reset"
RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
SOFT_REBOOT = b"MPY: soft reboot\r\n"
_BLOCK = 4096
#: Restarts: the first delay after a failure, its cap, how many failures within how long end the board,
#: and how soon after its start a reset counts as the board resetting itself (a loop).
_DELAY, _MAX_DELAY, _FAILURES, _WINDOW, _QUICK = 0.2, 5.0, 5, 30.0, 1.0
#: Seconds the first interpreter has to boot (mount the filesystem) before the board is an error.
_FIRST_BOOT = 30.0

# The boot, in three parts so that only a few hundred bytes of it stay on the
# heap while main.py runs (about what a board's own boot leaves): _vbsetup
# mounts the board's filesystem, sets sys.path (and the reported .mpy
# version) and is dropped; _vbrun runs boot.py and, in the friendly REPL
# mode, main.py in __main__'s globals as a board does (SystemExit: a soft
# reset); the -c line that calls them is the rest.
_SETUP = r"""
import os, sys


def setup(root, lfs, report_mpy):
    if lfs:
        img = open(root + '/flash.img', 'r+b')

        class Flash:
            # block device on a file: the extended interface littlefs uses
            def readblocks(self, n, buf, off=0):
                img.seek(n * 4096 + off)
                img.readinto(buf)

            def writeblocks(self, n, buf, off=0):
                img.seek(n * 4096 + off)
                img.write(buf)
                img.flush()

            def ioctl(self, op, arg):
                if op == 4:
                    return lfs // 4096
                if op == 5:
                    return 4096
                return 0

        dev = Flash()
        try:
            vfs = os.VfsLfs2(dev)
        except OSError:
            os.VfsLfs2.mkfs(dev)
            vfs = os.VfsLfs2(dev)
    else:
        vfs = os.VfsPosix(root)
    os.umount('/')
    os.mount(vfs, '/')
    if lfs:
        # the host's ptys, by their paths: serial ports for the agent (on the
        # folder filesystem a symlink to one does, for no heap)
        try:
            os.mount(os.VfsPosix('/dev/pts'), '/dev/pts')
        except OSError:
            pass
    os.chdir('/')
    sys.path[:] = ['', '.frozen', '/lib']
    if report_mpy is not None:
        # another firmware's .mpy version, for the deploy tools' check
        real, impl = sys, sys.implementation

        class Impl:
            _mpy = (impl._mpy & ~0x3ff) | report_mpy

            def __getattr__(self, k):
                return getattr(impl, k)

        class Sys:
            implementation = Impl()

            def __getattr__(self, k):
                return getattr(real, k)

        sys.modules['sys'] = Sys()
    sys.stdout.write('\x1b]vb:up\x07')
"""
_RUN = r"""
import os, sys


def run(g, names):
    for name in names:
        try:
            os.stat(name)
        except OSError:
            continue
        try:
            sys.stdout.write('\x1b]vb:run\x07')
            execfile(name, g)
        except SystemExit:
            sys.stdout.write('\x1b]vb:reset\x07')
            return
        except BaseException as e:
            # the traceback a board prints: without the boot's frames
            try:
                import io
                out = io.StringIO()
                sys.print_exception(e, out)
                sys.stdout.write('\n'.join(ln for ln in out.getvalue().split('\n') if '_vbrun.py"' not in ln
                                           and '"<stdin>"' not in ln))
            except MemoryError:
                sys.print_exception(e)
    sys.stdout.write('\x1b]vb:repl\x07')
"""
_BOOT_LINE = """import _vbsetup, _vbrun, sys
_vbsetup.setup(%r, %r, %r)
del sys.modules['_vbsetup'], sys.modules['_vbrun'], _vbsetup, sys
_vbrun.run(globals(), %r)
del _vbrun
import gc
gc.collect()
del gc
"""


def write_module(folder: str | Path, name: str, source: str) -> None:
    """Put module ``name`` into folder, compiled (``name.mpy``) when mpy-cross can, else as source.

    Code a board would not have (the boot, a measurement) should leave its
    heap as it found it: compiled from source on the board, every name in it
    (locals too) is interned for good, and interned names live in pools that
    double (the agent's are near the end of one); from an .mpy only the names
    it uses at run time are.
    """
    py = Path(folder, name + ".py")
    py.write_text(source)
    try:
        from edgestream_tools.bundle import mpy_cross

        done = subprocess.run([mpy_cross(), "-o", str(py.with_suffix(".mpy")), str(py)], capture_output=True)
    except (ImportError, OSError):
        return
    if done.returncode == 0:
        py.unlink()  # (a port imports the .py first)


def write_boot(folder: str | Path) -> None:
    """Put the boot's two modules into folder (which goes on MICROPYPATH)."""
    write_module(folder, "_vbsetup", _SETUP)
    write_module(folder, "_vbrun", _RUN)


def boot_args(boot_dir: str | Path, board_folder: str | Path, files: tuple[str, ...] = ("boot.py", "main.py"),
              fs_size: int | None = None, report_mpy: int | None = None) -> tuple[list[str], dict[str, str]]:
    """(argv after the binary, environment) that boot a board folder as a board does.

    The virtual board runs it with ``-i`` (the REPL after main.py); ``agent
    check`` runs it without, so that it measures the same start.
    """
    code = _BOOT_LINE % (str(Path(board_folder).resolve()), fs_size or 0, report_mpy, tuple(files))
    return ["-c", code], dict(os.environ, MICROPYPATH=str(boot_dir))


def strip_marks(out: bytes) -> bytes:
    """Output of a boot without the markers it prints for the supervisor."""
    return re.sub(rb"\x1b\]vb:[a-z]+\x07", b"", out)


def _sigint_caught(pid: int) -> bool:
    """True while the process has a SIGINT handler (MicroPython runs code)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))
    except OSError:
        pass
    return False


#: set before the interpreter starts: its preexec_fn makes it die with the supervisor
_die_with_supervisor: Callable[[], None] | None = None


def _tie_to_console() -> None:
    """Run in the interpreter's process before exec: make it die with the supervisor.

    The console pty becomes its controlling terminal (the process leads a new
    session), so the pty's hang-up when the supervisor's end closes is a
    SIGHUP; on Linux the parent's death is also a SIGKILL (PR_SET_PDEATHSIG).
    """
    try:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    except OSError:
        pass
    if _die_with_supervisor is not None:
        _die_with_supervisor()


def _size_text(n: int) -> str:
    return f"{n // 1048576}m" if n % 1048576 == 0 else f"{n // 1024}k"


def _parse_size(text: str) -> int:
    t = text.strip().lower()
    mult = 1
    if t.endswith("k"):
        mult, t = 1024, t[:-1]
    elif t.endswith("m"):
        mult, t = 1024 * 1024, t[:-1]
    try:
        n = int(t) * mult
    except ValueError:
        raise VBoardError(f"--fs-size {text!r}: expected bytes, e.g. 64k or 1m") from None
    if n < 8 * _BLOCK or n % _BLOCK:
        raise VBoardError(f"--fs-size {text!r}: must be a multiple of 4k and at least 32k")
    return n


class Supervisor:
    """One virtual board: owns the console pty, runs and restarts the interpreter.

    ``open()`` makes the pty and starts the board (returns the pty path);
    ``serve()`` passes bytes until ``stop()``; ``close()`` ends the
    interpreter and removes a folder it made.
    """

    def __init__(self, board: str = "esp32", folder: str | Path | None = None, fs_size: int | None = None,
                 report_mpy: int | None = None, profile: str = "mpy", command: list[str] | None = None) -> None:
        mp.heap_for(board)  # an unknown board fails here, before anything starts
        self.board = board
        self.made_folder = folder is None
        self.folder = Path(tempfile.mkdtemp(prefix=f"vboard-{board}-") if folder is None else folder).resolve()
        self.fs_size = fs_size
        self.report_mpy = report_mpy
        self.profile = mp.check_profile(profile)
        self.command = command or mp.command(board, profile)
        self.proc: subprocess.Popen | None = None
        self.port = ""
        self._boot_dir = ""
        self.resets = 0
        self._um = self._us = self._im = self._is = -1
        self._stopping = False
        self._state = "boot"       # boot | raw-wait | run
        self._raw = False          # the REPL mode a soft reset returns to
        self._run_main = True
        self._hold = b""           # output held back: maybe the start of a marker
        self._tail = b""           # recent output, to see the REPL mode
        self._to_user = bytearray()
        self._to_board = bytearray()
        self._queued = bytearray()  # user input held while the board enters raw mode
        self._connected = False
        self._last_sigint = 0.0
        self._announced = False
        self._booted = False       # this interpreter has mounted the filesystem
        self._in_file = False      # it runs boot.py or main.py (else the boot's own code, or the REPL)
        self._ctrl_c_early = False  # a Ctrl-C that came before that
        self._killed = False       # this interpreter was ended by the supervisor (a soft reset)
        self._started_at = 0.0     # when it was started
        self._typed = False        # the user sent it something since
        self._said = b""           # the end of what it printed (for an error message)
        self._restart_at: float | None = None  # after it ended: when to start the next
        self._failures: list[float] = []       # times of recent failed starts and crashes
        self._loops = 0            # resets in a row right after the start, without input

    # -- start / stop -------------------------------------------------------
    def open(self) -> str:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise VBoardError(f"--dir {self.folder}: cannot use it as the board's folder: {e}") from e
        if self.fs_size:
            img = self.folder / "flash.img"
            if img.exists() and img.stat().st_size != self.fs_size:
                have = _size_text(img.stat().st_size)
                raise VBoardError(f"{img} holds a {have} filesystem, not --fs-size {_size_text(self.fs_size)}: "
                                  f"run with --fs-size {have} to keep its files, or copy them off (mpremote fs cp) "
                                  f"and remove {img} to start with an empty filesystem of the new size")
            if not img.exists():
                # a fresh flash (erased), formatted by the board at its first boot
                img.write_bytes(b"\xff" * self.fs_size)
        self._boot_dir = tempfile.mkdtemp(prefix="vboard-boot-")
        write_boot(self._boot_dir)
        self._um, self._us = os.openpty()
        tty.setraw(self._us)
        self.port = os.ttyname(self._us)
        os.close(self._us)  # the user side is for mpremote; a held fd would hide its hang-ups
        self._us = -1
        self._im, self._is = os.openpty()
        tty.setraw(self._is)  # no echo, no line editing, no signals: the port sets its own modes
        for fd in (self._um, self._im):
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
        self._spawn()
        return self.port

    def _spawn(self) -> None:
        """Start the interpreter; one that cannot be started is a failure (``_failed``)."""
        files = ("boot.py", "main.py") if self._run_main else ("boot.py",)
        argv, env = boot_args(self._boot_dir, self.folder, files, self.fs_size, self.report_mpy)
        self._state = "boot"
        self._hold = b""
        self._booted = self._in_file = False
        self._last_sigint = 0.0
        self._killed = self._typed = False
        self._said = b""
        self._restart_at = None
        self._started_at = time.monotonic()
        global _die_with_supervisor
        _die_with_supervisor = die_with_parent(signal.SIGKILL)
        try:
            self.proc = subprocess.Popen(
                self.command + ["-i", *argv],
                stdin=self._is, stdout=self._is, stderr=self._is,
                cwd=self.folder, start_new_session=True, env=env, preexec_fn=_tie_to_console,
            )
        except OSError as e:
            self.proc = None
            self._failed(f"cannot start the interpreter {self.command[0]}: {e.strerror or e}")

    def stop(self) -> None:
        self._stopping = True

    def close(self) -> None:
        self._stopping = True
        if self.proc is not None and self.proc.poll() is None:
            self._killed = True
            self.proc.kill()
            self.proc.wait(10)
        for fd in (self._um, self._im, self._is):
            if fd >= 0:
                os.close(fd)
        self._um = self._im = self._is = -1
        if self._boot_dir:
            shutil.rmtree(self._boot_dir, ignore_errors=True)
        if self.made_folder:
            shutil.rmtree(self.folder, ignore_errors=True)

    # -- the loop -------------------------------------------------------------
    def serve(self, on_up: Callable[[Supervisor], None] | None = None) -> None:
        """Pass bytes both ways until stop(); on_up() once the board has booted."""
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        old = signal.set_wakeup_fd(wake_w) if _main_thread() else None
        try:
            while not self._stopping:
                self._step(wake_r, on_up)
        finally:
            if old is not None:
                signal.set_wakeup_fd(old)
            os.close(wake_r)
            os.close(wake_w)

    def _step(self, wake_r: int, on_up: Callable[[Supervisor], None] | None) -> None:
        p = select.poll()
        p.register(wake_r, select.POLLIN)
        self._connected = self._user_connected()
        if len(self._to_user) < 65536:
            p.register(self._im, select.POLLIN | (select.POLLOUT if self._to_board else 0))
        elif self._to_board:
            p.register(self._im, select.POLLOUT)
        if self._connected:
            p.register(self._um, select.POLLIN | (select.POLLOUT if self._to_user else 0))
        elif self._to_user:
            self._to_user.clear()  # nobody reads the console: the output is gone, as on USB
        for fd, ev in p.poll(50 if self._connected else 20):
            if fd == wake_r:
                try:
                    os.read(wake_r, 512)
                except BlockingIOError:
                    pass
            elif fd == self._im:
                if ev & select.POLLIN:
                    self._from_board(on_up)
                if ev & select.POLLOUT and self._to_board:
                    self._to_board = self._to_board[self._write(self._im, self._to_board):]
            elif fd == self._um:
                if ev & select.POLLIN:
                    self._from_user()
                if ev & select.POLLOUT and self._to_user:
                    self._to_user = self._to_user[self._write(self._um, self._to_user):]
        if self._stopping:
            return
        if self.proc is not None and self.proc.poll() is not None:
            self._drain_board(on_up)
            self._ended()
        elif self.proc is None and self._restart_at is not None and time.monotonic() >= self._restart_at:
            self._soft_reset()
        elif not self._announced and time.monotonic() - self._started_at > _FIRST_BOOT:
            self._failed(f"the interpreter {self.command[0]} did not boot within {_FIRST_BOOT:g} s (it printed: "
                         f"{self._printed()}): is it a MicroPython unix port?")

    def _user_connected(self) -> bool:
        q = select.poll()
        q.register(self._um, select.POLLIN)
        return not any(ev & select.POLLHUP for _, ev in q.poll(0))

    @staticmethod
    def _write(fd: int, data: bytearray) -> int:
        try:
            return os.write(fd, data)
        except BlockingIOError:
            return 0
        except OSError as e:
            if e.errno in (errno.EIO, errno.EAGAIN):
                return len(data) if e.errno == errno.EIO else 0
            raise

    # -- board -> user ----------------------------------------------------------
    def _drain_board(self, on_up: Callable[[Supervisor], None] | None) -> None:
        for _ in range(64):  # what the last process printed before it ended
            if not self._from_board(on_up):
                break

    def _from_board(self, on_up: Callable[[Supervisor], None] | None) -> bool:
        try:
            data = os.read(self._im, 4096)
        except (BlockingIOError, OSError):
            return False
        if not data:
            return False
        data = self._hold + data
        self._hold = b""
        while data:
            i = data.find(_MARK)
            if i < 0:
                # keep back a tail that may be the start of a marker
                k = data.rfind(b"\x1b")
                if k >= 0 and _MARK.startswith(data[k:k + len(_MARK)]) and b"\x07" not in data[k:]:
                    self._hold = data[k:]
                    data = data[:k]
                self._output(data)
                break
            j = data.find(b"\x07", i)
            if j < 0:
                self._output(data[:i])
                self._hold = data[i:]
                break
            self._output(data[:i])
            self._marker(data[i + len(_MARK):j], on_up)
            data = data[j + 1:]
        return True

    def _marker(self, tag: bytes, on_up: Callable[[Supervisor], None] | None) -> None:
        if tag == UP:
            self._booted = True
            if not self._announced:
                self._announced = True
                if on_up is not None:
                    on_up(self)
        elif tag == RUN:
            self._in_file = True
            if self._ctrl_c_early:
                self._ctrl_c_early = False
                self._ctrl_c()
        elif tag == REPL and self._state == "boot":
            self._in_file = False
            if self._ctrl_c_early:
                self._ctrl_c_early = False
                self._to_board += b"\x03"  # for the REPL, as a key
            if self._raw:
                # into the raw REPL the board was in; its friendly banner is not shown
                self._state = "raw-wait"
                self._to_board += b"\x01"
            else:
                self._state = "run"
        elif tag == RESET and self.proc is not None:
            self._killed = True
            self.proc.kill()  # sys.exit() / machine.soft_reset() in boot.py or main.py

    def _output(self, data: bytes) -> None:
        if not data:
            return
        self._said = (self._said + data)[-300:]
        if self._state == "raw-wait":
            seen = self._tail + data
            k = seen.find(RAW_BANNER)
            if k < 0:
                self._tail = seen[-len(RAW_BANNER):]
                return
            data = seen[k:]
            self._state = "run"
            self._tail = b""
            self._to_board += self._queued
            self._queued.clear()
        if self._state == "run":
            seen = self._tail + data
            raw_at, friendly_at = seen.rfind(RAW_BANNER), seen.rfind(b">>> ")
            if raw_at >= 0 or friendly_at >= 0:
                self._raw = raw_at > friendly_at
            self._tail = seen[-32:]
        if self._connected:
            self._to_user += data

    # -- user -> board ------------------------------------------------------------
    def _from_user(self) -> None:
        try:
            data = os.read(self._um, 4096)
        except (BlockingIOError, OSError):
            return
        self._typed = self._typed or bool(data)
        if self._state in ("boot", "raw-wait") and self._raw:
            self._queued += data  # after the raw REPL prompt, as a board's input buffer would
            return
        while data:
            i = data.find(b"\x03")
            if i < 0:
                self._to_board += data
                return
            self._to_board += data[:i]
            self._ctrl_c()
            data = data[i + 1:]

    def _ctrl_c(self) -> None:
        if self._state == "boot" and not self._in_file:
            # the boot's own code runs (mounting the filesystem, between files): a board's boot has
            # none, so the Ctrl-C is for boot.py or main.py when it starts, else for the REPL
            self._ctrl_c_early = True
            return
        proc = self.proc
        if proc is not None and proc.poll() is None and _sigint_caught(proc.pid):
            pid = proc.pid
            now = time.monotonic()
            # a second SIGINT before the port took the first would end it
            if now - self._last_sigint > 0.1:
                self._last_sigint = now
                os.kill(pid, signal.SIGINT)
        else:
            self._to_board += b"\x03"

    # -- soft reset, and an interpreter that ends otherwise ---------------------------
    def _ended(self) -> None:
        """The interpreter ended: a soft reset, a crash or a failed boot; plan the next start."""
        proc, booted = self.proc, self._booted
        if proc is None:
            return
        rc = proc.returncode
        quick = time.monotonic() - self._started_at < _QUICK and not self._typed
        self.proc = None
        self._booted = False
        if not self._killed and not booted:
            how = f"died (signal {-rc})" if rc < 0 else f"exited with status {rc}"
            self._failed(f"the interpreter {self.command[0]} {how} before the board booted; it printed: "
                         f"{self._printed()}")
        elif not self._killed and rc < 0:
            self._failed(f"the interpreter died (signal {-rc})")
        elif quick:
            # the board resets itself right after it starts: a loop; slow it down
            self._loops += 1
            delay = 0.0 if self._loops < 2 else min(_DELAY * 2 ** (self._loops - 2), _MAX_DELAY)
            if self._loops == 3:
                self._notice("the board resets itself right after each start (sys.exit() or "
                             "machine.soft_reset() in boot.py or main.py?): restarting it after a growing "
                             f"delay, up to {_MAX_DELAY:g} s")
            self._restart_at = time.monotonic() + delay
        else:
            self._loops = 0
            self._restart_at = time.monotonic()

    def _failed(self, what: str) -> None:
        """A start that failed or a crash: say so and retry after a growing delay; give up after a few.

        At the first start there is no board yet: that is an error at once.
        """
        hint = "EDGESTREAM_MICROPYTHON chooses the interpreter; `make board` builds the board build"
        if not self._announced:
            raise VBoardError(f"{what} ({hint})")
        now = time.monotonic()
        self._failures = [t for t in self._failures if now - t < _WINDOW] + [now]
        n = len(self._failures)
        if n >= _FAILURES:
            raise VBoardError(f"{what}: {n} failed starts or crashes within {_WINDOW:g} s: the virtual board "
                              f"stops ({hint})")
        delay = min(_DELAY * 2 ** (n - 1), _MAX_DELAY)
        self._notice(f"{what}; restarting in {delay:g} s")
        self._restart_at = now + delay

    def _notice(self, text: str) -> None:
        """A line from the supervisor itself: on its stderr, and on the console when someone reads it."""
        print(f"vboard: {text}", file=sys.stderr, flush=True)
        if self._connected:
            self._to_user += f"\r\nvboard: {text}\r\n".encode()

    def _printed(self) -> str:
        text = strip_marks(self._said).decode(errors="replace").strip()
        return repr(text[-200:]) if text else "nothing"

    def _soft_reset(self) -> None:
        self.resets += 1
        self._run_main = not self._raw
        self._tail = b""
        if self._connected:
            self._to_user += SOFT_REBOOT
        self._spawn()


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


# -- CLI ------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--board", default="esp32", choices=sorted(mp.BOARDS), help="heap profile (default esp32)")
    p.add_argument("--profile", default="mpy", choices=mp.PROFILES,
                   help="its firmware: mpy = stock 32-bit MicroPython, to deploy .mpy files to (default); "
                        "frozen = the project's firmware, agent frozen in; host = the 64-bit PyPI build")
    p.add_argument("--dir", help="the board's filesystem: a folder (default: a temporary one, removed at exit)")
    p.add_argument("--fs-size", help="make the filesystem littlefs of this size (e.g. 256k) in DIR/flash.img")
    p.add_argument("--report-mpy", type=_mpy_version, metavar="VERSION",
                   help="report this .mpy version (0-255) in sys.implementation._mpy (e.g. 5: an older firmware)")


def _mpy_version(text: str) -> int:
    """argparse type of --report-mpy: the version byte of sys.implementation._mpy."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a .mpy version number, got {text!r}") from None
    if not 0 <= n <= 255:
        raise argparse.ArgumentTypeError(f"{n}: a .mpy version is 0..255 (the low byte of "
                                         "sys.implementation._mpy; MicroPython 1.19 and newer write 6)")
    return n


def run(args: argparse.Namespace) -> int:
    sup = Supervisor(args.board, args.dir, _parse_size(args.fs_size) if args.fs_size else None,
                     args.report_mpy, args.profile)

    def stop(signum: int, frame: object) -> None:
        sup.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, stop)

    def announce(s: Supervisor) -> None:
        print(f"vboard: {s.board} on {s.port}", flush=True)

    try:
        sup.open()
        sup.serve(on_up=announce)
    finally:
        sup.close()
    return 0
