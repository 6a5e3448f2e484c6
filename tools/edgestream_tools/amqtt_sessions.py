"""amqtt plugins of the embedded broker: clients let in with their persistent sessions, kept across a restart.

Imported by amqtt (by its dotted name in ``embedded_broker.config``), so it
imports amqtt freely; ``embedded_broker`` explains why it exists.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from amqtt.broker import BrokerContext, RetainedApplicationMessage
from amqtt.plugins.base import BaseAuthPlugin, BasePlugin
from amqtt.session import Session

#: the file the sessions are saved to, in the broker's folder
SESSIONS_FILE = "sessions.json"


def _b64(data: bytes | bytearray | None) -> str:
    return base64.b64encode(bytes(data or b"")).decode()


class SessionFile(BasePlugin[BrokerContext]):
    """amqtt plugin: persistent sessions and retained messages saved at stop, restored at start.

    Uses the hooks and the context calls amqtt's own persistence plugin uses
    (``on_broker_post_start``, ``context.add_subscription``, ``get_session``).
    """

    @dataclass
    class Config:
        """The plugin's options in the broker config (amqtt checks them against this)."""

        file: str = SESSIONS_FILE  # where the sessions are saved

    def _path(self) -> Path:
        return Path(self.config.file)

    async def on_broker_post_start(self) -> None:
        path = self._path()
        try:
            saved = json.loads(path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as e:
            logging.getLogger(__name__).warning("cannot read %s (%s): starting without saved sessions", path, e)
            return
        for s in saved.get("sessions", []):
            await self.context.add_subscription(s["client_id"], None, None)  # creates the offline session
            for topic, qos in s["subscriptions"]:
                await self.context.add_subscription(s["client_id"], topic, qos)
            session = self.context.get_session(s["client_id"])
            if session is None:
                continue
            session.clean_session = False
            for topic, data, qos in s["queued"]:
                await session.retained_messages.put(
                    RetainedApplicationMessage(None, topic, base64.b64decode(data), qos))
        for topic, data, qos in saved.get("retained", []):
            self.context.retained_messages[topic] = RetainedApplicationMessage(None, topic,
                                                                               base64.b64decode(data), qos)
        logging.getLogger(__name__).info("restored %d sessions and %d retained messages from %s",
                                         len(saved.get("sessions", [])), len(saved.get("retained", [])), path)

    async def on_broker_pre_shutdown(self) -> None:
        sessions = []
        subs = self.context.subscriptions
        for session in self.context.sessions:
            if session.clean_session in (None, True):
                continue
            filters = [[topic, qos] for topic, holders in subs.items()
                       for held, qos in holders if held.client_id == session.client_id]
            queued = [[m.topic, _b64(m.data), m.qos] for m in session.inflight_out.values()]
            queue = session.retained_messages
            while not queue.empty():
                m = queue.get_nowait()
                queued.append([m.topic, _b64(m.data), m.qos])
            sessions.append({"client_id": session.client_id, "subscriptions": filters, "queued": queued})
        retained = [[topic, _b64(m.data), m.qos] for topic, m in self.context.retained_messages.items() if m.data]
        path = self._path()
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"sessions": sessions, "retained": retained}))
        os.replace(tmp, path)


class LoopbackClients(BaseAuthPlugin):
    """amqtt plugin: let every client in, its session as persistent as it asked.

    amqtt's ``AnonymousAuthPlugin`` marks each client it lets in without a
    user name anonymous, and amqtt then neither queues QoS 1 messages for
    such a session while its client is away nor keeps the session after a
    disconnect: ``clean_session: false`` would mean nothing. The embedded
    broker listens on loopback only (as the mosquitto config does), so it
    lets clients in as they are.
    """

    @dataclass
    class Config:
        """No options (amqtt wants the class)."""

    async def authenticate(self, *, session: Session) -> bool:
        return True
