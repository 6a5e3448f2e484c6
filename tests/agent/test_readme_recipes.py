"""The device recipes in agent/README.md run as written, under the real MicroPython.

A fenced block whose info string is ``<lang> device-recipe [name]`` is a
recipe: ``json ... mqtt`` / ``json ... serial`` are example ``agent.json``
files, ``python ... main.py`` is a board's ``main.py`` and ``sh`` the unix-port
command. Each code recipe runs with each example config, the config pointed
at a real mosquitto (MQTT) or a pty (serial), and must deliver results:

- ``main.py`` as a board runs it at boot: the board build with the agent
  frozen in, the esp32 heap, in a folder holding ``main.py`` and
  ``agent.json``; it runs forever, so it is stopped once results arrived;
- the ``sh`` command through ``sh -c`` in a folder laid out like a checkout
  (``agent/``, ``shared/``), with ``micropython`` on PATH being the 32-bit
  stock build (no agent of its own: ``MICROPYPATH`` must find it).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from linktools import HubEnd, PtyBridge, Subscriber, wait_until

from edgestream_shared.decoder import decode
from edgestream_tools import micropython as mp

HOST_ONLY = True
ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "agent" / "README.md"
FENCE = re.compile(r"^( *)```(\w+) device-recipe ?(\S*)\n(.*?)^\1```$", re.M | re.S)


def recipes() -> dict[tuple[str, str], str]:
    """(lang, name) -> the block's text, its indentation removed."""
    out = {}
    for m in FENCE.finditer(README.read_text()):
        indent = len(m.group(1))
        text = "".join(line[indent:] for line in m.group(4).splitlines(keepends=True))
        key = (m.group(2), m.group(3))
        assert key not in out, f"two recipes {key} in {README}"
        out[key] = text
    return out


def test_the_readme_has_the_recipes():
    assert set(recipes()) == {("json", "mqtt"), ("json", "serial"), ("python", "main.py"), ("sh", "")}


class Mqtt:
    def __init__(self, broker, cfg: dict):
        cfg["transport"]["mqtt"].update(host=broker.host, port=broker.port)
        self.topic = f"edgestream/{cfg['device']}/results"
        self.sub = Subscriber(broker, [self.topic])

    def results(self) -> list[dict]:
        return [decode(p) for p in self.sub.on(self.topic)]

    def close(self) -> None:
        self.sub.close()


class Serial:
    def __init__(self, cfg: dict):
        self.bridge = PtyBridge()
        cfg["transport"]["serial"]["port"] = self.bridge.device_path
        self.hub = HubEnd(self.bridge)

    def results(self) -> list[dict]:
        self.hub.pump()
        return self.hub.kind("results")

    def close(self) -> None:
        self.hub.port.close()
        self.bridge.close()


@pytest.fixture(params=["mqtt", "serial"])
def hub(request, tmp_path):
    """(the example config, pointed at a test hub end; the hub end)."""
    cfg = json.loads(recipes()[("json", request.param)])
    if request.param == "mqtt":
        end = Mqtt(request.getfixturevalue("mosquitto"), cfg)
    else:
        end = Serial(cfg)
    (tmp_path / "agent.json").write_text(json.dumps(cfg))
    yield cfg, end
    end.close()


def test_main_py_starts_the_agent_and_its_link_on_a_board(tmp_path, hub):
    cfg, end = hub
    (tmp_path / "main.py").write_text(recipes()[("python", "main.py")])
    proc = subprocess.Popen(mp.command("esp32") + ["main.py"], cwd=tmp_path, env=mp.environment(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        got = wait_until(lambda: len(end.results()) >= 2 or proc.poll() is not None, 20, 0.05)
    finally:
        proc.kill()
        out = proc.communicate(timeout=10)[0].decode(errors="replace")
    assert got and proc.returncode == -9, f"main.py stopped or sent nothing:\n{out}"
    first = end.results()[0]
    assert first["dev"] == cfg["device"] and first["items"][0]["sensor"] == "temp"


def test_the_shell_recipe_runs_the_agent_from_a_checkout(tmp_path, hub):
    cfg, end = hub
    for pkg in ("agent", "shared"):
        (tmp_path / pkg).symlink_to(ROOT / pkg)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "micropython").symlink_to(mp.find_micropython("mpy"))
    env = {k: v for k, v in os.environ.items() if k != "MICROPYPATH"}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run(["sh", "-c", recipes()[("sh", "")]], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    counters = json.loads(proc.stdout.strip().splitlines()[-1])
    assert counters["results_sent"] >= 2 and counters["results_dropped"] == 0, counters
    assert wait_until(lambda: sum(len(m["items"]) for m in end.results()) >= counters["results_sent"], 5)
