"""Hub test helpers (put on sys.path by tests/hub/conftest.py): a fresh registry with a scriptable source and
an in-memory sink.

``check_entry`` checks a Home Assistant discovery entry against the keys MQTT discovery documents.

``script`` (source) emits the records a test put in ``hub.scripts[name]``; the
markers ``PAUSE`` (wait until ``hub.resume[name]`` is set) and ``CRASH``
(raise once) script recovery tests exactly. ``memory`` (sink) keeps what it
is given in ``hub.out[label]`` and can be slow, fail its first writes, or
reject records carrying ``"reject"``.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

from edgestream_hub.components import ComponentContext, PollingSource, Sink
from edgestream_hub.config import HubConfig, load_config
from edgestream_hub.engine import Engine
from edgestream_hub.registry import Registry, component
from edgestream_hub.spec import Field, Spec

PAUSE = "PAUSE"
CRASH = "CRASH"
PLUGIN_DIR = str(Path(__file__).parent / "plugin_example")

def readings(dev: str, boot: int, seqs: list[int]) -> bytes:
    """A wire ``readings`` message with one reading per seq."""
    from edgestream_shared.encoder import Encoder

    e = Encoder(dev, boot, 8192)
    e.begin(b"readings")
    for s in seqs:
        e.add_reading(s, b"temp", 1000 + s, 20.0 + s)
    return bytes(e.finish())


# payloads no source may die of: each must become one dead letter and one decode error
HOSTILE_JSON = {
    "deep arrays": b"[" * 5000,
    "deep objects": b'{"a":' * 3000,
    "not UTF-8": b'{"a": "\xff\xfe"}',
    "NaN": b'{"a": NaN}',
    "Infinity": b'{"a": -Infinity}',
    "float out of range": b'{"a": 1e999}',
    "int of 5000 digits": b'{"a": ' + b"1" * 5000 + b"}",
    "a number": b"42",
    "a string": b'"text"',
    "null": b"null",
    "cut": b'{"a": 1',
    "unpaired surrogate": b'{"a": "\\ud800"}',
}
_R = b'{"v":1,"kind":"readings","dev":"d1","boot":1,"items":[{"seq":0,"sensor":"temp","t":1,"value":%s}]}'
HOSTILE_WIRE = {
    "deep arrays": b"[" * 5000,
    "deep in a message": _R % (b"[" * 3000),
    "not UTF-8": _R % b'"\xff"',
    "NaN": _R % b"NaN",
    "Infinity": _R % b"Infinity",
    "float out of range": _R % b"1e999",
    "int of 5000 digits": _R % (b"1" * 5000),
    "seq of the wrong type": _R.replace(b'"seq":0', b'"seq":"0"') % b"1",
    "boot of the wrong type": _R.replace(b'"boot":1', b'"boot":1.5') % b"1",
    "an array": b"[1, 2]",
    "unpaired surrogate": b'{"v":1,"kind":"metrics","dev":"d1","boot":1,"metrics":{"fw":"1.\\udfff"}}',
}


def deep_yaml(n: int) -> bytes:
    """A config whose section `x` nests ``n`` lists deep."""
    return ("sources: {s: {file: {path: in.jsonl}}}\nsinks: {o: {stdout: {}}}\npipelines: {p: {from: s, to: o}}\n"
            "x: " + "[" * n + "]" * n + "\n").encode()


# nine lists of nine aliases of the one before: a few hundred bytes that expand to 9**9 strings
ALIAS_BOMB = (b'a: &a ["x","x","x","x","x","x","x","x","x"]\n'
         + b"".join(b"%c: &%c [%s]\n" % (c, c, b",".join([b"*%c" % p] * 9)) for p, c in zip(b"abcdefgh", b"bcdefghi"))
         + b"sources: {d: {mqtt: {topics: [a/b]}}}\nsinks: {o: {stdout: {}}}\npipelines: {p: {from: d, to: o}}\n")

def closed_within(s: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Whether the server closed the connection within ``seconds``, and what it sent before."""
    s.settimeout(seconds)
    data = b""
    try:
        while chunk := s.recv(4096):
            data += chunk
    except TimeoutError:
        return False, data
    except ConnectionResetError:
        pass
    return True, data


