"""Crash-test helpers (put on sys.path by tests/hub/conftest.py): numbered publishers, a hub process to
kill, and the reference a run without crashes gives.

Data: device ``dev<k>`` (boot 1) sends readings with seq 0..n-1, ``per`` readings per wire ``data``
message; reading ``i`` has event time ``t(i)`` and value ``i % 7``. So every window's count and sum are
known exactly, and a reading lost or counted twice shows.

``python crashkit.py publish PORT FIRST_DEVICE DEVICES READINGS PER TIMING RATE WINDOW`` is one publisher
process: QoS 1, at most ``WINDOW`` messages waiting for their PUBACK, ``RATE`` messages a second (0: as
fast as it can), devices interleaved message by message; it rides out broker restarts (paho resends
what was not acknowledged) and exits 0 once the broker acknowledged every message.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

EDGESTREAM = str(Path(sys.executable).parent / "edgestream")
SENTINEL = "zz"  # the device whose one far-future reading closes every window at the end


def t_tumbling(i: int) -> int:
    """Event time of reading ``i``: one every 10 ms."""
    return 1_000_000 + i * 10


def t_sessions(i: int) -> int:
    """Event time of reading ``i`` in bursts of 50 (10 ms apart) every 2 s: one session per burst."""
    return 1_000_000 + (i // 50) * 2000 + (i % 50) * 10


TIMINGS: dict[str, Callable[[int], int]] = {"tumbling": t_tumbling, "sessions": t_sessions}


def message(dev: str, first: int, n: int, timing: Callable[[int], int]) -> bytes:
    from edgestream_shared.encoder import Encoder

    e = Encoder(dev, 1, 16384)
    e.begin(b"readings")
    for i in range(first, first + n):
        e.add_reading(i, b"temp", timing(i), float(i % 7))
    return bytes(e.finish())


def records(devices: list[str], readings: int, timing: Callable[[int], int]) -> list[dict[str, Any]]:
    """What the hub's wire decoding makes of every reading, in publish order (the reference's input)."""
    out = []
    for i in range(readings):
        for dev in devices:
            t = timing(i)
            out.append({"device": dev, "boot": 1, "seq": i, "sensor": "temp", "t": t, "value": float(i % 7),
                        "ts": t})
    return out


def reference(query: str, lateness_ms: int, scope: str, recs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The results a run without crashes gives: the same query over every record, then the sentinel
    (which closes every window but its own), by result id."""
    from edgestream_hub.api import SimpleContext
    from edgestream_hub.sql.processor import SqlProcessor

    p = SqlProcessor(query, SimpleContext(), lateness_ms=lateness_ms, id_field="_id", id_scope=scope)
    out = p.process(recs, 0) + p.process([sentinel_record()], 0)
    rows = {r["_id"]: r for r in out}
    assert len(rows) == len(out), "result ids are unique"
    return rows


def sentinel_record() -> dict[str, Any]:
    t = 40_000_000_000
    return {"device": SENTINEL, "boot": 1, "seq": 0, "sensor": "temp", "t": t, "value": 0.0, "ts": t}


def sentinel_message() -> bytes:
    return message(SENTINEL, 0, 1, lambda i: sentinel_record()["t"])


def start_publisher(port: int, first_device: int, devices: int, readings: int, per: int, timing: str,
                    rate: float, window: int, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:  # the child has its own copy of the descriptor
        return subprocess.Popen([sys.executable, __file__, "publish", str(port), str(first_device), str(devices),
                                 str(readings), str(per), timing, str(rate), str(window)],
                                stdout=out, stderr=subprocess.STDOUT)


def device_names(first: int, n: int) -> list[str]:
    return [f"dev{k:02d}" for k in range(first, first + n)]


def publish(port: int, first_device: int, devices: int, readings: int, per: int, timing: str, rate: float,
            window: int) -> int:
    import paho.mqtt.client as mqtt

    tf = TIMINGS[timing]
    names = device_names(first_device, devices)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"crash-pub-{first_device}-{os.getpid()}")
    c.max_inflight_messages_set(window)
    c.max_queued_messages_set(0)  # while the broker is away paho keeps every message and resends it
    c.reconnect_delay_set(1, 2)
    acked: set[int] = set()
    c.on_publish = lambda client, userdata, mid, rc, props: acked.add(mid)  # the broker's PUBACK
    c.connect_async("127.0.0.1", port)
    c.loop_start()
    outstanding: deque[int] = deque()
    deadline = time.monotonic() + 240
    start = time.monotonic()
    sent = 0

    def settle(most: int, step: float) -> None:
        while len(outstanding) > most and time.monotonic() < deadline:
            while outstanding and outstanding[0] in acked:
                acked.discard(outstanding.popleft())
            if len(outstanding) > most:
                time.sleep(step)

    for first in range(0, readings, per):
        for dev in names:
            payload = message(dev, first, min(per, readings - first), tf)
            outstanding.append(c.publish(f"edgestream/{dev}/data", payload, qos=1).mid)
            sent += 1
            settle(window - 1, 0.001)
            if rate:
                ahead = start + sent / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
    settle(0, 0.01)
    c.disconnect()
    c.loop_stop()
    print(f"published {sent} messages, {len(outstanding)} unacknowledged", flush=True)
    return 0 if not outstanding else 1


def publish_one(port: int, topic: str, payload: bytes) -> None:
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        c.publish(topic, payload, qos=1).wait_for_publish(20)
    finally:
        c.disconnect()
        c.loop_stop()


class BrokerStore:
    """The number of messages the broker holds (``$SYS/broker/store/messages/count``, sent every
    ``sys_interval``): the largest value seen is what the broker kept for a hub that did not take it."""

    TOPIC = "$SYS/broker/store/messages/count"

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt

        self.most = 0
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.c.on_message = self._on_message
        self.c.on_connect = lambda c, u, f, rc, p=None: c.subscribe(self.TOPIC)
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        self.most = max(self.most, int(msg.payload))

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


class HubProcess:
    """``edgestream hub run`` as a child process, killed and restarted at will; its log kept in one file."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log = config, log
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self, env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> "HubProcess":
        self.starts += 1
        with open(self.log, "ab") as f:
            f.write(f"---- start {self.starts}\n".encode())
            f.flush()
            self.proc = subprocess.Popen([EDGESTREAM, "hub", "run", "-c", str(self.config), *args], stdout=f,
                                         stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        return self

    def subscribed(self, timeout: float = 20) -> bool:
        """Wait until this start subscribed (and a moment for the broker's SUBACK): from then on the broker
        keeps the hub's messages in its session."""
        from hubtest import wait_for

        mark = f"---- start {self.starts}\n"
        ok = wait_for(lambda: "subscribing to" in self.log.read_text(errors="replace").rsplit(mark, 1)[-1], timeout)
        time.sleep(0.3)
        return ok

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def stop(self, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout)
        self.proc = None
        return rc

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


if __name__ == "__main__":
    if sys.argv[1] == "publish":
        a = sys.argv[2:]
        sys.exit(publish(int(a[0]), int(a[1]), int(a[2]), int(a[3]), int(a[4]), a[5], float(a[6]), int(a[7])))
    sys.exit(f"unknown command {sys.argv[1]!r}")
