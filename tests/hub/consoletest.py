"""A running hub with its REST API, a real mosquitto and real MicroPython agents, for the API and console tests.

``LiveHub`` writes a hub.yaml into a folder, runs it with ``HubService`` in this process (``run()`` on a
thread, as ``hub run`` does), starts agents as ``micropython -m edgestream_agent.main agent.json`` on the
board build (as tests/hub/test_fleet.py does) and talks to the API over real HTTP. Every wait is bounded;
``close()`` kills every process started and stops the hub.
"""

from __future__ import annotations

import http.client
import json
import ssl
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from hubtest import wait_for

from edgestream_tools import micropython as mp


def hub_yaml(broker_port: int, api: str = "") -> str:
    """Device results over MQTT into a file and a windowed SQL pipeline; an HTTP source whose zeros a SQL
    processor rejects (dead letters); the device registry; the API on a free loopback port."""
    return f"""
broker: {{host: 127.0.0.1, port: {broker_port}}}
sources:
  devs: {{mqtt: {{topics: ["edgestream/+/results"]}}}}
  web: {{http: {{port: 0, read_timeout: 2s}}}}
sinks:
  out: {{file: {{path: out.jsonl}}}}
  avg_out: {{file: {{path: avg.jsonl}}}}
  checked: {{file: {{path: checked.jsonl}}}}
  dlq: {{file: {{path: dead.jsonl}}}}
pipelines:
  raw: {{from: devs, to: out}}
  avg:
    from: devs
    processors:
      - sql: {{query: "SELECT device, sensor, avg(avg) AS avg, count(*) AS n FROM s GROUP BY device, sensor,
                       TUMBLINGWINDOW(ss, 1)", processing_time: true}}
    to: avg_out
  checks:
    from: web
    processors: [{{sql: {{query: "SELECT *, 100 / v AS inv FROM s", processing_time: true}}}}]
    to: checked
hub: {{dead_letter: dlq, watch: false}}
state: {{dir: state}}
devices: {{connection: default, missing_after: 1s}}
api: {{listen: "127.0.0.1:0", heartbeat: 300ms{api}}}
"""


def agent_config(dev: str, broker_port: int, window_ms: int = 200, version: int | None = None) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "device": dev,
        "sensors": [{"name": "temp", "period_ms": 20, "source": {"type": "sim", "wave": "steps"},
                     "windows": [{"name": "w", "size_ms": window_ms, "aggregates": ["count", "avg", "max"]}]}],
        "transport": {"type": "mqtt", "health_ms": 300, "poll_ms": 5,
                      "mqtt": {"host": "127.0.0.1", "port": broker_port, "backoff_min_ms": 100,
                               "backoff_max_ms": 400, "keepalive_s": 5}}}
    if version is not None:
        cfg["version"] = version
    return cfg


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<{self.status} {self.body[:300]!r}>"


class LiveHub:
    def __init__(self, tmp: Path, broker_port: int, api: str = "", token: str | None = None) -> None:
        self.tmp = tmp
        self.broker_port = broker_port
        self.token = token
        self.path = tmp / "hub.yaml"
        self.path.write_text(hub_yaml(broker_port, api))
        self.procs: list[subprocess.Popen[bytes]] = []
        self.svc: Any = None
        self._runner: threading.Thread | None = None

    def start(self) -> "LiveHub":
        from edgestream_hub.service import HubService

        self.svc = HubService(str(self.path), env={})
        self.svc.start()
        self._runner = threading.Thread(target=self.svc.run, name="test-hub-run", daemon=True)
        self._runner.start()
        return self

    @property
    def url(self) -> str:
        return self.svc.api.url

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def web_port(self) -> int:
        return self.svc.engine.sources["web"].source.port

    def start_agent(self, dev: str, cfg: dict[str, Any] | None = None) -> subprocess.Popen[bytes]:
        d = self.tmp / f"agent-{dev}"
        d.mkdir(exist_ok=True)
        (d / "agent.json").write_text(json.dumps(cfg or agent_config(dev, self.broker_port, version=1)))
        p = subprocess.Popen(mp.command("esp32") + ["-m", "edgestream_agent.main", "agent.json"],
                             env=mp.environment([]), cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    def saved_agent_config(self, dev: str) -> dict[str, Any]:
        return json.loads((self.tmp / f"agent-{dev}" / "agent.json").read_text())

    def connection(self, timeout: float = 10) -> http.client.HTTPConnection:
        host, port = "127.0.0.1", self.port
        if self.url.startswith("https"):
            ctx = ssl.create_default_context(cafile=str(self.tmp / "hub.crt"))
            return http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
        return http.client.HTTPConnection(host, port, timeout=timeout)

    def request(self, method: str, path: str, body: Any = None, *, ctype: str | None = "application/json",
                token: str | None = "default", headers: dict[str, str] | None = None, timeout: float = 30) -> Reply:
        h = dict(headers or {})
        tok = self.token if token == "default" else token
        if tok:
            h["Authorization"] = f"Bearer {tok}"
        data: bytes | None = None
        if body is not None:
            data = body if isinstance(body, bytes) else body.encode() if isinstance(body, str) else \
                json.dumps(body).encode()
            if ctype:
                h["Content-Type"] = ctype
        c = self.connection(timeout)
        try:
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            c.close()

    def get(self, path: str, **kw: Any) -> Reply:
        return self.request("GET", path, **kw)

    def devices(self) -> dict[str, dict[str, Any]]:
        r = self.get("/api/devices")
        assert r.status == 200, r
        return {d["device"]: d for d in r.json()["devices"]}

    def wait_online(self, *devs: str, timeout: float = 40) -> None:
        assert wait_for(lambda: all((self.devices().get(d) or {}).get("results_sent") for d in devs), timeout), \
            self.devices()

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(10)
        if self.svc is not None:
            self.svc.stop_requested.set()
            if self._runner is not None:
                self._runner.join(30)


def events(hub: LiveHub, stop_after: float, *, until: Any = None,
           sock_opts: Any = None) -> list[tuple[str, Any]]:
    """Read /api/events for at most ``stop_after`` seconds (or until ``until(events)``): (name, data) pairs, and
    ("comment", text) for comment lines."""
    c = hub.connection(stop_after + 5)
    out: list[tuple[str, Any]] = []
    try:
        c.request("GET", "/api/events", headers={"Authorization": f"Bearer {hub.token}"} if hub.token else {})
        r = c.getresponse()
        assert r.status == 200 and r.getheader("Content-Type") == "text/event-stream"
        deadline = time.monotonic() + stop_after
        name = None
        while time.monotonic() < deadline:
            line = r.fp.readline()
            if not line:
                break
            text = line.decode().rstrip("\n")
            if text.startswith(":"):
                out.append(("comment", text[1:].strip()))
            elif text.startswith("event: "):
                name = text[7:]
            elif text.startswith("data: ") and name is not None:
                out.append((name, json.loads(text[6:])))
                if name == "close" or (until is not None and until(out)):
                    break
    finally:
        c.close()
    return out
