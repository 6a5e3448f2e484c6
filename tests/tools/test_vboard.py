"""``edgestream vboard``: the real mpremote drives the real micropython on a pty, as a board."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgestream_tools import micropython as mp
from edgestream_tools.vboard import Supervisor, VBoardError, _parse_size

LOOP_MAIN = 'import time\nprint("main starts")\nwhile True:\n    time.sleep_ms(20)\n'


def test_mpremote_filesystem_commands_work_on_the_board_folder(vboard, tmp_path):
    vb = vboard("esp32")
    src = tmp_path / "hello.txt"
    src.write_text("hello board\n")
    out = vb.mpremote("fs", "mkdir", ":lib", "+", "fs", "cp", str(src), ":lib/hello.txt", "+",
                      "fs", "ls", ":lib", "+", "fs", "cat", ":lib/hello.txt").stdout.decode()
    assert "hello.txt" in out and "hello board" in out
    assert (vb.folder / "lib" / "hello.txt").read_text() == "hello board\n"
    vb.mpremote("fs", "rm", ":lib/hello.txt")
    assert not (vb.folder / "lib" / "hello.txt").exists()


def test_the_board_has_a_boards_path_folder_and_heap(vboard):
    vb = vboard("tiny")
    out = vb.mpremote("exec", "import sys, os, gc; gc.collect(); "
                      "print(sys.path, os.getcwd(), gc.mem_free() + gc.mem_alloc())").stdout.decode()
    path, cwd, heap = out.rsplit(" ", 2)
    assert path == "['', '.frozen', '/lib']" and cwd == "/"
    assert 60 * 1024 < int(heap) <= 64 * 1024


def test_exec_run_and_mount(vboard, tmp_path):
    vb = vboard("esp32")
    (tmp_path / "mod_x.py").write_text("X = 42\n")
    (tmp_path / "script.py").write_text("print('script runs', 6 * 7)\n")
    assert vb.mpremote("exec", "print(1 + 1)").stdout.decode().strip() == "2"
    assert "script runs 42" in vb.mpremote("run", str(tmp_path / "script.py")).stdout.decode()
    out = vb.mpremote("mount", str(tmp_path), "exec", "import mod_x, os; print(mod_x.X, os.getcwd())").stdout.decode()
    assert "42 /remote" in out


def test_mip_installs_from_a_local_package(vboard, tmp_path):
    vb = vboard("esp32")
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "ymod.py").write_text("Y = 7\n")
    (pkg / "package.json").write_text('{"urls": [["ymod.py", "ymod.py"]], "version": "0.1"}')
    vb.mpremote("mip", "install", str(pkg / "package.json"))
    assert vb.mpremote("exec", "import ymod; print(ymod.Y)").stdout.decode().strip() == "7"


def test_soft_reset_keeps_the_pty_and_restarts_the_interpreter(vboard):
    vb = vboard("esp32")
    vb.mpremote("exec", "import builtins; builtins.MARK = 1")
    # mpremote soft-resets before its first command: a new interpreter, same pty
    out = vb.mpremote("soft-reset", "exec", "import builtins; print(hasattr(builtins, 'MARK'))").stdout.decode()
    assert out.strip() == "False"
    vb.mpremote("exec", "import machine; machine.soft_reset()")
    assert vb.mpremote("exec", "print('alive')").stdout.decode().strip() == "alive"


def _board_with_main(tmp_path, text=LOOP_MAIN):
    folder = tmp_path / "board"
    folder.mkdir()
    (folder / "main.py").write_text(text)
    return folder


def test_ctrl_d_in_the_friendly_repl_runs_main_and_ctrl_c_stops_it(vboard, console, tmp_path):
    vb = vboard("esp32", folder=_board_with_main(tmp_path))
    c = console(vb.port)
    c.write(b"\x03")  # main.py runs since the board started
    c.until(b">>> ")
    c.write(b"\x04")
    got = c.until(b"main starts")
    assert b"MPY: soft reboot\r\n" in got
    c.write(b"\x03")
    got = c.until(b">>> ")
    assert b"KeyboardInterrupt" in got and b'File "main.py", line 4' in got and b"<stdin>" not in got
    c.write(b"6 * 7\r")
    assert b"42" in c.until(b">>> ")


def test_mpremote_interrupts_a_running_main(vboard, tmp_path):
    vb = vboard("esp32", folder=_board_with_main(tmp_path))
    t0 = time.monotonic()
    assert vb.mpremote("exec", "print('stopped it')").stdout.decode().strip() == "stopped it"
    assert time.monotonic() - t0 < 15


def test_sys_exit_in_main_is_a_soft_reset(vboard, console, tmp_path):
    # main.py exits (a soft reset) on its first two boots once the file `go` exists
    vb = vboard("esp32", folder=_board_with_main(tmp_path, (
        "import os\n"
        "try:\n    n = int(open('go').read())\nexcept (OSError, ValueError):\n    n = None\n"
        "if n is not None:\n    open('go', 'w').write(str(n + 1))\n    print('boot', n)\n"
        "    if n < 2:\n        import sys\n        sys.exit()\n"
    )))
    c = console(vb.port)
    c.write(b"\r\x02")
    c.until(b">>> ")
    (vb.folder / "go").write_text("0")
    c.write(b"\x04")
    got = c.until(b"boot 2")
    assert got.count(b"MPY: soft reboot") == 3 and b"boot 0" in got and b"boot 1" in got


def test_a_full_filesystem_refuses_writes(vboard):
    vb = vboard("esp32", "--fs-size", "64k")
    out = vb.mpremote("exec", (
        "f = open('big', 'wb')\nb = bytes(1024)\nn = 0\n"
        "try:\n    for i in range(100):\n        f.write(b)\n        n += 1\n    f.close()\n"
        "except OSError as e:\n    print('full', n, e.args[0])\n"
    )).stdout.decode()
    full, kb, err = out.split()
    assert full == "full" and 32 < int(kb) < 64 and err == "28"  # ENOSPC
    assert (vb.folder / "flash.img").stat().st_size == 64 * 1024


def test_report_mpy_makes_the_board_report_another_mpy_version(vboard):
    vb = vboard("esp32", "--report-mpy", "5")
    out = vb.mpremote("exec", "import sys; print(sys.implementation._mpy & 0xff, sys.implementation.name)")
    assert out.stdout.decode().split() == ["5", "micropython"]


def test_sigterm_stops_the_board_and_removes_its_temp_folder(tmp_path):
    p = subprocess.Popen([sys.executable, "-m", "edgestream_tools.cli", "vboard", "--board", "rp2040"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stderr is not None
    try:
        line = p.stdout.readline().decode()
        assert line.startswith("vboard: rp2040 on /dev/pts/")
        port = line.split()[-1]
        # the interpreter runs in the board's folder
        child = Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split()[0]
        folder = os.readlink(f"/proc/{child}/cwd")
        assert os.path.isdir(folder) and os.path.exists(port)
        p.send_signal(signal.SIGTERM)
        assert p.wait(15) == 0
        assert not os.path.exists(port) and not os.path.exists(folder)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
        p.stdout.close()
        p.stderr.close()


def test_the_temp_folder_is_removed_by_close():
    sup = Supervisor("esp32")
    folder = sup.folder
    sup.open()
    try:
        assert folder.is_dir()
    finally:
        sup.close()
    assert not folder.exists()
    assert sup.proc is not None and sup.proc.poll() is not None


@pytest.mark.parametrize("text,size", [("64k", 65536), ("1m", 1048576), ("32768", 32768)])
def test_fs_size_parses(text, size):
    assert _parse_size(text) == size


@pytest.mark.parametrize("text", ["12k", "lots", "4k"])
def test_bad_fs_size_is_refused(text):
    with pytest.raises(VBoardError, match="--fs-size"):
        _parse_size(text)


def test_unknown_board_is_refused():
    with pytest.raises(mp.MicroPythonError, match="unknown board"):
        Supervisor("esp8266")
