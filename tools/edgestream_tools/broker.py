"""The mosquitto configuration EdgeStream recommends, and a private broker that runs it.

mosquitto's defaults lose data without a word: a subscriber more than 1000
QoS 1 messages behind (``max_queued_messages``) has the rest dropped, and
without ``persistence`` a broker restart forgets every persistent session
with what was queued for it. ``recommended_config`` is the one text that
fixes both for a gateway: ``edgestream broker --print-config`` prints it,
``edgestream broker run`` runs it, and ``Mosquitto`` (the demo, the benches,
the tests' ``mosquitto`` fixture) starts every broker with it, so what is
tested is what users run. ``stop()``/``start()`` simulate an outage on the
same port; nothing depends on a system service.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

from edgestream_hub.errors import StartError
from edgestream_shared.decoder import MAX_PAYLOAD

#: QoS 1 messages the broker keeps per persistent client beyond those in flight (the hub during an outage)
MAX_QUEUED_MESSAGES = 1_000_000
#: bytes of those messages: held in memory and saved to the persistence file, so sized for a Pi's RAM and SD card
MAX_QUEUED_BYTES = 256 * 1024 * 1024
#: QoS 1 messages sent to one client and not yet acknowledged; far below paho's 65,535 message ids
MAX_INFLIGHT_MESSAGES = 1000
#: bytes of those messages (a paho client holds them in memory until it acknowledges them)
MAX_INFLIGHT_BYTES = 16 * 1024 * 1024
DEFAULT_PORT = 1883


def recommended_config(port: int, directory: Path | str, *, host: str = "127.0.0.1", user: str | None = None) -> str:
    """The commented mosquitto.conf for a gateway: listener on ``host:port``, persistence in ``directory``.

    ``user`` is the account mosquitto keeps when started as root (default: whoever runs this), so the
    persistence folder this process created stays writable. Every line says why it is there.
    """
    location = str(Path(directory).resolve())
    if "\n" in location or "\r" in location:
        raise StartError("mosquitto", f"the broker folder {location!r} has a line break in its name")
    user = user or pwd.getpwuid(os.geteuid()).pw_name
    return f"""\
# mosquitto.conf recommended by EdgeStream for a gateway (mosquitto 2.0).
# Written by `edgestream broker`; docs/hub.md, "Broker", explains each line.

# -- where clients connect --
# Loopback only: the hub and local tools connect here, nothing from the network.
# To let devices on the LAN in, replace the two lines below with these three,
# which listen on every address and ask each client for a name and password
# (`mosquitto_passwd -c {location}/passwd hub` creates the file, without -c it
# adds a name; the hub's go in hub.yaml, broker: {{username, password}}):
#   listener {port} 0.0.0.0
#   allow_anonymous false
#   password_file {location}/passwd
# On a network that is not yours add TLS: listen on 8883 with certfile and keyfile.
listener {port} {host}
# Anonymous clients are safe only because the listener above is loopback.
allow_anonymous true
# When started as root, mosquitto switches to this account; it must be able to
# write persistence_location. This is the account that wrote this file. For a
# system service use a dedicated user that owns the folder (e.g. mosquitto).
user {user}

# -- keep sessions and queued messages across broker restarts --
# Without persistence a restart forgets every persistent session and what was
# queued for it: QoS 1 messages the hub had not received yet are lost.
persistence true
# The folder of mosquitto.db; absolute, so it does not depend on where mosquitto starts.
persistence_location {location}
# Save every 60 seconds (a clean stop always saves): a power cut loses at most
# the last minute. Saving on changes instead rewrites the whole database every
# N changes, which at gateway rates wears an SD card for little gain.
autosave_on_changes false
autosave_interval 60
# A persistent session whose client has not come back for a week is removed,
# so abandoned client ids do not hold queued messages forever (the MQTT
# default is never). The hub reconnects with the same client id long before.
persistent_client_expiration 7d

