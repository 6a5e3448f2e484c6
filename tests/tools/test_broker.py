"""The recommended mosquitto config (``edgestream broker``): accepted by mosquitto, and it loses nothing.

Under mosquitto's defaults a subscriber more than 1000 QoS 1 messages behind has the rest dropped without a
word, and a restart forgets persistent sessions; these tests run the shipped config against both.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from boardtools import edgestream

from edgestream_hub.registry import Registry
from edgestream_hub.spec import parse_size
from edgestream_tools.broker import Mosquitto, free_port, recommended_config

EDGESTREAM = [sys.executable, "-m", "edgestream_tools.cli"]


def options(text: str) -> dict[str, list[str]]:
    """The option lines of a mosquitto.conf: name -> values, in order."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition(" ")
            out.setdefault(name, []).append(value)
    return out


# -- the config --

def test_print_config_is_the_recommended_config_with_every_line_explained(tmp_path):
    p = edgestream("broker", "--print-config", "--port", "1884", "--dir", str(tmp_path / "b"))
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert p.stdout == recommended_config(1884, tmp_path / "b")
    assert not (tmp_path / "b").exists()  # printing writes nothing
    opts = options(p.stdout)
    assert opts["listener"] == ["1884 127.0.0.1"]
    assert opts["persistence"] == ["true"] and opts["persistence_location"] == [str((tmp_path / "b").resolve())]
    assert opts["max_queued_messages"] == ["1000000"] and opts["queue_qos0_messages"] == ["false"]
    assert int(opts["max_queued_bytes"][0]) == 256 * 1024 * 1024
    assert 0 < int(opts["max_inflight_messages"][0]) < 65535  # paho stalls past 65,535 unacknowledged
    assert int(opts["max_inflight_bytes"][0]) > 0
    assert opts["persistent_client_expiration"] == ["7d"]
    assert opts["user"] == [pwd.getpwuid(os.geteuid()).pw_name]
    assert opts["log_dest"] == ["stderr"]
    # the hub's own payload limit, read from its mqtt source's spec
    mqtt_source = Registry.default().get("source", "mqtt")
    assert mqtt_source is not None
    spec = mqtt_source.spec
    assert opts["message_size_limit"] == [str(parse_size(next(f.default for f in spec.fields
                                                              if f.name == "max_payload")))]


def test_every_option_line_has_its_reason_right_above_it():
    lines = recommended_config(1883, "/var/lib/edgestream/broker").splitlines()
    for i, line in enumerate(lines):
        if line.strip() and not line.startswith("#"):
            assert i > 0 and (lines[i - 1].startswith("#") or options(lines[i - 1]) != {}), \
                f"line {i + 1} {line!r} follows neither a comment nor an option of the same group"


def test_the_default_folder_is_in_the_current_folder(tmp_path):
    p = subprocess.run(EDGESTREAM + ["broker", "--print-config"], capture_output=True, text=True, timeout=60,
                       cwd=tmp_path)
    assert p.returncode == 0
    assert options(p.stdout)["persistence_location"] == [str(tmp_path.resolve() / ".edgestream" / "broker")]
    assert options(p.stdout)["listener"] == ["1883 127.0.0.1"]


@pytest.mark.parametrize("argv,message", [
    ([], "choose one: --print-config or run"),
    (["run", "--print-config"], "choose one: --print-config or run"),
    (["--port", "0", "--print-config"], "argument --port: 0 is not a port number (1-65535)"),
    (["--port", "x", "run"], "argument --port: 'x' is not a port number"),
])
def test_usage_errors_exit_2_and_say_what(argv, message):
    p = edgestream("broker", *argv)
    assert p.returncode == 2 and message in p.stderr, p.stderr


def test_the_lan_variant_the_config_describes_is_accepted_and_asks_for_a_password(tmp_path):
    # the three commented lines replace the loopback listener and anonymous access, as the comment says
    port = free_port()
    text = recommended_config(port, tmp_path)
    lan = re.findall(r"^#   (.*)$", text, re.M)
    assert lan == [f"listener {port} 0.0.0.0", "allow_anonymous false", f"password_file {tmp_path.resolve()}/passwd"]
    text = text.replace(f"listener {port} 127.0.0.1\n", "").replace("allow_anonymous true\n", "\n".join(lan) + "\n")
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(tmp_path / "passwd"), "hub", "s3cret"], check=True,
                   capture_output=True, timeout=30)
    b = Mosquitto(tmp_path, port=port)
    b.conf.write_text(text)
    b.start()
    try:
        assert connect_code(port, None) == "Not authorized"
        assert connect_code(port, ("hub", "s3cret")) == "Success"
    finally:
        b.stop()


