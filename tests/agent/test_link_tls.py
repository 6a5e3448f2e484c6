"""MQTT over TLS: the agent verifies the broker against the CA in ``ca_file``.

Under the ``host`` profile of MicroPython (the 64-bit unix port, which has
``ssl``: mbedTLS) with the agent's ``.mpy`` bundle, against a real mosquitto
TLS listener whose certificate a CA made here (``openssl``) signed; and
against a rogue TLS server with a self-signed certificate that records
every byte it can decrypt. Verified, the agent sends the rogue nothing:
no CONNECT, no password.
"""

import json
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
from linktools import Subscriber, finish, wait_until

from edgestream_shared.decoder import decode
from edgestream_tools import micropython as mp
from mosquitto import Mosquitto, free_port

HOST_ONLY = True
RUN = "import sys\nfrom edgestream_agent.main import _cli\n_cli()\n"
PASSWORD = "s3cret-pw"


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture
def pki():
    """A CA, a broker certificate it signed (127.0.0.1, localhost), and a self-signed rogue one.

    In a folder of its own that mosquitto can read once it dropped to its user
    (pytest's tmp_path is private to root)."""
    d = Path(tempfile.mkdtemp(prefix="edgestream-pki-"))
    try:
        yield _make_pki(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _make_pki(d):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=edgestream test CA", cwd=d)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key", "-out", "broker.csr",
            "-subj", "/CN=localhost", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "broker.pem", "-days", "2", "-extfile", "san.ext", cwd=d)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "rogue.key", "-out", "rogue.pem",
            "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", cwd=d)
    openssl("x509", "-in", "ca.pem", "-outform", "DER", "-out", "ca.der", cwd=d)
    for f in d.iterdir():
        f.chmod(0o644)  # mosquitto drops to its own user
    d.chmod(0o755)
    return d


def agent_config(port, pki, **mqtt):
    m = {"host": "127.0.0.1", "port": port, "tls": True, "user": "dev1", "password": PASSWORD,
         "backoff_min_ms": 100, "backoff_max_ms": 300, "keepalive_s": 5}
    m.update(mqtt)
    return {"device": "dev1",
            "sensors": [{"name": "temp", "period_ms": 20, "source": {"type": "sim"},
                         "windows": [{"name": "w", "size_ms": 200, "aggregates": ["count", "avg"]}]}],
            "transport": {"type": "mqtt", "health_ms": 0, "poll_ms": 5, "mqtt": m}}


def start_agent(tmp_path, cfg, duration_ms):
    (tmp_path / "agent.json").write_text(json.dumps(cfg))
    (tmp_path / "run.py").write_text(RUN)
    # code from the .mpy bundle: sources compiled on this port's heap would not leave room for TLS
    return subprocess.Popen(
        [mp.find_micropython("host"), "-X", "heapsize=400k", str(tmp_path / "run.py"), str(tmp_path / "agent.json"),
         str(duration_ms)],
        env=mp.environment([mp.mpy_bundle("host")], "host"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


class Rogue:
    """A TLS server with a self-signed certificate: records what it decrypts."""

    def __init__(self, pki):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(pki / "rogue.pem", pki / "rogue.key")
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(4)
        self.srv.settimeout(0.2)
        self.port = self.srv.getsockname()[1]
        self.received = bytearray()
        self.accepted = 0
        self.handshakes = 0
        self._stop = False
        self._t = threading.Thread(target=self._serve, daemon=True)
        self._t.start()

    def _serve(self):
        deadline = time.monotonic() + 60
        while not self._stop and time.monotonic() < deadline:
            try:
                c, _ = self.srv.accept()
            except OSError:
                continue
            self.accepted += 1
            c.settimeout(2)
            try:
                with self.ctx.wrap_socket(c, server_side=True) as t:
                    self.handshakes += 1
                    for _ in range(50):
                        d = t.recv(4096)
                        if not d:
                            break
                        self.received += d
            except (OSError, ssl.SSLError):
                pass
            finally:
                c.close()

    def close(self):
        self._stop = True
        self._t.join(3)
        self.srv.close()


def tls_broker(tmp_path, pki):
    port = free_port()
    work = pki / "broker"
    work.mkdir()
    work.chmod(0o777)
    b = Mosquitto(work, extra_conf=f"listener {port} 127.0.0.1\ncafile {pki}/ca.pem\ncertfile {pki}/broker.pem\n"
                                   f"keyfile {pki}/broker.key\n")
    b.start()
    return b, port


@pytest.mark.parametrize("ca", ["ca.pem", "ca.der"])
def test_a_broker_the_ca_signed_is_accepted(tmp_path, pki, ca):
    broker, tls_port = tls_broker(tmp_path, pki)
    sub = Subscriber(broker, ["edgestream/dev1/results"])
    try:
        agent = start_agent(tmp_path, agent_config(tls_port, pki, ca_file=str(pki / ca)), 2500)
        out = finish(agent, 60)
        assert wait_until(lambda: len(sub.on("edgestream/dev1/results")) >= 3, 10), out
    finally:
        sub.close()
        broker.stop()
    s = json.loads(out.strip().splitlines()[-1])
    assert s["link_failures"] == 0 and s["results_sent"] >= 3, s
    assert decode(sub.on("edgestream/dev1/results")[0])["dev"] == "dev1"


def test_a_rogue_server_gets_no_connect_and_no_password(tmp_path, pki):
    rogue = Rogue(pki)
    try:
        agent = start_agent(tmp_path, agent_config(rogue.port, pki, ca_file=str(pki / "ca.pem")), 2000)
        out = finish(agent, 60)
    finally:
        rogue.close()
    s = json.loads(out.strip().splitlines()[-1])
    assert rogue.accepted >= 2, (rogue.accepted, out)  # it tried, and tried again
    assert rogue.handshakes == 0 and bytes(rogue.received) == b"", bytes(rogue.received)
    assert s["link_up"] == 0 and s["results_sent"] == 0 and s["link_failures"] >= 2, s


def test_without_verification_the_same_rogue_reads_the_password(tmp_path, pki):
    # what verification prevents, shown with tls_verify: false (documented as unsafe)
    rogue = Rogue(pki)
    try:
        agent = start_agent(tmp_path, agent_config(rogue.port, pki, tls_verify=False), 1500)
        finish(agent, 60)
    finally:
        rogue.close()
    assert rogue.handshakes >= 1 and PASSWORD.encode() in bytes(rogue.received)
    assert rogue.received[0] >> 4 == 1  # an MQTT CONNECT


def test_tls_without_a_ca_is_refused_at_start_naming_the_key(tmp_path, pki):
    agent = start_agent(tmp_path, agent_config(1, pki), 500)
    out = agent.communicate(timeout=30)[0].decode()
    assert agent.returncode != 0 and "transport.mqtt.ca_file: required when tls is true" in out, out
    agent = start_agent(tmp_path, agent_config(1, pki, ca_file="missing.pem"), 500)
    out = agent.communicate(timeout=30)[0].decode()
    assert agent.returncode != 0 and "transport.mqtt.ca_file: cannot use" in out, out
