"""Test harness: every device-zone test also runs under the real MicroPython.

Test modules under ``tests/agent`` and ``tests/shared`` are collected twice:
as ordinary pytest modules (CPython) and as ``[micropython-<board>]`` items
run by ``tests/mprunner.py`` under the board build of MicroPython (32-bit,
31-bit small ints, the agent frozen in: the ``frozen`` profile of
``edgestream_tools.micropython``) with the heap of the module's ``BOARD``
(default ``esp32``). The session starts by building it, or rebuilding it when
the checkout's device code changed since (``edgestream_tools.boardbuild``),
so the frozen code under test is the checkout's. A module that cannot run
on a board (hypothesis, ptys) says ``HOST_ONLY = True``.
"""

from __future__ import annotations

import ast
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from edgestream_tools import micropython as mp

# Property tests check behaviour, not speed: on a loaded 2-core CI machine an
# example may take longer than hypothesis' default 200 ms deadline.
settings.register_profile("edgestream", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("edgestream")

# `hub check` remembers SQL queries that compiled (edgestream_hub.checkcache): tests compile every time and
# write nothing to the user's cache (tests/hub/test_checkcache.py turns it on in a temporary folder)
os.environ["EDGESTREAM_CACHE_DIR"] = "off"

TESTS = Path(__file__).resolve().parent
DEVICE_TEST_DIRS = (TESTS / "agent", TESTS / "shared")
MARK = "@@edgestream-test@@"


def pytest_sessionstart(session):
    # Build the board MicroPython now, in sight, rather than inside the first
    # device test's captured output. When it cannot be built, every test
    # that needs it fails with the reason.
    from edgestream_tools import boardbuild

    if os.environ.get("EDGESTREAM_MICROPYTHON"):
        return
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    log = tr.write_line if tr is not None else print
    try:
        for variant in boardbuild.VARIANTS:
            boardbuild.ensure(variant, log=log)
    except boardbuild.BoardBuildError as e:
        log(f"board build unavailable, device tests will fail: {e}")


def _module_info(path: Path) -> tuple[list[str], str, bool]:
    tree = ast.parse(path.read_text(), str(path))
    names, board, host_only = [], "esp32", False
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_") and not node.args.args:
            names.append(node.name)
        elif (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
              and isinstance(node.value, ast.Constant)):
            if node.targets[0].id == "BOARD":
                board = str(node.value.value)
            elif node.targets[0].id == "HOST_ONLY":
                host_only = bool(node.value.value)
    return names, board, host_only


def pytest_collect_file(file_path: Path, parent):
    if file_path.suffix != ".py" or not file_path.name.startswith("test_"):
        return None
    if not any(d in file_path.parents for d in DEVICE_TEST_DIRS):
        return None
    names, board, host_only = _module_info(file_path)
    if host_only or not names:
        return None
    return MicroPythonFile.from_parent(parent, path=file_path, names=names, board=board)


class MicroPythonFile(pytest.File):
    def __init__(self, *, names: list[str], board: str, **kw):
        super().__init__(**kw)
        self.names = names
        self.board = board
        self._results: dict[str, tuple[str, str]] | None = None
        self._output = ""

    def collect(self):
        for name in self.names:
            yield MicroPythonItem.from_parent(self, name=f"{name}[micropython-{self.board}]", fn=name)

    def results(self) -> tuple[dict[str, tuple[str, str]], str]:
        if self._results is None:
            self._results = {}
            try:
                proc = mp.run(
                    [str(TESTS / "mprunner.py"), self.path.stem, *self.names],
                    board=self.board,
                    extra_paths=[str(self.path.parent), str(TESTS)],
                    timeout=600,
                    check=False,
                )
                out = proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")
            except subprocess.TimeoutExpired as e:
                out = f"timed out after {e.timeout}s\n" + (e.stdout or b"").decode(errors="replace")
            self._output = out
            current: str | None = None
            buf: list[str] = []
            for line in out.split("\n"):
                if line.startswith(MARK):
                    _, status, name = line.split(" ", 2)
                    if status == "BEGIN":
                        current, buf = name, []
                    else:
                        self._results[name] = (status, "\n".join(buf) + "\n")
                        current = None
                elif current is not None:
                    buf.append(line)
                elif self._results:
                    # traceback lines after a FAIL marker belong to that test
                    last = list(self._results)[-1]
                    status, text = self._results[last]
                    self._results[last] = (status, text + line + "\n")
        return self._results, self._output


class MicroPythonTestFailure(Exception):
    pass


class MicroPythonItem(pytest.Item):
    def __init__(self, *, fn: str, **kw):
        super().__init__(**kw)
        self.fn = fn

    @property
    def mp_file(self) -> MicroPythonFile:
        assert isinstance(self.parent, MicroPythonFile)
        return self.parent

    def runtest(self):
        results, output = self.mp_file.results()
        if self.fn not in results:
            raise MicroPythonTestFailure(
                f"{self.fn} did not finish under MicroPython ({self.mp_file.board}); interpreter output:\n{output}"
            )
        status, text = results[self.fn]
        if status != "PASS":
            raise MicroPythonTestFailure(f"{self.fn} failed under MicroPython ({self.mp_file.board}):\n{text}")

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, MicroPythonTestFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, None, f"{self.path.name}::{self.name}"


class MicroPythonRunner:
    """Fixture object: run snippets or scripts under MicroPython with a board heap
    (``profile``: frozen, the default, mpy or host; see edgestream_tools.micropython)."""

    boards = mp.BOARDS

    def run(self, code: str, board: str = "esp32", **kw) -> str:
        return mp.run_code(code, board=board, extra_paths=[str(TESTS)], **kw)

    def run_file(self, path, *args: str, board: str = "esp32", extra_paths=(), **kw) -> subprocess.CompletedProcess:
        return mp.run([str(path), *args], board=board, extra_paths=[*extra_paths, str(TESTS)], **kw)


@pytest.fixture(scope="session")
def micropython() -> MicroPythonRunner:
    return MicroPythonRunner()


@pytest.fixture
def mosquitto(tmp_path):
    """A fresh mosquitto on a free loopback port (``.host``, ``.port``, ``.stop()``, ``.start()``)."""
    from mosquitto import Mosquitto

    broker = Mosquitto(tmp_path).start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(params=["std", "orjson"])
def json_engine(request, monkeypatch):
    """Run the test with each JSON engine of ``edgestream_hub.jsonio`` (also in the subprocesses it starts):
    a test module that says ``pytestmark = pytest.mark.usefixtures("json_engine")`` checks that both give
    the same results."""
    from edgestream_hub import jsonio

    if request.param == "orjson":
        import orjson  # noqa: F401  # the test extra installs it: a missing one fails, it is not skipped
    before = jsonio.backend()
    monkeypatch.setenv("EDGESTREAM_JSON", request.param)
    jsonio.use(request.param)
    try:
        yield request.param
    finally:
        jsonio.use(before)