def trickle(port: int, head: bytes, every_s: float, seconds: float) -> tuple[float, bytes]:
    """Send ``head`` a byte every ``every_s`` (each read well within the timeout) for at most ``seconds``;
    returns when the server closed the connection (seconds after the first byte) and what it sent."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    t0 = time.monotonic()
    try:
        for b in head[: int(seconds / every_s)]:
            try:
                s.sendall(bytes([b]))
            except OSError:
                break
            s.settimeout(every_s)
            try:
                if not s.recv(4096, socket.MSG_PEEK):
                    break  # closed
                break  # answered
            except TimeoutError:
                pass
        closed, data = closed_within(s, 5)
        assert closed
        return time.monotonic() - t0, data
    finally:
        s.close()


def wait_for(cond, timeout: float = 10.0, step: float = 0.01) -> bool:
    """Poll ``cond()`` until true or ``timeout`` (bounded loop); returns the last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return bool(cond())


def read_once(hub: "Harness", name: str, text: str) -> tuple[list[Any], list[Any]]:
    """Run a hub whose file source reads ``name`` (holding ``text``) once: (records, dead letters)."""
    (hub.tmp / name).write_text(text)
    e = hub.engine(f"""
hub: {{dead_letter: dlq}}
sources: {{f: {{file: {{path: {name}}}}}}}
sinks: {{out: {{memory: {{}}}}, dlq: {{memory: {{}}}}}}
pipelines: {{p: {{from: f, to: out}}}}
""")
    assert e.finished.wait(10)
    assert e.stop()
    return hub.out.get("out", []), hub.out.get("dlq", [])


class ScriptSource(PollingSource):
    def __init__(self, items: list[Any], batch: int, resume: threading.Event, ctx: ComponentContext,
                 finite: bool) -> None:
        super().__init__(ctx)
        self.items, self.batch, self.resume, self.finite = items, batch, resume, finite
        self.pos = 0
        self.crashed = False
        self.started = threading.Event()
        self.backoff_min_s = 0.01

    def start(self, emit):
        self.started.set()
        super().start(emit)

    def poll(self):
        out: list = []
        while self.pos < len(self.items) and len(out) < self.batch:
            it = self.items[self.pos]
            if it == PAUSE:
                if out:
                    return out, 0
                if not self.resume.is_set():
                    return [], 0.01
                self.pos += 1
                continue
            if it == CRASH:
                if out:
                    return out, 0
                self.pos += 1
                raise RuntimeError("scripted crash")
            out.append(it)
            self.pos += 1
        if self.pos >= len(self.items):
            return out, None if self.finite else 0.05
        return out, 0


class MemorySink(Sink):
    def __init__(self, cfg: dict[str, Any], store: list[Any], gate: threading.Event | None = None) -> None:
        self.cfg, self.out, self.gate = cfg, store, gate
        self.fail_left = cfg["fail_first"]
        self.writes = 0
        self.closed = False

    def write(self, records):
        self.writes += 1
        if self.cfg["delay"]:
            time.sleep(self.cfg["delay"] / 1000)
        if self.gate is not None:
            self.gate.wait(30)
        if self.fail_left:
            self.fail_left -= 1
            raise ConnectionError("scripted sink failure")
        rejected = [(r, "memory sink: record asked to be rejected") for r in records
                    if isinstance(r, dict) and r.get("reject")]
        self.out.extend(r for r in records if not (isinstance(r, dict) and r.get("reject")))
        return rejected

    def close(self):
        self.closed = True