def connect_code(port: int, login: tuple[str, str] | None) -> str:
    done = threading.Event()
    got: list[str] = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    if login:
        c.username_pw_set(*login)

    def on_connect(client, userdata, flags, reason, props):
        got.append(str(reason))
        done.set()

    c.on_connect = on_connect
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        assert done.wait(10)
    finally:
        c.disconnect()
        c.loop_stop()
    return got[0]


# -- edgestream broker run --

class Run:
    """``edgestream broker run`` in a child process: its stderr lines as they come."""

    def __init__(self, *args: str, cwd: Path | None = None, user: str | None = None) -> None:
        cmd = EDGESTREAM + ["broker", "run", *args]
        if user:
            cmd = ["setpriv", f"--reuid={user}", f"--regid={pwd.getpwnam(user).pw_gid}", "--clear-groups", *cmd]
        self.proc = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = 15) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                m = re.search(pattern, line)
                if m:
                    return m
            if self.proc.poll() is not None and not self._t.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"{pattern!r} not seen: {self.lines}")

    def finish(self, sig: int | None = None, timeout: float = 15) -> int:
        if sig is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
        self._t.join(5)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.stdout = self.proc.stdout.read()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return self.proc.returncode


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_run_serves_the_config_and_a_signal_stops_it_cleanly(tmp_path, sig):
    port = free_port()
    r = Run("--port", str(port), cwd=tmp_path)
    try:
        folder = (tmp_path / ".edgestream" / "broker").resolve()
        m = r.wait_for(r"^broker: mosquitto on 127\.0\.0\.1:(\d+) \(config (.*)\)$")
        assert m.groups() == (str(port), str(folder / "mosquitto.conf"))
        assert (folder / "mosquitto.conf").read_text() == recommended_config(port, folder)
        assert connect_code(port, None) == "Success"
    finally:
        rc = r.finish(sig)
    assert rc == 0, r.lines
    assert (folder / "mosquitto.db").exists()  # it stopped cleanly: the sessions were saved
    assert any("Saving in-memory database" in line for line in r.lines), r.lines
    assert not any("Error" in line for line in r.lines), r.lines
    assert r.stdout == ""


def alive(pids: list[int]) -> list[int]:
    """The processes of ``pids`` still running (a zombie waiting for its reaper is not)."""
    out = []
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] != "Z":
            out.append(pid)
    return out


def test_mosquitto_dies_with_a_killed_run(tmp_path):
    """SIGKILL (the OOM killer, kill -9) gives `broker run` no chance to stop mosquitto: it must not live on,
    holding the port and the persistence folder, so that the next `broker run` cannot start."""
    port = free_port()
    r = Run("--port", str(port), "--dir", str(tmp_path / "b"))
    try:
        r.wait_for(r"^broker: mosquitto on ")
        children = [int(p) for p in Path(f"/proc/{r.proc.pid}/task/{r.proc.pid}/children").read_text().split()]
        assert children
    finally:
        r.finish(signal.SIGKILL)
    deadline = time.monotonic() + 5
    while alive(children) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = alive(children)
    for c in left:
        os.kill(c, signal.SIGKILL)
    assert not left, "mosquitto outlived its `edgestream broker run`"
    again = Run("--port", str(port), "--dir", str(tmp_path / "b"))
    try:
        again.wait_for(r"^broker: mosquitto on ")
    finally:
        assert again.finish(signal.SIGTERM) == 0, again.lines


