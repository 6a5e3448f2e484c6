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
