"""A pure-Python MQTT broker for machines where mosquitto cannot be installed (no root, no package).

``edgestream broker run --embedded`` runs amqtt (PyPI ``amqtt``, MIT, pure
Python: ``pip install 'edgestream[embedded-broker]'``) on loopback with what
the project's mosquitto config (``edgestream_tools.broker``) guarantees and
amqtt does not by itself:

- **persistent sessions at all.** amqtt marks a client it lets in without a
  user name anonymous, and neither queues for nor keeps an anonymous
  session: ``LoopbackClients`` lets clients in as they are (the listener is
  loopback only, as in the mosquitto config).
- **persistent sessions across a restart.** amqtt keeps a ``clean_session:
  false`` session (its subscriptions, and the QoS 1 messages queued for it
  while it is away) in memory only. The ``SessionFile`` plugin
  (``amqtt_sessions``) writes every such session, with its queued messages and those sent to it and not
  acknowledged yet, to ``<dir>/sessions.json`` when the broker stops, and
  restores them when it starts, as mosquitto's ``persistence true`` does. A
  message restored after it had in fact reached its subscriber arrives a
  second time: the hub drops it as a duplicate ``seq`` (counted).
- **retained messages across a restart** (a device's desired config): saved
  and restored in the same file.

Measured on the 2-core test machine (3000 QoS 1 messages of 200 bytes, one
paho publisher, one persistent paho subscriber): amqtt 0.12 spent ~160 µs of
CPU per message and passed ~4,300 messages/s; mosquitto ~10 µs and ~11,800/s.
It starts in ~0.1 s. So it is for the demo (a few messages a second) and small
fleets, not for a gateway's production broker; mosquitto is. Why amqtt: it is
maintained, pure Python (its dependencies ship wheels: no compiler, no root),
and of the Python brokers on PyPI it has persistent sessions with QoS 1
queues; it speaks MQTT 3.1.1 (paho, the agent's
client), QoS 0 and 1, last wills and retained messages. One loss remains that
mosquitto does not have: a QoS 1 message routed to a subscriber in the very
moment its connection closes can be lost (1 message in 1 of 11 runs of a test
that published within milliseconds of the subscriber's disconnect); and a
message that arrives while the broker saves its sessions at a stop.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from edgestream_hub.errors import StartError

#: the file the sessions are saved to, in the broker's folder
SESSIONS_FILE = "sessions.json"
_PLUGINS = "edgestream_tools.amqtt_sessions"


def available() -> bool:
    """Is amqtt installed (the ``embedded-broker`` extra)?"""
    import importlib.util

    return importlib.util.find_spec("amqtt") is not None


def config(port: int, directory: Path, host: str = "127.0.0.1") -> dict[str, Any]:
    """amqtt's broker config: loopback listener, anonymous clients (loopback only), sessions in ``directory``."""
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        "plugins": {
            f"{_PLUGINS}.LoopbackClients": {},
            f"{_PLUGINS}.SessionFile": {"file": str(directory / SESSIONS_FILE)},
        },
    }


def serve(port: int, directory: Path, host: str = "127.0.0.1") -> int:
    """Run the embedded broker until SIGTERM or SIGINT; the exit code of ``edgestream broker run --embedded``."""
    if not available():
        raise StartError("embedded broker", "amqtt is not installed: run  pip install 'edgestream[embedded-broker]'  "
                                            "(make demo does it when mosquitto is missing)")
    directory = directory.resolve()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StartError("embedded broker", f"cannot create the broker folder {directory}: {e.strerror}") from e
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger(__name__).setLevel(logging.INFO)
    return asyncio.run(_serve(port, directory, host))


async def _serve(port: int, directory: Path, host: str) -> int:
    from amqtt.broker import Broker

    broker = Broker(config(port, directory, host))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    try:
        await broker.start()
    except Exception as e:  # amqtt raises BrokerError, or OSError for a port in use, wrapped or not
        raise StartError("embedded broker", f"cannot start on {host}:{port}: {e}") from e
    print(f"broker: embedded amqtt on {host}:{port} (sessions {directory / SESSIONS_FILE})", file=sys.stderr,
          flush=True)
    await stop.wait()
    await broker.shutdown()
    return 0