class Harness:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.scripts: dict[str, list[Any]] = {}
        self.resume: dict[str, threading.Event] = {}
        self.gates: dict[str, threading.Event] = {}
        self.out: dict[str, list[Any]] = {}
        self.sources: dict[str, ScriptSource] = {}
        self.sinks: dict[str, MemorySink] = {}
        self.engines: list[Engine] = []
        self.registry = self.make_registry()

    def make_registry(self, paths: list[str] | None = None) -> Registry:
        r = Registry.default(paths=paths if paths is not None else [])
        h = self

        @component(Spec("script", "Test source.", [Field("name", "str", "Script name."),
                                                   Field("batch", "int", "Batch.", default=100),
                                                   Field("finite", "bool", "Ends.", default=False)]))
        def script(cfg, ctx):
            ev = h.resume.setdefault(cfg["name"], threading.Event())
            s = ScriptSource(h.scripts.setdefault(cfg["name"], []), cfg["batch"], ev, ctx, cfg["finite"])
            h.sources[ctx.label] = s
            return s

        @component(Spec("memory", "Test sink.", [Field("delay", "duration", "Per write.", default="0ms"),
                                                 Field("fail_first", "int", "Failing writes.", default=0),
                                                 Field("gated", "bool", "Wait for gates[label].", default=False)]))
        def memory(cfg, ctx):
            gate = h.gates.setdefault(ctx.label, threading.Event()) if cfg["gated"] else None
            s = MemorySink(cfg, h.out.setdefault(ctx.label, []), gate)
            h.sinks[ctx.label] = s
            return s

        r.register("source", "script", script)
        r.register("sink", "memory", memory)
        return r

    def config(self, text: str, env: dict[str, str] | None = None, sets: tuple[str, ...] = ()) -> HubConfig:
        path = self.tmp / "hub.yaml"
        path.write_text(text)
        return load_config(path, env=env or {}, sets=sets, registry=self.registry)

    def engine(self, text: str, fresh_state: tuple[str, ...] = (), **kw: Any) -> Engine:
        e = Engine(self.config(text, **kw), registry=self.registry, fresh_state=fresh_state)
        self.engines.append(e)
        return e.start()

    def close(self) -> None:
        for r in [*self.resume.values(), *self.gates.values()]:
            r.set()
        for e in self.engines:
            e.stop(5)


# The configuration variables Home Assistant documents for MQTT discovery of these platforms
# (home-assistant.io/integrations/sensor.mqtt, binary_sensor.mqtt, and mqtt/#discovery-messages).
COMMON = {"availability", "availability_mode", "availability_template", "availability_topic", "device",
          "device_class", "enabled_by_default", "encoding", "entity_category", "entity_picture", "expire_after",
          "force_update", "icon", "json_attributes_template", "json_attributes_topic", "name", "object_id",
          "default_entity_id", "payload_available", "payload_not_available", "platform", "qos", "state_topic",
          "unique_id", "value_template", "origin"}
KEYS = {"sensor": COMMON | {"last_reset_value_template", "options", "suggested_display_precision", "state_class",
                            "unit_of_measurement"},
        "binary_sensor": COMMON | {"off_delay", "payload_off", "payload_on"}}
DEVICE_KEYS = {"configuration_url", "connections", "hw_version", "identifiers", "manufacturer", "model", "model_id",
               "name", "serial_number", "suggested_area", "sw_version", "via_device"}
ORIGIN_KEYS = {"name", "sw_version", "support_url"}
SENSOR_DEVICE_CLASSES = {"data_size", "duration"}  # the ones used, both documented sensor device classes
STATE_CLASSES = {"measurement", "total", "total_increasing"}


def check_entry(topic: str, payload: bytes, prefix: str = "edgestream", ha: str = "homeassistant") -> dict[str, Any]:
    """One discovery entry, checked against the documented schema; returns its body."""
    import json

    from edgestream_hub.homeassistant import slug

    parts = topic.split("/")
    assert len(parts) == 4 and parts[0] == ha and parts[3] == "config", topic
    component, object_id = parts[1], parts[2]
    body = json.loads(payload)
    assert set(body) <= KEYS[component], set(body) - KEYS[component]
    assert body["unique_id"] == object_id and slug(object_id) == object_id
    assert body["state_topic"].startswith(prefix + "/") and body["name"]
    dev = body["device"]
    assert set(dev) <= DEVICE_KEYS and dev["identifiers"] and dev["name"]
    assert set(body["origin"]) <= ORIGIN_KEYS and body["origin"]["name"]
    status = body["availability_topic"]
    assert status.endswith("/status") and body["payload_available"] == "online"
    assert body.get("state_class", "measurement") in STATE_CLASSES
    if component == "sensor":
        assert body.get("device_class", "data_size") in SENSOR_DEVICE_CLASSES
    else:
        assert body["device_class"] == "connectivity" and (body["payload_on"], body["payload_off"]) == \
            ("online", "offline")
    assert body["value_template"].count("{{") == body["value_template"].count("}}") == 1
    return body
