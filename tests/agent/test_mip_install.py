"""``mpremote mip install`` puts a working agent on a board, from a checkout or a ``github:`` URL.

The board is the 32-bit stock MicroPython unix port with its REPL on a pty
(mpremote drives it over the raw REPL, as it drives a board over USB, with
``resume``: the unix port has no soft reset). mpremote runs from an
unrelated folder. For ``github:`` a local HTTP server plays
raw.githubusercontent.com, serving this checkout; only mpremote's host table
is pointed at it. Then the installed files are imported on the board build.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from linktools import PtyBridge

from edgestream_tools import micropython as mp
from edgestream_tools import packages

HOST_ONLY = True
ROOT = packages.ROOT
ORG_REPO = "edgestream-org/edgestream"

# mpremote with its github: host pointed at a local server (argv[1]: http://host:port)
MPREMOTE_VIA = """
import sys
import mpremote.mip as mip
mip._HOSTS = {"github:": sys.argv.pop(1).split("://", 1)[1] + "/{}/{}/{}/{p}"}
mip._ALLOWED_MIP_URL_PREFIXES = ("http://", "http://", "codeberg:", "github:", "gitlab:")
from mpremote.main import main
sys.exit(main())
"""

CHECK = r"""
import sys
import edgestream_agent.main, edgestream_agent.mqtt_transport, edgestream_agent.serial_link
from edgestream_shared.frame import encode_frame
print(edgestream_agent.main.__file__, encode_frame(b"x").decode().strip())
"""


class Board:
    """The stock board build with its REPL on a pty; ``path`` is what mpremote connects to."""

    def __init__(self, cwd: Path):
        self.bridge = PtyBridge()
        fd = os.open(self.bridge.device_path, os.O_RDWR | os.O_NOCTTY)
        try:
            self.proc = subprocess.Popen(mp.command("esp32", "mpy")[:1], stdin=fd, stdout=fd, stderr=fd, cwd=cwd)
        finally:
            os.close(fd)
        self.path = self.bridge.host_path

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(5)
        self.bridge.close()


@pytest.fixture
def board(tmp_path):
    b = Board(tmp_path)
    yield b
    b.close()


def mpremote(args: list[str], cwd: Path, via: str | None = None) -> str:
    cmd = [sys.executable, "-c", MPREMOTE_VIA, via] if via else [sys.executable, "-m", "mpremote"]
    proc = subprocess.run(cmd + args, cwd=cwd, capture_output=True, text=True, timeout=60)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    return out


def installed(lib: Path) -> set[str]:
    return {p.relative_to(lib).as_posix() for p in lib.rglob("*.py")}


def expected(unit: str) -> set[str]:
    return {target for target, _ in json.loads((ROOT / unit).read_text())["urls"]}


def check_runs(lib: Path) -> None:
    # only the installed files on the path: the stock build has no agent of its own
    env = dict(os.environ, MICROPYPATH=os.pathsep.join(["", ".frozen", str(lib)]))
    proc = subprocess.run(mp.command("esp32", "mpy") + ["-c", CHECK], env=env, capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    file, frame = proc.stdout.split()
    assert file == str(lib / "edgestream_agent" / "main.py") and frame.startswith("$x*")


def test_the_package_json_files_are_current():
    for unit in packages.UNITS:
        on_disk = json.loads((ROOT / unit).read_text())
        assert on_disk == packages.package_json(unit), f"{unit} is stale: run python -m edgestream_tools.packages"


def test_install_from_a_checkout_run_from_another_folder(board, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    lib = tmp_path / "board-lib"
    out = mpremote(["connect", board.path, "resume", "mip", "install", "--target", str(lib),
                    str(ROOT / "package.json")], cwd=elsewhere)
    assert "Done" in out
    assert installed(lib) == expected("package.json")
    assert {f for f in installed(lib) if f.startswith("edgestream_shared/")}  # no separate step for shared
    check_runs(lib)


class _RawGitHub(http.server.SimpleHTTPRequestHandler):
    # /<org>/<repo>/<branch>/<path> -> <checkout>/<path>
    timeout = 10

    def translate_path(self, path: str) -> str:
        parts = path.split("?", 1)[0].lstrip("/").split("/", 3)
        if len(parts) < 4 or "/".join(parts[:2]) != ORG_REPO:
            return str(ROOT / "no-such-file")
        return str(ROOT / parts[3])

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def raw_github():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RawGitHub)
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    t.join(5)


def test_install_from_a_github_url(board, tmp_path, raw_github):
    lib = tmp_path / "board-lib"
    mpremote(["connect", board.path, "resume", "mip", "install", "--target", str(lib), f"github:{ORG_REPO}"],
             cwd=tmp_path, via=raw_github)
    assert installed(lib) == expected("package.json")
    check_runs(lib)
    # the shared package alone, by its folder
    lib2 = tmp_path / "shared-lib"
    mpremote(["connect", board.path, "resume", "mip", "install", "--target", str(lib2),
              f"github:{ORG_REPO}/shared"], cwd=tmp_path, via=raw_github)
    assert installed(lib2) == expected("shared/package.json")


def test_a_board_without_the_files_fails_the_check(tmp_path):
    # check_runs itself: an empty lib cannot import the agent on the stock build
    with pytest.raises(AssertionError, match="ImportError"):
        check_runs(tmp_path)