# -- never drop a lagging subscriber's messages --
# The default of 1000 drops QoS 1 messages silently for any subscriber more
# than 1000 messages behind (the hub during an outage or a burst). Room for a
# long outage of a small fleet; the byte bound below is reached first when
# messages are large.
max_queued_messages {MAX_QUEUED_MESSAGES}
# Queued messages live in memory and in mosquitto.db: 256 MiB fits a Pi's RAM
# and SD card. Raise both bounds together when the gateway has room.
max_queued_bytes {MAX_QUEUED_BYTES}
# QoS 0 is fire-and-forget: queueing it for an absent client would only
# crowd out the QoS 1 messages that count.
queue_qos0_messages false
# Messages sent to a client and not acknowledged yet. The hub acknowledges a
# message once what it produced is safe (in a checkpoint or written by its
# sinks), so this is how far the broker may run ahead of the hub's last
# checkpoint; when it is reached the hub checkpoints early. Well below paho's
# limit of 65,535 unacknowledged messages.
max_inflight_messages {MAX_INFLIGHT_MESSAGES}
# The same bound in bytes: a paho client keeps in-flight messages in memory.
max_inflight_bytes {MAX_INFLIGHT_BYTES}
# The largest payload the hub accepts (its mqtt source's max_payload, 64 KiB):
# larger ones are refused at the door instead of queued for a hub that drops
# them (MQTT 5 publishers get reason code 149). mosquitto prints a note that
# max_packet_size replaces this; that one disconnects the publisher instead,
# and a device that resends the same message would reconnect forever.
message_size_limit {MAX_PAYLOAD}

# -- logging --
# To the console, where `edgestream broker run` shows it and a service manager
# collects it. stderr, not stdout: mosquitto's stdout is block-buffered when it
# is not a terminal, so a log read through a pipe would arrive kilobytes late.
log_dest stderr
log_type error
log_type warning
log_type notice
log_type information
# One line per client connect and disconnect: who is there, who went away.
connection_messages true
log_timestamp true
log_timestamp_format %Y-%m-%dT%H:%M:%S
"""


def write_config(directory: Path | str, port: int, extra_conf: str = "") -> Path:
    """Create ``directory`` (the persistence folder) and write ``mosquitto.conf`` into it atomically.

    Refuses a folder this user cannot write: mosquitto would start, run, and only fail to save its
    database when it stops, losing the sessions it was meant to keep.
    """
    d = Path(directory).resolve()
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StartError("mosquitto", f"cannot create the broker folder {d}: {e.strerror}") from e
    if not os.access(d, os.W_OK | os.X_OK):
        raise StartError("mosquitto", f"the broker folder {d} is not writable by "
                                      f"{pwd.getpwuid(os.geteuid()).pw_name}: choose another with --dir")
    conf = d / "mosquitto.conf"
    tmp = conf.with_name(conf.name + ".tmp")
    tmp.write_text(recommended_config(port, d) + extra_conf)
    tmp.replace(conf)
    return conf


def find_mosquitto() -> str:
    """The mosquitto executable (PATH, or /usr/sbin where Debian puts it)."""
    exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if not exe:
        raise StartError("mosquitto", "not installed: run `sudo apt-get install -y mosquitto` (make does it as root)")
    return exe


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mosquitto:
    """A mosquitto on ``127.0.0.1:port`` running ``recommended_config`` with its files in ``workdir``.

    ``extra_conf`` is appended (another listener, TLS files); the log goes to ``workdir/mosquitto.log``.
    """

    host = "127.0.0.1"

    def __init__(self, workdir: Path, port: int | None = None, extra_conf: str = ""):
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.conf = write_config(self.workdir, self.port, extra_conf)
        self.log = self.workdir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> "Mosquitto":
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([find_mosquitto(), "-c", str(self.conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StartError("mosquitto", f"exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise StartError("mosquitto", f"did not listen on {self.port} within {timeout}s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()
