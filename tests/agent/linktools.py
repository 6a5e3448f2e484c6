"""Host-side helpers for the agent link tests (CPython only, not collected).

- ``Subscriber``: a paho-mqtt client that records everything it receives.
- ``MqttProxy``: a TCP proxy on loopback between a client and mosquitto that
  can swallow the next PUBACK going to the client and cut the connection, to
  make a lost acknowledgement happen for real.
- ``PtyBridge``: two real ptys joined by a thread, so the agent opens one
  end and pyserial the other; it can inject garbage and cut a frame.
- ``HubEnd``: the hub's end of a ``PtyBridge``: pyserial, decoding frames.
- ``start_micropython``: run a device script under the real ``micropython``
  binary with a board heap and profile (``frozen``, ``mpy`` or ``host``: see
  ``edgestream_tools.micropython``), as a background process.
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import threading
import time
import tty
from pathlib import Path

import paho.mqtt.client as mqtt
import serial

from edgestream_shared.decoder import decode
from edgestream_shared.errors import WireError
from edgestream_shared.frame import FrameReader
from edgestream_tools import micropython as mp

TESTS = Path(__file__).resolve().parents[1]


def start_micropython(script: Path, *args: str, board: str = "esp32", cwd=None,
                      profile: str = mp.DEFAULT_PROFILE) -> subprocess.Popen:
    return subprocess.Popen(
        mp.command(board, profile) + [str(script), *map(str, args)],
        env=mp.environment([str(TESTS)], profile),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=cwd,
    )


def finish(proc: subprocess.Popen, timeout: float = 30) -> str:
    """Wait for a device process; return its output (raise with it if it failed)."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate(timeout=5)
        raise AssertionError("device process timed out:\n" + out.decode(errors="replace"))
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        raise AssertionError(f"device process exited {proc.returncode}:\n{text}")
    return text


