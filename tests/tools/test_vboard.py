"""``edgestream vboard``: the real mpremote drives the real micropython on a pty, as a board."""

import os
import shutil
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


# -- the interpreter's life: tied to the supervisor, failures said and bounded ----------------------------
def _vboard_cli(*args, env=None, timeout=30):
    return subprocess.run([sys.executable, "-m", "edgestream_tools.cli", "vboard", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def _child_of(pid):
    return int(Path(f"/proc/{pid}/task/{pid}/children").read_text().split()[0])


def _gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1].startswith("Z")  # a zombie is dead, waiting for its reaper
    except FileNotFoundError:
        return True


def test_the_interpreter_dies_with_a_killed_supervisor(vboard, tmp_path):
    for main in (None, LOOP_MAIN):  # at the REPL, and running main.py
        folder = tmp_path / f"b{main is None}"
        folder.mkdir()
        if main:
            (folder / "main.py").write_text(main)
        vb = vboard("esp32", folder=folder)
        child = _child_of(vb.proc.pid)
        time.sleep(1)  # past the boot: at the REPL, or in main.py's loop
        vb.proc.kill()
        vb.proc.wait(10)
        deadline = time.monotonic() + 3
        while not _gone(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(child), f"the interpreter {child} outlived its supervisor"


def test_an_interpreter_that_cannot_start_is_an_error_at_once(tmp_path):
    p = _vboard_cli("--dir", str(tmp_path / "b"), env=dict(os.environ, EDGESTREAM_MICROPYTHON="/bin/false"))
    assert p.returncode == 2 and "vboard:" not in p.stdout
    assert "the interpreter /bin/false exited with status 1 before the board booted" in p.stderr
    assert "EDGESTREAM_MICROPYTHON" in p.stderr and "Traceback" not in p.stderr
    missing = str(tmp_path / "no-micropython")
    p = _vboard_cli("--dir", str(tmp_path / "b"), env=dict(os.environ, EDGESTREAM_MICROPYTHON=missing))
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert f"cannot start the interpreter {missing}: No such file or directory" in p.stderr


def test_a_killed_interpreter_is_said_on_the_console_and_restarted(vboard, console):
    vb = vboard("esp32")
    c = console(vb.port)
    c.write(b"\r\x02")
    c.until(b">>> ")
    os.kill(_child_of(vb.proc.pid), signal.SIGKILL)
    got = c.until(b">>> ")
    assert b"vboard: the interpreter died (signal 9); restarting" in got
    assert got.index(b"died (signal 9)") < got.index(b"MPY: soft reboot")
    assert vb.mpremote("exec", "print('alive')").stdout.decode().strip() == "alive"


def test_restarts_that_keep_failing_end_the_board_with_a_message(tmp_path):
    binary = tmp_path / "micropython"
    shutil.copy(mp.find_micropython("mpy"), binary)
    p = subprocess.Popen([sys.executable, "-m", "edgestream_tools.cli", "vboard", "--dir", str(tmp_path / "b")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, EDGESTREAM_MICROPYTHON=str(binary)))
    try:
        assert p.stdout is not None and p.stdout.readline().startswith("vboard: esp32 on /dev/pts/")
        binary.unlink()  # removed while the board runs: the next start fails
        os.kill(_child_of(p.pid), signal.SIGKILL)
        _, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate(timeout=10)
    assert p.returncode == 2 and "Traceback" not in err
    assert "vboard: the interpreter died (signal 9); restarting in 0.2 s" in err
    assert f"vboard: cannot start the interpreter {binary}: No such file or directory; restarting in 0.4 s" in err
    assert "5 failed starts or crashes within 30 s: the virtual board stops" in err


def test_a_board_that_resets_itself_at_every_start_is_slowed_down(vboard, console, tmp_path):
    folder = tmp_path / "board"
    folder.mkdir()
    (folder / "boot.py").write_text("import sys\nprint('boot runs')\nsys.exit()\n")
    vb = vboard("esp32", folder=folder)
    c = console(vb.port)
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        c.seen += c.s.read(4096)
    # without a delay it restarts ~5 times a second; with it: 0, 0.2, 0.4, 0.8, 1.6 s apart
    assert 1 <= c.seen.count(b"boot runs") <= 6, c.seen
    vb.proc.terminate()
    _, err = vb.proc.communicate(timeout=15)
    assert "vboard: the board resets itself right after each start" in err.decode()


def test_a_flash_image_of_another_size_is_kept_and_refused(vboard, tmp_path):
    folder = tmp_path / "board"
    vb = vboard("esp32", "--fs-size", "64k", folder=folder)
    vb.mpremote("exec", "f = open('keep.txt', 'w')\nf.write('data')\nf.close()")
    vb.stop()
    before = (folder / "flash.img").read_bytes()
    p = _vboard_cli("--dir", str(folder), "--fs-size", "128k")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert f"{folder / 'flash.img'} holds a 64k filesystem, not --fs-size 128k: run with --fs-size 64k" in p.stderr
    assert "remove" in p.stderr and (folder / "flash.img").read_bytes() == before
    vb = vboard("esp32", "--fs-size", "64k", folder=folder)
    assert vb.mpremote("exec", "print(open('keep.txt').read())").stdout.decode().strip() == "data"


@pytest.mark.parametrize("value", ["1000", "-1", "x"])
def test_report_mpy_out_of_range_is_a_usage_error(value):
    p = _vboard_cli("--report-mpy", value)
    assert p.returncode == 2 and "argument --report-mpy" in p.stderr and "Traceback" not in p.stderr