def test_run_exits_2_with_mosquittos_message_when_the_port_is_taken(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = Run("--port", str(port), "--dir", str(tmp_path / "b"))
        rc = r.finish(timeout=20)
    assert rc == 2, r.lines
    assert r.lines[-1] == (f"edgestream broker: mosquitto: cannot start on 127.0.0.1:{port}: "
                           "Error: Address already in use"), r.lines


def test_run_refuses_a_folder_it_cannot_create(tmp_path):
    (tmp_path / "file").write_text("")
    p = edgestream("broker", "run", "--dir", str(tmp_path / "file" / "b"), timeout=60)
    assert p.returncode == 2
    assert f"cannot create the broker folder {tmp_path.resolve()}/file/b: Not a directory" in p.stderr, p.stderr


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to become another user")
def test_run_works_as_a_normal_user_and_refuses_a_folder_it_cannot_write():
    # pytest's temporary folders are private to root: this one is the normal user's own
    home = Path(tempfile.mkdtemp(prefix="edgestream-broker-"))
    try:
        os.chown(home, pwd.getpwnam("nobody").pw_uid, -1)
        port = free_port()
        r = Run("--port", str(port), cwd=home, user="nobody")
        try:
            r.wait_for(r"^broker: mosquitto on ")
            assert connect_code(port, None) == "Success"
        finally:
            rc = r.finish(signal.SIGTERM)
        assert rc == 0, r.lines
        db = home / ".edgestream" / "broker" / "mosquitto.db"
        assert db.exists() and db.stat().st_uid == pwd.getpwnam("nobody").pw_uid, r.lines
        (home / "roots").mkdir()
        r = Run("--dir", str(home / "roots"), user="nobody")
        assert r.finish() == 2
        assert f"the broker folder {home}/roots is not writable by nobody: choose another with --dir" in r.lines[-1]
    finally:
        shutil.rmtree(home)


# -- what the config is for: nothing lost --

def subscriber(port: int, client_id: str, got: list[bytes], pause_s: float = 0.0, every: int = 0) -> mqtt.Client:
    """A persistent QoS 1 subscriber to ``n/#`` that sleeps ``pause_s`` in on_message on its first message
    and every ``every`` messages after: a slow hub."""
    subscribed = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    c.on_connect = lambda client, u, f, reason, p: client.subscribe("n/#", qos=1)
    c.on_subscribe = lambda *a: subscribed.set()

    def on_message(client, userdata, msg):
        if pause_s and (not got or (every and len(got) % every == 0)):
            time.sleep(pause_s)
        got.append(msg.payload)

    c.on_message = on_message
    c.connect("127.0.0.1", port)
    c.loop_start()
    assert subscribed.wait(10)
    return c


def publish_numbered(port: int, name: str, n: int) -> None:
    """``n`` QoS 1 messages ``name:i`` as fast as paho sends them (at most 100 unacknowledged)."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{name}")
    c.max_inflight_messages_set(100)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        infos = [c.publish(f"n/{name}", f"{name}:{i}".encode(), qos=1) for i in range(n)]
        for info in infos:
            info.wait_for_publish(30)
            assert info.is_published()
    finally:
        c.disconnect()
        c.loop_stop()


def wait_count(got: list[bytes], n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        time.sleep(0.05)


def test_sixteen_publishers_at_full_rate_lose_nothing_to_a_slow_subscriber(tmp_path):
    # Under mosquitto's defaults (max_queued_messages 1000) most of these are dropped without an error.
    b = Mosquitto(tmp_path).start()
    got: list[bytes] = []
    sub = subscriber(b.port, "slow-hub", got, pause_s=1.5, every=5000)
    try:
        n, each = 16, 1500
        threads = [threading.Thread(target=publish_numbered, args=(b.port, f"p{k}", each)) for k in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(45)
        wait_count(got, n * each, 30)
    finally:
        sub.disconnect()
        sub.loop_stop()
        b.stop()
    want = {f"p{k}:{i}".encode() for k in range(n) for i in range(each)}
    missing = want - set(got)
    assert not missing, f"{len(missing)} of {len(want)} lost; the log says: {b.log.read_text()[-500:]}"
    assert "are being dropped" not in b.log.read_text()


def test_a_broker_restart_keeps_a_persistent_subscribers_queued_messages(tmp_path):
    b = Mosquitto(tmp_path).start()
    try:
        got: list[bytes] = []
        sub = subscriber(b.port, "away-hub", got)
        sub.disconnect()
        sub.loop_stop()
        publish_numbered(b.port, "p", 2000)  # queued for the absent hub
        b.restart()
        b.restart()
        sub = subscriber(b.port, "away-hub", got)
        try:
            wait_count(got, 2000, 20)
        finally:
            sub.disconnect()
            sub.loop_stop()
    finally:
        b.stop()
    assert sorted(set(got)) == sorted(f"p:{i}".encode() for i in range(2000)), len(set(got))