def wait_until(pred, timeout: float = 10.0, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


class Subscriber:
    """paho subscriber recording (topic, payload, retain) tuples."""

    def __init__(self, broker, topics, client_id: str = "test-sub", clean: bool = True,
                 username: str | None = None, password: str | None = None):
        self.broker = broker
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
        if username:
            self.c.username_pw_set(username, password)
        self.c.on_message = self._on_message
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = lambda *a: self.subscribed.set()
        self.topics = list(topics)
        self.c.reconnect_delay_set(0.05, 0.2)
        self.c.connect(broker.host, broker.port, keepalive=5)
        self.c.loop_start()
        if not self.subscribed.wait(10):
            raise AssertionError("subscriber did not subscribe")

    def _on_connect(self, client, userdata, flags, rc, props=None):
        for t in self.topics:
            client.subscribe(t, qos=1)

    def _on_message(self, client, userdata, msg):
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def on(self, topic: str) -> list[bytes]:
        with self.lock:
            return [p for t, p, _ in self.messages if t == topic]

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()
        # paho closes its sockets when the client is deleted: no callback cycle keeps it for the collector
        self.c.on_message = self.c.on_connect = self.c.on_subscribe = None


class MqttProxy:
    """TCP proxy 127.0.0.1:<port> -> broker; ``drop_next_puback()`` arms it to
    swallow the next PUBACK sent to the client and then cut the connection."""

    def __init__(self, broker_host: str, broker_port: int):
        self.target = (broker_host, broker_port)
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(4)
        self.port = self.srv.getsockname()[1]
        self.host = "127.0.0.1"
        self._arm = threading.Event()
        self.dropped_pids: list[int] = []
        self.connections = 0
        self._stop = False
        self._t = threading.Thread(target=self._serve, daemon=True)
        self._t.start()

    def drop_next_puback(self) -> None:
        self._arm.set()

    def _serve(self) -> None:
        self.srv.settimeout(0.2)
        while not self._stop:
            try:
                c, _ = self.srv.accept()
            except OSError:
                continue
            try:
                b = socket.create_connection(self.target, timeout=2)
            except OSError:
                c.close()
                continue
            self.connections += 1
            threading.Thread(target=self._pump, args=(c, b), daemon=True).start()

    def _pump(self, c: socket.socket, b: socket.socket) -> None:
        buf = bytearray()  # broker -> client bytes, parsed packet by packet
        deadline = time.monotonic() + 120
        try:
            while not self._stop and time.monotonic() < deadline:
                r, _, _ = select.select([c, b], [], [], 0.2)
                if c in r:
                    d = c.recv(65536)
                    if not d:
                        return
                    b.sendall(d)
                if b in r:
                    d = b.recv(65536)
                    if not d:
                        return
                    buf += d
                    while True:
                        pkt = _split_packet(buf)
                        if pkt is None:
                            break
                        del buf[:len(pkt)]
                        if pkt[0] >> 4 == 4 and self._arm.is_set():
                            self._arm.clear()
                            self.dropped_pids.append((pkt[2] << 8) | pkt[3])
                            return  # swallow it and cut both sides
                        c.sendall(pkt)
        except OSError:
            return
        finally:
            c.close()
            b.close()

    def close(self) -> None:
        self._stop = True
        self.srv.close()
        self._t.join(2)


def _split_packet(buf: bytearray) -> bytes | None:
    if len(buf) < 2:
        return None
    rem, shift, i = 0, 0, 1
    while True:
        if i >= len(buf):
            return None
        rem |= (buf[i] & 0x7F) << shift
        i += 1
        if not buf[i - 1] & 0x80:
            break
        shift += 7
    if len(buf) < i + rem:
        return None
    return bytes(buf[: i + rem])


class PtyBridge:
    """Two raw ptys joined by a pumping thread: ``device_path`` for the agent,
    ``host_path`` for pyserial. ``inject(bytes)`` writes extra bytes towards
    the host in the middle of the agent's stream (garbage, a cut frame)."""

    def __init__(self):
        self.dm, ds = os.openpty()
        self.hm, hs = os.openpty()
        for fd in (ds, hs):
            tty.setraw(fd)  # no echo, no CR/LF translation
        self.device_path = os.ttyname(ds)
        self.host_path = os.ttyname(hs)
        self._slaves = (ds, hs)  # kept open so the ptys survive reopening
        self.to_host = bytearray()  # everything the device sent, as seen here
        self._inject: list[bytes] = []
        self._lock = threading.Lock()
        self._stop = False
        self._t = threading.Thread(target=self._pump, daemon=True)
        self._t.start()

    def inject(self, data: bytes) -> None:
        with self._lock:
            self._inject.append(data)

    def _pump(self) -> None:
        # Injected bytes go out only at a frame boundary of the device's
        # stream (after a chunk that ended with a newline), so they never
        # split one of its frames: what they cost is then exactly known.
        deadline = time.monotonic() + 300
        at_boundary = True
        while not self._stop and time.monotonic() < deadline:
            r, _, _ = select.select([self.dm, self.hm], [], [], 0.05)
            try:
                if self.dm in r:
                    d = os.read(self.dm, 4096)
                    self.to_host += d
                    os.write(self.hm, d)
                    at_boundary = d.endswith(b"\n")
                if at_boundary:
                    with self._lock:
                        extra, self._inject = self._inject, []
                    for d in extra:
                        self.to_host += d
                        os.write(self.hm, d)
                if self.hm in r:
                    os.write(self.dm, os.read(self.hm, 4096))
            except OSError:
                time.sleep(0.01)

    def close(self) -> None:
        self._stop = True
        self._t.join(2)
        for fd in (self.dm, self.hm, *self._slaves):
            try:
                os.close(fd)
            except OSError:
                pass


class HubEnd:
    """The hub's end of the pty: reads frames, keeps every decoded message and framing error."""

    def __init__(self, bridge):
        self.port = serial.Serial(bridge.host_path, 115200, timeout=0.05)
        self.reader = FrameReader()
        self.msgs, self.errors = [], []

    def pump(self):
        self.reader.feed(self.port.read(4096))
        for _ in range(1000):
            try:
                p = self.reader.next()
            except WireError as e:
                self.errors.append(e.reason)
                continue
            if p is None:
                return
            self.msgs.append(decode(p))

    def kind(self, k):
        return [m for m in self.msgs if m["kind"] == k]
