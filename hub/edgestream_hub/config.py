"""The hub config: YAML with layers, validated against one spec per component.

Layers, lowest to highest precedence: the specs' defaults < the YAML file <
environment (``EDGESTREAM_<SECTION>__<KEY>...`` variables, and ``${VAR:default}``
inside the YAML) < ``--set path=value``. ``load_config`` returns a
``HubConfig`` or raises ``ConfigError`` listing every problem at once, each
with its path and YAML line (``pipelines.cold_room.processors[0].sql: line 12: ...``).

Validation does not import any connector library: checking a config is cheap.

A config file is refused before it is parsed, with its line (and column), when
it is larger than ``MAX_CONFIG_BYTES`` or not UTF-8; while it is composed, when
it nests deeper than ``MAX_DEPTH`` levels or its aliases expand it to more than
``MAX_NODES`` nodes (a "billion laughs" file is a few hundred bytes). Values
from the environment and ``--set`` are held to the same limits.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from edgestream_hub.errors import ConfigError, ConfigIssue
from edgestream_hub.registry import Registry
from edgestream_hub.spec import Checker, Field, Plain, Spec

SECTIONS = ("hub", "broker", "connections", "sources", "pipelines", "sinks", "state", "metrics", "devices", "api")
MAX_CONFIG_BYTES = 1 << 20  # a config file's largest size
MAX_DEPTH = 64  # nesting of mappings and lists, aliases expanded
MAX_NODES = 100_000  # YAML nodes, aliases expanded

MAX_WORKERS = 64


def _check_hub(cfg: dict[str, Any], chk: Checker, path: str) -> None:
    w = cfg["workers"]
    if w != "auto" and (type(w) is not int or not 1 <= w <= MAX_WORKERS):
        chk.issue(f"{path}.workers", f"{w!r}: expected auto or a number of processes from 1 to {MAX_WORKERS}")
        return
    take, parts = cfg["take"], cfg["partitions"]
    if take is not None:
        if parts is None:
            chk.issue(f"{path}.take", "take needs hub.partitions: how many partitions the cluster's devices are "
                                      "split into")
            return
        if not take:
            chk.issue(f"{path}.take", "an empty list takes no devices: name at least one partition")
        for i, t in enumerate(take):
            if t >= parts:
                chk.issue(f"{path}.take[{i}]", f"partition {t} does not exist: partitions are 0 to {parts - 1}")
        if len(set(take)) != len(take):
            chk.issue(f"{path}.take", f"{take} names a partition twice")
    if type(w) is int and w > (len(take) if take else parts or w):
        chk.issue(f"{path}.workers", f"{w} workers for {len(take) if take else parts} partitions: each worker needs "
                                     "at least one (raise hub.partitions, or lower hub.workers)")


HUB_SPEC = Spec("hub", "Engine settings.", [
    Field("shutdown_timeout", "duration", "How long a stop may take to drain in-flight records and flush sinks.",
          default="10s"),
    Field("watch", "bool", "Reload the config when its file changes (SIGHUP always reloads).", default=True),
    Field("watch_interval", "duration", "How often the config file is checked for changes.", default="1s", min=10),
    Field("dead_letter", "str", "Sink that receives rejected records (with the reason) from every pipeline and "
          "source that does not name its own. Without one, rejected records are logged and counted.",
          default=None, ref="sinks"),
    Field("restart_backoff_max", "duration",
          "Longest backoff of a pipeline whose processors keep failing (sinks use their own `retry`).", default="30s"),
    Field("log_level", "str", "Logging level.", default="info", choices=("debug", "info", "warning", "error")),
    Field("workers", "any", "Processes that run the pipelines, each for a share of the devices (docs/hub.md, "
          "Workers): `auto` runs one per core when every part of the config can be split by device, else one; "
          "a number from 1 to 64 runs that many (a config error names what cannot be split). Read at start.",
          default="auto"),
    Field("partitions", "int", "Partitions the devices are split into (a device's is crc32(id) mod this), across "
          "every gateway of a cluster (default: the number of workers; at most 4096). Read at start.", default=None,
          min=1,
          max=4096),
    Field("take", "list[int]", "The partitions this hub takes, when several gateways share the devices (default: "
          "all). Read at start.", default=None, min=0),
], check=_check_hub)

TLS_SPEC = Spec("tls", "TLS for the MQTT connection.", [
    Field("ca_file", "str", "CA certificate (PEM) that signed the broker's certificate; none uses the system CAs.",
          default=None),
    Field("cert_file", "str", "Client certificate (PEM) for mutual TLS.", default=None),
    Field("key_file", "str", "Client key (PEM) for mutual TLS.", default=None),
    Field("insecure", "bool", "Skip the broker hostname check (testing only).", default=False),
])


def _check_files(cfg: dict[str, Any], chk: Checker, path: str) -> None:
    for k in ("ca_file", "cert_file", "key_file"):
        if cfg.get(k):
            cfg[k] = chk_file(chk, cfg[k], f"{path}.{k}")


def chk_file(chk: Checker, value: str, path: str, must_exist: bool = True) -> str:
    """Resolve a file name against the config's folder; report it if it must exist and does not."""
    p = Path(value).expanduser()
    if not p.is_absolute():
        p = Path(chk.base_dir) / p
    if must_exist and not p.exists():
        chk.issue(path, f"file not found: {value} (looked at {p})")
    return str(p)


TLS_SPEC.check = _check_files

MQTT_CONNECTION_SPEC = Spec("connection", "An MQTT broker connection, shared by the MQTT sources and sinks "
                            "that name it. `broker:` is the connection named `default`.", [
    Field("host", "host", "Broker host name or IP address.", default="127.0.0.1"),
    Field("port", "int", "Broker port.", default=1883, min=1, max=65535),
    Field("username", "str", "User name.", default=None),
    Field("password", "str", "Password.", default=None, secret=True),
    Field("tls", "object", "TLS settings; none means plain TCP.", default=None, spec=TLS_SPEC),
    Field("protocol", "str", "MQTT protocol version (`5` is needed for shared subscriptions).", default="3.1.1",
          choices=("3.1.1", "5")),
    Field("keepalive", "duration", "Keep-alive interval (MQTT sends it in 16-bit seconds).", default="30s",
          min=1000, max=65_535_000),
    Field("connect_timeout", "duration", "Timeout of one connection attempt.", default="5s"),
    Field("reconnect_min", "duration", "First wait before reconnecting; doubles up to `reconnect_max`.",
          default="100ms"),
    Field("reconnect_max", "duration", "Longest wait between reconnection attempts.", default="30s"),
], example="""
broker: {host: 127.0.0.1, port: 1883}
connections:
  cloud: {host: mqtt.example.com, port: 8883, username: hub, password: "${MQTT_PASSWORD}", tls: {ca_file: ca.pem}}
""")

BATCH_SPEC = Spec("batch", "Batching: a batch is handed on when it has `size` records or its first record "
                  "has waited `linger`.", [
    Field("size", "int", "Largest batch, in records.", default=500, min=1),
    Field("linger", "duration", "Longest wait for a batch to fill; 0ms hands on whatever is queued at once "
          "(batches still fill under load), a few ms trades latency for fewer, larger writes.", default="0ms"),
])

RETRY_SPEC = Spec("retry", "Retry with exponential backoff when a sink fails.", [
    Field("initial", "duration", "First wait after a failure.", default="100ms"),
    Field("max", "duration", "Longest wait between attempts.", default="30s"),
    Field("attempts", "int", "Attempts per batch before it goes to the dead-letter sink; 0 retries forever.",
          default=0, min=0),
])

SINK_COMMON = [
    Field("label", "str", "Name in logs and metric labels (default: the sink's name).", default=None, name_like=True),
    Field("queue", "int", "Bound of the sink's input queue, in records.", default=10000, min=1),
    Field("policy", "str", "When the queue is full: `block` slows the pipelines feeding this sink down to its pace "
          "(nothing is lost); `drop_oldest` drops the oldest queued records and counts them in "
          "`edgestream_sink_dropped_records_total`.", default="block", choices=("block", "drop_oldest")),
    Field("batch", "object", "How records are batched into `write` calls.", default={}, spec=BATCH_SPEC),
    Field("retry", "object", "Backoff when a write fails.", default={}, spec=RETRY_SPEC),
]
SOURCE_COMMON = [
    Field("label", "str", "Name in logs and metric labels (default: the source's name).", default=None,
          name_like=True),
    Field("dead_letter", "str", "Sink for this source's undecodable input (default: `hub.dead_letter`).",
          default=None, ref="sinks"),
]
PROCESSOR_COMMON = [
    Field("label", "str", "Name in logs and metric labels (default: `<pipeline>.<type>`).", default=None,
          name_like=True),
]
SINK_COMMON_SPEC = Spec("sink (common keys)", "Keys every sink takes next to its type key.", SINK_COMMON)
SOURCE_COMMON_SPEC = Spec("source (common keys)", "Keys every source takes next to its type key.", SOURCE_COMMON)
PROCESSOR_COMMON_SPEC = Spec("processor (common keys)", "Keys every processor takes next to its type key.",
                             PROCESSOR_COMMON)

PIPELINE_SPEC = Spec("pipeline", "Sources -> processors -> sinks. Records flow through bounded queues.", [
    Field("from", "list[str]", "Sources feeding this pipeline (a source may feed several).", ref="sources",
          one_or_list=True),
    Field("processors", "list[any]", "Processors, in order; each a one-key mapping `{type: {...}}`.", default=[]),
    Field("to", "list[str]", "Sinks receiving what the last processor emits.", ref="sinks", one_or_list=True),
    Field("queue", "int", "Bound of the pipeline's input queue, in records; a full queue blocks the sources.",
          default=10000, min=1),
    Field("batch", "object", "How records are batched into the processors.", default={}, spec=BATCH_SPEC),
    Field("tick", "duration", "Wall-clock tick interval for processors (closes windows when idle).",
          default="1s", min=1),
    Field("dead_letter", "str", "Sink for records this pipeline's processors reject (default: `hub.dead_letter`).",
          default=None, ref="sinks"),
], example="""
pipelines:
  cold_room:
    from: devices
    processors:
      - filter: {field: sensor, eq: temp}
      - sql: "SELECT device, avg(avg) AS t FROM input GROUP BY device, TUMBLINGWINDOW(ss, 60)"
    to: [archive]
""")

def chk_output(chk: Checker, value: str, path: str, folder: bool = False) -> str:
    """Resolve a file (or, with ``folder``, a folder) the hub will create or write; report it if
    something of the other kind is in the way. Creates nothing."""
    p = Path(value).expanduser()
    if not p.is_absolute():
        p = Path(chk.base_dir) / p
    if folder and p.exists() and not p.is_dir():
        chk.issue(path, f"{value} is a file, expected a folder (looked at {p})")
    elif not folder and p.is_dir():
        chk.issue(path, f"{value} is a folder, expected a file (looked at {p})")
    else:
        parent = next((a for a in p.parents if a.exists()), None)
        if parent is not None and not parent.is_dir():
            chk.issue(path, f"{value}: {parent} is a file, so nothing can be created under it")
    return str(p)


#: the state folder when ``state.dir`` is not set, relative to the config file's folder (here, not in
#: ``checkpoint``, so ``hub check`` need not import the checkpoint store: ~8 ms of its start)
STATE_DIR = ".edgestream/state"


def _check_state(cfg: dict[str, Any], chk: Checker, path: str) -> None:
    if cfg.get("dir"):
        chk_output(chk, cfg["dir"], f"{path}.dir", folder=True)
    elif cfg.get("enabled"):
        chk_output(chk, STATE_DIR, f"{path}.dir", folder=True)


STATE_SPEC = Spec("state", "Durability (docs/hub.md, Durability): checkpoints of every pipeline's processor "
                  "state and every source's sequence positions, taken at one consistent cut; an MQTT QoS 1 "
                  "message is acknowledged to the broker only once what it produced is in a checkpoint or written "
                  "by the sinks. On by default.", [
    Field("enabled", "bool", "false: no checkpoints; state lives in memory, messages are acknowledged as they "
          "are taken, and a crash loses open windows and what was in flight.", default=True),
    Field("dir", "str", "Folder of the checkpoints, and of the small state files components keep (subscriptions, "
          "the device registry); none: checkpoints go to `.edgestream/state` in the config file's folder (and "
          "component files to `.edgestream/`).", default=None),
    Field("interval", "duration", "How often a checkpoint is taken (and always at a stop); sooner when a source's "
          "window of unacknowledged messages fills.", default="1s", min=100),
    Field("full_every", "int", "Every this many checkpoints one holds everything; the ones between hold only what "
          "changed (a SQL processor's windows and groups entry by entry).", default=10, min=1),
    Field("retain", "int", "Checkpoints kept (with the ones they build on); older ones are deleted.", default=3,
          min=1),
], check=_check_state)

METRICS_SPEC = Spec("metrics", "Prometheus metrics.", [
    Field("listen", "hostport", "`host:port` of the HTTP endpoint serving `/metrics` (none: no endpoint; port 0: "
          "any free port). Use 127.0.0.1 unless the gateway's network is trusted.", default=None),
    Field("read_timeout", "duration", "How long a scraper may take to send its whole request head, however "
          "slowly the bytes trickle in; a connection still sending is answered 408 and closed after it.",
          default="10s", min=1),
    Field("max_connections", "int", "Connections served at once; more are answered 503 and closed at once.",
          default=16, min=1),
])



API_TLS_SPEC = Spec("tls", "HTTPS for the REST API and the console.", [
    Field("cert_file", "str", "Server certificate (PEM, the chain after it)."),
    Field("key_file", "str", "Its private key (PEM)."),
])
API_TLS_SPEC.check = _check_files


def is_loopback(host: str) -> bool:
    """Is ``host`` (an IP address or a name, not resolved) only reachable from this machine?

    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("localhost"), is_loopback("0.0.0.0")
    (True, True, True, False)
    """
    import ipaddress

    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_api(cfg: dict[str, Any], chk: Checker, path: str) -> None:
    from edgestream_hub.spec import parse_hostport

    host, _ = parse_hostport(cfg["listen"])
    if not is_loopback(host) and not cfg["token"]:
        chk.issue(f"{path}.listen", f"api.listen {cfg['listen']!r} is reachable from other machines: set a token "
                                    "(Authorization: Bearer) or listen on 127.0.0.1")


API_SPEC = Spec("api", "The REST API and the web console (docs/console.md), served by the hub. Present: on.", [
    Field("listen", "hostport", "`host:port` of the API and the console (port 0: any free port). A listen that is "
          "not loopback needs a `token`.", default="127.0.0.1:8710"),
    Field("token", "str", "Bearer token every API request must carry (`Authorization: Bearer <token>`); the "
          "console asks for it. None: no token (loopback only).", default=None, secret=True),
    Field("tls", "object", "HTTPS with this certificate and key; none: plain HTTP.", default=None, spec=API_TLS_SPEC),
    Field("console", "bool", "Serve the web console at `/`.", default=True),
    Field("read_timeout", "duration", "How long a client may take to send each line of its request and its whole "
          "body; a stalled connection is closed after it (also the bound of a write to a stalled event stream).",
          default="10s", min=1),
    Field("max_connections", "int", "Connections served at once (event streams included); more are answered 503 "
          "and closed at once.", default=32, min=1),
    Field("max_body", "size", "Largest request body.", default="1MiB"),
    Field("results", "int", "Latest results kept per pipeline (`/api/pipelines/{name}/results`).", default=100,
          min=0, max=10000),
    Field("dead_letters", "int", "Latest dead letters kept, with their reasons.", default=100, min=0, max=10000),
    Field("recent_records", "int", "Latest records kept per source, for SQL test runs and the console's device "
          "plots; 0: none.", default=200, min=0, max=10000),
    Field("history", "int", "Points of health and of window results kept per device for the console's plots.",
          default=240, min=0, max=10000),
    Field("sql_max_records", "int", "Most input records of one SQL test run.", default=10000, min=1),
    Field("sql_max_rows", "int", "Most result rows of one SQL test run (the rest are counted, not returned).",
          default=1000, min=1),
    Field("sql_timeout", "duration", "Longest SQL test run; it stops there and answers with what it has.",
          default="5s", min=10),
    Field("event_queue", "int", "Events queued per event-stream client; a client that falls this far behind is "
          "dropped with a final event.", default=256, min=1),
    Field("heartbeat", "duration", "Idle time after which an event stream gets a heartbeat comment.",
          default="15s", min=10),
], check=_check_api, example="""
api:
  listen: "0.0.0.0:8710"           # reachable from the network: needs a token
  token: "${EDGESTREAM_API_TOKEN}"
""")


def wire_sources(sources: dict[str, "ComponentConfig"]) -> dict[str, "ComponentConfig"]:
    """The sources that decode wire messages (and so can feed the device registry), by name."""
    return {n: c for n, c in sources.items() if c.type == "serial" or (c.type == "mqtt" and c.config.get("decode") ==
            "wire") or (c.type == "http" and c.config.get("format") == "wire")}


def _check_devices(cfg: dict[str, Any], chk: Checker, path: str) -> None:
    from edgestream_shared.errors import WireError
    from edgestream_shared.topics import check_prefix

    try:
        check_prefix(cfg["prefix"])
        prefix_ok = True
    except WireError as e:
        chk.issue(f"{path}.prefix", str(e))
        prefix_ok = False
    sources: dict[str, ComponentConfig] = chk.sections.get("sources", {})
    wire = wire_sources(sources)
    for i, name in enumerate(cfg["sources"]):
        c = sources.get(name)
        if c is not None and name not in wire:
            chk.issue(f"{path}.sources[{i}]", f"source {name!r} does not decode wire messages (a serial source, an "
                                              "mqtt source with decode: wire or an http source with format: wire "
                                              "can feed the device registry)")
    tracked = [wire[n] for n in (cfg["sources"] or wire) if n in wire]
    from edgestream_hub.devices import CONTROL

    for c in sources.values():
        if cfg["connection"] is not None and c.label == CONTROL:
            chk.issue(f"{c.path.rsplit('.', 1)[0]}.label", f"{CONTROL!r} is the label of the hub's device link "
                                                            "(devices.connection): choose another")
    for c in tracked:
        if prefix_ok and c.type == "mqtt" and c.config.get("prefix") != cfg["prefix"]:
            chk.issue(f"{path}.prefix", f"{cfg['prefix']!r} is not the prefix of mqtt source {c.name!r} "
                                        f"({c.config.get('prefix')!r}): both must name the same topic layout")
    if cfg["connection"] is None and not any(c.type == "serial" for c in tracked):
        chk.issue(path, "no way to reach devices: set devices.connection (an MQTT connection) or track a serial "
                        "source")
    if cfg["homeassistant"] and cfg["connection"] is None:
        chk.issue(f"{path}.homeassistant", "Home Assistant discovery is published over MQTT: set devices.connection")
    if cfg["homeassistant"]:
        try:
            check_prefix(cfg["homeassistant_prefix"])
        except WireError as e:
            chk.issue(f"{path}.homeassistant_prefix", str(e))
    from edgestream_hub.desired import DesiredConfigError, check_config

    for dev, c in (cfg["desired"] or {}).items():
        try:
            check_config(dev, c, "")
        except DesiredConfigError as e:
            chk.issue(f"{path}.desired.{dev}", str(e).removeprefix(": "))
    if cfg["desired_dir"]:
        folder = Path(chk_output(chk, cfg["desired_dir"], f"{path}.desired_dir", folder=True))
        if folder.is_dir():
            from edgestream_hub.desired import DesiredConfigs

            store = DesiredConfigs(folder)
            store.scan()
            for _, why in sorted(store.errors.items()):
                chk.issue(f"{path}.desired_dir", why)


DEVICES_SPEC = Spec("devices", "The device registry: which devices are online, their health, and their config "
                    "reconciled with a desired one (docs/hub.md, Devices). Present: on.", [
    Field("connection", "str", "MQTT connection on which the hub follows every device's `status`, `metrics` and "
          "`config/ack` and sends `config` (retained) and `time`; none: no MQTT.", default=None, ref="connections"),
    Field("sources", "list[str]", "Sources whose devices are tracked (their results count, serial ones also carry "
          "config and time back); empty: every source that decodes wire messages.", default=[], ref="sources"),
    Field("prefix", "str", "Topic prefix of the wire layout (`<prefix>/<device>/<kind>`).", default="edgestream"),
    Field("client_id", "str", "Client id of the hub's device link (default `edgestream-hub-devices.mqtt`).",
          default=None),
    Field("desired_dir", "str", "Folder of desired configs, one `<device>.json` (an agent.json with `version`) "
          "each, watched while the hub runs; none: `desired/` beside the registry file.", default=None),
    Field("desired", "map[any]", "Desired configs inline, by device id (each an agent.json with `version`); "
          "where the folder also has one, the higher version wins.", default={}),
    Field("time", "bool", "Send the hub's clock to devices (for boards without RTC or NTP): when a device comes "
          "online and every `time_sync`.", default=True),
    Field("time_sync", "duration", "Period of the time messages to every online device; 0ms: only when a device "
          "comes online.", default="10m"),
    Field("max_devices", "int", "Devices tracked at most (and so per-device metric series); more are counted in "
          "`edgestream_devices_overflow_total`.", default=1000, min=1, max=100000),
    Field("offline_after", "duration", "A device with no status topic (serial, HTTP) is offline after this long "
          "without a message.", default="1m", min=100),
    Field("config_retry", "duration", "A config sent to an online device that did not answer is sent again after "
          "this long.", default="1m", min=100),
    Field("missing_after", "duration", "How long after a health message the hub must have received every result "
          "it says the device delivered (else they count as missing).", default="30s", min=100),
    Field("homeassistant", "bool", "Publish Home Assistant MQTT discovery entries for each device.", default=False),
    Field("homeassistant_prefix", "str", "Home Assistant's discovery prefix.", default="homeassistant"),
], check=_check_devices, example="""
broker: {host: 127.0.0.1, port: 1883}
devices:
  connection: default
  desired_dir: desired/          # desired/<device>.json
  time_sync: 10m
  max_devices: 200
""")

TOP_SPECS: dict[str, Spec] = {"hub": HUB_SPEC, "state": STATE_SPEC, "metrics": METRICS_SPEC}
OPTIONAL_SPECS: dict[str, Spec] = {"api": API_SPEC}  # sections that are off unless present


class ComponentConfig(Plain):
    """One parsed component: its kind, type name, label and config with defaults filled in."""

    _fields = ("kind", "type", "name", "label", "config", "common", "path")

    def __init__(self, kind: str, type: str, name: str, label: str, config: dict[str, Any], common: dict[str, Any],
                 path: str) -> None:
        self.kind, self.type, self.name, self.label = kind, type, name, label
        self.config, self.common, self.path = config, common, path

    def same_as(self, other: "ComponentConfig | None") -> bool:
        return other is not None and (self.type, self.label, self.config, self.common) == (
            other.type, other.label, other.config, other.common)


class PipelineConfig(Plain):
    _fields = ("name", "sources", "processors", "sinks", "queue", "batch", "tick_ms", "dead_letter")

    def __init__(self, name: str, sources: list[str], processors: list[ComponentConfig], sinks: list[str],
                 queue: int, batch: dict[str, Any], tick_ms: int, dead_letter: str | None) -> None:
        self.name, self.sources, self.processors, self.sinks = name, sources, processors, sinks
        self.queue, self.batch, self.tick_ms, self.dead_letter = queue, batch, tick_ms, dead_letter

    def same_as(self, other: "PipelineConfig | None") -> bool:
        if other is None:
            return False
        mine = (self.sources, self.sinks, self.queue, self.batch, self.tick_ms, self.dead_letter)
        theirs = (other.sources, other.sinks, other.queue, other.batch, other.tick_ms, other.dead_letter)
        return mine == theirs and len(self.processors) == len(other.processors) and all(
            a.same_as(b) for a, b in zip(self.processors, other.processors))


class HubConfig(Plain):
    """A validated hub config. ``text`` is what it was parsed from (for change detection)."""

    _fields = ("hub", "connections", "sources", "sinks", "pipelines", "state", "metrics", "devices", "api", "path",
               "base_dir", "text", "data")

    def __init__(self, hub: dict[str, Any], connections: dict[str, dict[str, Any]],
                 sources: dict[str, ComponentConfig], sinks: dict[str, ComponentConfig],
                 pipelines: dict[str, PipelineConfig], state: dict[str, Any], metrics: dict[str, Any],
                 devices: dict[str, Any] | None = None, api: dict[str, Any] | None = None, path: str | None = None,
                 base_dir: str = ".", text: str = "", data: dict[str, Any] | None = None) -> None:
        self.hub, self.connections, self.sources, self.sinks = hub, connections, sources, sinks
        self.pipelines, self.state, self.metrics = pipelines, state, metrics
        self.devices = devices  # the `devices` section, None without one
        self.api = api  # the `api` section, None without one
        self.path, self.base_dir, self.text = path, base_dir, text
        self.data: dict[str, Any] = {} if data is None else data


# ---------------------------------------------------------------- YAML + lines

_VAR = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::((?:[^{}]|\{[^{}]*\})*))?\}")
_OPEN = re.compile(r"\$\$\{|\$\{")


class InterpolationError(ValueError):
    """A ``${`` that does not start a ``${VAR}`` or ``${VAR:default}`` reference."""


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Replace ``${VAR}`` / ``${VAR:default}`` from ``env`` (``$${`` is a literal ``${``).

    A default may hold ``{field}`` placeholders (``${TOPIC:hub/{device}/avg}``) but no
    ``${...}`` of its own. Raises KeyError(VAR) for an unset variable without a
    default, and InterpolationError for a ``${`` that is not a reference (unclosed,
    a bad name, nested):

    >>> interpolate("${A:1}-${B}", {"B": "x"})
    '1-x'
    >>> try:
    ...     interpolate("host-${BROKER_HOST", {})
    ... except InterpolationError as e:
    ...     print(e)
    '${BROKER_HOST' has no closing '}' (write ${NAME} or ${NAME:default}; $${ is a literal ${)
    """
    out: list[str] = []
    pos = 0
    for _ in range(len(text) + 1):
        m = _OPEN.search(text, pos)
        if m is None:
            break
        out.append(text[pos:m.start()])
        if m.group(0) == "$${":
            out.append("${")
            pos = m.end()
            continue
        ref = _VAR.match(text, m.start())
        if ref is None or ref.group(0) == "$${":
            raise InterpolationError(_bad_reference(text, m.start()))
        name, default = ref.group(1), ref.group(2)
        if default is not None and "${" in default.replace("$${", ""):
            raise InterpolationError(f"{ref.group(0)!r}: a default cannot hold another ${{...}} reference")
        if name in env:
            out.append(env[name])
        elif default is None:
            raise KeyError(name)
        else:
            out.append(default.replace("$${", "${"))
        pos = ref.end()
    out.append(text[pos:])
    return "".join(out)


def _bad_reference(text: str, at: int) -> str:
    """Why the ``${`` at ``at`` is not a reference, quoting it."""
    close = text.find("}", at)
    shown = text[at:close + 1] if close >= 0 else text[at:]
    if len(shown) > 40:
        shown = shown[:37] + "..."
    hint = "(write ${NAME} or ${NAME:default}; $${ is a literal ${)"
    if close < 0:
        return f"{shown!r} has no closing '}}' {hint}"
    m = re.match(r"[A-Za-z0-9_]*", text[at + 2:])
    name = m.group(0) if m else ""
    if not name:
        return f"{shown!r} names no variable {hint}"
    if name[0].isdigit():
        return f"{shown!r}: {name!r} is not a variable name (letters, digits and _, not starting with a digit) {hint}"
    return f"{shown!r}: expected '}}' or ':default' after {name} {hint}"


def load_yaml(text: str, source: str, env: Mapping[str, str]) -> tuple[Any, dict[str, int], list[ConfigIssue]]:
    """YAML text -> (data, {path: line}, issues). Interpolates ``${VAR:default}`` in scalars."""
    import yaml

    lines: dict[str, int] = {}
    issues: list[ConfigIssue] = []
    loader = bounded_loader()(text, source)
    try:
        try:
            node = loader.get_single_node()
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            msg = str(getattr(e, "problem", None) or e)
            raise ConfigError(ConfigIssue("", f"not valid YAML: {msg}", mark.line + 1 if mark else None),
                              source) from e
        if node is None:
            return {}, lines, issues

        def build(n: Any, path: str) -> Any:
            lines.setdefault(path, n.start_mark.line + 1)
            if isinstance(n, yaml.MappingNode):
                out: dict[Any, Any] = {}
                for kn, vn in n.value:
                    k = build(kn, path + ".?")
                    if isinstance(k, (list, dict)):
                        issues.append(ConfigIssue(path, "a mapping key must be a scalar", kn.start_mark.line + 1))
                        continue
                    sub = f"{path}.{k}" if path else str(k)
                    if k in out:
                        issues.append(ConfigIssue(sub, f"duplicate key {k!r} (first on line {lines.get(sub)})",
                                                  kn.start_mark.line + 1))
                    lines[sub] = kn.start_mark.line + 1
                    out[k] = build(vn, sub)
                lines.pop(path + ".?", None)
                return out
            if isinstance(n, yaml.SequenceNode):
                return [build(x, f"{path}[{i}]") for i, x in enumerate(n.value)]
            if "${" in n.value:
                try:
                    v = interpolate(n.value, env)
                except KeyError as e:
                    issues.append(ConfigIssue(path, f"environment variable {e.args[0]} is not set and "
                                                    f"${{{e.args[0]}}} has no default (write ${{{e.args[0]}:value}})",
                                              n.start_mark.line + 1))
                    return None
                except InterpolationError as e:
                    issues.append(ConfigIssue(path, str(e), n.start_mark.line + 1))
                    return None
                if n.style is None or _VAR.fullmatch(n.value):
                    # a plain scalar, or a value that is one ${...}: typed like YAML would type it
                    tag = loader.resolve(yaml.ScalarNode, v, (True, False))
                    return loader.construct_object(yaml.ScalarNode(tag, v, n.start_mark, n.end_mark))
                return v
            return loader.construct_object(n)

        try:
            data = build(node, "")
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            raise ConfigError(ConfigIssue("", f"not valid YAML: {e}", mark.line + 1 if mark else None), source) from e
        return data, lines, issues
    finally:
        loader.dispose()


def _scalar_text(text: str, origin: str) -> Any:
    """An env or --set value, typed like a YAML scalar or flow collection would be (held to the file's limits:
    ConfigError naming ``origin`` past them)."""
    import yaml

    if not text.strip():
        return ""
    loader = bounded_loader()(text, origin)
    try:
        return loader.get_single_data()
    except yaml.YAMLError:
        return text
    finally:
        loader.dispose()


_LOADER: Any = None


def bounded_loader() -> Any:
    """PyYAML's ``SafeLoader`` held to ``MAX_DEPTH`` and ``MAX_NODES`` while it composes (made on first use:
    ``yaml`` is imported only then). ``loader(text, source)``; the limits raise ConfigError with the line.

    Each node's size and depth are computed with aliases expanded, as the constructor would expand them,
    so a few hundred bytes of aliases to aliases are refused before anything is built.
    """
    global _LOADER
    if _LOADER is not None:
        return _LOADER
    import yaml

    class BoundedLoader(yaml.SafeLoader):
        def __init__(self, text: str, source: str) -> None:
            super().__init__(text)
            self.source = source
            self._depth = 0  # levels being composed now
            self._shape: dict[int, tuple[int, int]] = {}  # id(node) -> (nodes, depth), aliases expanded

        def compose_node(self, parent: Any, index: Any) -> Any:
            mark = self.peek_event().start_mark
            if self.check_event(yaml.AliasEvent):
                return super().compose_node(parent, index)  # the anchored node: its shape is known
            self._depth += 1
            if self._depth > MAX_DEPTH:
                self._refuse(f"nested deeper than {MAX_DEPTH} levels (a config's limit)", mark)
            try:
                node = super().compose_node(parent, index)
            finally:
                self._depth -= 1
            if isinstance(node, yaml.SequenceNode):
                children = [self._shape.get(id(c), (1, 1)) for c in node.value]
            elif isinstance(node, yaml.MappingNode):
                children = [self._shape.get(id(c), (1, 1)) for kv in node.value for c in kv]
            else:
                children = []
            size = 1 + sum(n for n, _ in children)
            depth = 1 + max((d for _, d in children), default=0)
            if depth > MAX_DEPTH:
                self._refuse(f"nested deeper than {MAX_DEPTH} levels through aliases (a config's limit)", mark)
            if size > MAX_NODES:
                self._refuse(f"expands to more than {MAX_NODES} YAML nodes through aliases (a config's limit)",
                             mark)
            self._shape[id(node)] = (size, depth)
            return node

        def _refuse(self, message: str, mark: Any) -> None:
            raise ConfigError(ConfigIssue("", message, mark.line + 1), self.source)

    _LOADER = BoundedLoader
    return _LOADER


_SEG = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def split_path(path: str) -> list[str | int]:
    """``pipelines.p1.processors[0].sql`` -> ``['pipelines', 'p1', 'processors', 0, 'sql']``."""
    out: list[str | int] = []
    pos = 0
    for m in _SEG.finditer(path):
        if m.start() != pos and not (m.start() == pos + 1 and path[pos] == "."):
            raise ValueError(f"bad path {path!r}")
        out.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
    if pos != len(path) or not out:
        raise ValueError(f"bad path {path!r}")
    return out


def set_path(data: dict[str, Any], path: str, value: Any) -> str:
    """Set a value at a dotted path, creating mappings as needed; returns the normalised path."""
    segs = split_path(path)
    cur: Any = data
    for i, s in enumerate(segs[:-1]):
        nxt = segs[i + 1]
        if isinstance(s, int):
            if not isinstance(cur, list) or s >= len(cur):
                raise ValueError(f"{path}: no list item [{s}]")
            if not isinstance(cur[s], (dict, list)):
                cur[s] = {}
            cur = cur[s]
        else:
            if not isinstance(cur, dict):
                raise ValueError(f"{path}: {s!r} is not inside a mapping")
            if not isinstance(cur.get(s), (dict, list)):
                cur[s] = [] if isinstance(nxt, int) else {}
            cur = cur[s]
    last = segs[-1]
    if isinstance(last, int):
        if not isinstance(cur, list) or last > len(cur):
            raise ValueError(f"{path}: no list item [{last}]")
        if last == len(cur):
            cur.append(value)
        else:
            cur[last] = value
    else:
        if not isinstance(cur, dict):
            raise ValueError(f"{path}: {last!r} is not inside a mapping")
        cur[last] = value
    return "".join(f"[{s}]" if isinstance(s, int) else (f".{s}" if i else s) for i, s in enumerate(segs))


def env_overrides(env: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """``EDGESTREAM_SINKS__OUT__FILE__PATH=x`` -> [(``sinks.out.file.path``, ``x``, origin)].

    Only variables whose first level is a config section count (``EDGESTREAM_MICROPYTHON``
    and friends are left alone). Levels are lowercased and split on ``__``.
    """
    out = []
    for k in sorted(env):
        if not k.startswith("EDGESTREAM_"):
            continue
        parts = [p.lower() for p in k[len("EDGESTREAM_"):].split("__")]
        if parts[0] not in SECTIONS or len(parts) < 2 or not all(parts):
            continue
        out.append((".".join(parts), env[k], f"env {k}"))
    return out


# ---------------------------------------------------------------- parsing

#: Where ``hub run``, ``hub check`` and ``edgestream devices`` look for the config when ``-c`` is not given.
DEFAULT_CONFIGS = ("/etc/edgestream/hub.yaml", "./hub.yaml")


class ConfigNotFoundError(ConfigError):
    """No ``-c`` and none of the default config files exists: the message names each place looked at."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.args = (message,)  # about no file at all: no "<root>:" in front


def find_config(given: str | None, defaults: Sequence[str] = DEFAULT_CONFIGS) -> str:
    """``given`` (``-c PATH``) as it is, else the first of ``defaults`` that exists; ConfigError naming each
    place looked at when none does."""
    if given is not None:
        return given
    for candidate in defaults:
        if Path(candidate).is_file():
            return candidate
    raise ConfigNotFoundError(f"no config file given and none found at {' or '.join(defaults)}: give one with "
                              "-c PATH")


def load_config(path: str | os.PathLike[str] | None = None, *, text: str | None = None,
                env: Mapping[str, str] | None = None, sets: Sequence[str] = (),
                registry: Registry | None = None, base_dir: str | None = None) -> HubConfig:
    """Read, layer and validate a config; raises ConfigError with every issue found."""
    env = os.environ if env is None else env
    registry = registry if registry is not None else Registry.default()
    source = str(path) if path is not None else "<config>"
    if text is None:
        if path is None:
            raise ConfigError("no config file given")
        text = read_config_text(path, source)
    if base_dir is None:
        base_dir = str(Path(path).resolve().parent) if path is not None else os.getcwd()
    data, lines, issues = load_yaml(text, source, env)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(ConfigIssue("", "the config must be a YAML mapping of sections", 1), source)
    origins: dict[str, str] = {}
    overrides = env_overrides(env) + [(*_split_set(s), "--set") for s in sets]
    for p, v, origin in overrides:
        try:
            norm = set_path(data, p, _scalar_text(v, origin))
            origins[norm] = origin
        except ValueError as e:
            issues.append(ConfigIssue(p, str(e), None, origin))
        except ConfigError as e:  # past the YAML limits
            issues.extend(ConfigIssue(p, i.message, None, origin) for i in e.issues)
    chk = Checker(lines, origins, base_dir=base_dir, registry=registry)
    chk.add_reported(issues)
    cfg = parse_config(data, chk, registry)
    chk.raise_if_any(source)
    assert cfg is not None
    cfg.path = str(path) if path is not None else None
    cfg.base_dir = base_dir
    cfg.text = text
    return cfg


def read_config_text(path: str | os.PathLike[str], source: str) -> str:
    """The config file as text: refused (ConfigError, with the line and column) if it cannot be read, is over
    ``MAX_CONFIG_BYTES`` or is not UTF-8. A leading byte-order mark is dropped."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError(ConfigIssue("", f"cannot read the config file: {e.strerror or e}"), source) from e
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(ConfigIssue("", f"the file is larger than {MAX_CONFIG_BYTES} bytes (a config's limit)"),
                          source)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        start = data.rfind(b"\n", 0, e.start) + 1
        column = len(data[start:e.start].decode("utf-8")) + 1
        raise ConfigError(ConfigIssue("", f"byte 0x{data[e.start]:02x} at column {column} is not UTF-8 (save the "
                                          "file as UTF-8)", data.count(b"\n", 0, e.start) + 1), source) from None
    return text[1:] if text[:1] == "\ufeff" else text


def _split_set(s: str) -> tuple[str, str]:
    if "=" not in s:
        raise ConfigError(ConfigIssue(s, "--set expects path=value (e.g. --set broker.port=1884)", None, "--set"))
    k, v = s.split("=", 1)
    return k.strip(), v


def parse_config(data: dict[str, Any], chk: Checker, registry: Registry) -> HubConfig | None:
    """Validate the layered data; issues go to ``chk``."""
    for k in data:
        if k not in SECTIONS:
            chk.issue(str(k), f"unknown section {k!r}; sections: {', '.join(SECTIONS)}")
    top = {name: chk.parse(spec, data.get(name), name) or {} for name, spec in TOP_SPECS.items()}
    connections: dict[str, dict[str, Any]] = {}
    if data.get("broker") is not None:
        connections["default"] = chk.parse(MQTT_CONNECTION_SPEC, data["broker"], "broker") or {}
    conns = data.get("connections") or {}
    if not isinstance(conns, dict):
        chk.issue("connections", "expected a mapping of name -> MQTT connection")
        conns = {}
    for name, v in conns.items():
        if name == "default" and "default" in connections:
            chk.issue("connections.default", "'default' is already defined by the broker section")
            continue
        connections[str(name)] = chk.parse(MQTT_CONNECTION_SPEC, v, f"connections.{name}") or {}
    chk.sections["connections"] = connections
    sources = _components(data, "sources", "source", SOURCE_COMMON_SPEC, chk, registry)
    sinks = _components(data, "sinks", "sink", SINK_COMMON_SPEC, chk, registry)
    pipelines: dict[str, PipelineConfig] = {}
    pls = data.get("pipelines")
    if pls is None:
        chk.issue("pipelines", "no pipelines: add at least one under `pipelines:` (from, processors, to)")
        pls = {}
    elif not isinstance(pls, dict):
        chk.issue("pipelines", f"expected a mapping of pipeline name -> pipeline, got {type(pls).__name__}")
        pls = {}
    for name, v in pls.items():
        path = f"pipelines.{name}"
        p = chk.parse(PIPELINE_SPEC, v, path)
        if p is None:
            continue
        procs: list[ComponentConfig] = []
        for i, pv in enumerate(p.get("processors") or []):
            c = _component(pv, f"{path}.processors[{i}]", "processor", PROCESSOR_COMMON_SPEC, chk, registry,
                           name=f"{name}.{i}")
            if c is not None:
                if c.common.get("label") is None:
                    n_same = sum(1 for x in procs if x.type == c.type)
                    c.label = f"{name}.{c.type}" + (f".{n_same + 1}" if n_same else "")
                procs.append(c)
        pipelines[str(name)] = PipelineConfig(
            str(name), p.get("from") or [], procs, p.get("to") or [], p["queue"], p["batch"] or {},
            p["tick"], p.get("dead_letter"))
    # references, all at once
    have: dict[str, Mapping[str, Any]] = {"sources": sources, "sinks": sinks, "connections": connections}
    for path, section, name in chk.refs:
        if section == "connections" and name == "default" and "default" not in connections:
            kind = {"sources": "source", "sinks": "sink"}.get(path.split(".")[0], "component")
            chk.issue(path, f"an mqtt {kind} needs a `broker:` section or a named connection (`connection: <name>`, "
                            "defined under `connections:`)")
        elif name not in have[section]:
            known = ", ".join(sorted(have[section]))
            chk.issue(path, f"{name!r} is not defined in {section} "
                            + (f"(defined: {known})" if known else f"(no {section} are defined)"))
    labels: dict[str, str] = {}
    for c in [*sources.values(), *sinks.values(), *(x for p in pipelines.values() for x in p.processors)]:
        if c.label in labels:
            chk.issue(c.path, f"label {c.label!r} is already used by {labels[c.label]}")
        labels.setdefault(c.label, c.path)
    used = {s for p in pipelines.values() for s in p.sources}
    for name, c in sources.items():
        if name not in used:
            chk.issue(c.path, f"source {name!r} feeds no pipeline (add it to a pipeline's `from`)")
    devices = None
    if data.get("devices") is not None:
        chk.sections["sources"] = sources
        n_refs = len(chk.refs)
        devices = chk.parse(DEVICES_SPEC, data["devices"], "devices")
        for path, section, name in chk.refs[n_refs:]:
            if name not in have[section]:
                known = ", ".join(sorted(have[section])) or "none defined"
                chk.issue(path, f"{name!r} is not defined in {section} (defined: {known})")
    optional = {name: chk.parse(spec, data[name], name) or {} for name, spec in OPTIONAL_SPECS.items()
                if data.get(name) is not None or name in data}
    cfg = HubConfig(top["hub"], connections, sources, sinks, pipelines, top["state"], top["metrics"],
                    devices=devices, data=data, api=optional.get("api"))
    _check_workers(cfg, chk)
    return cfg


def _check_workers(cfg: HubConfig, chk: Checker) -> None:
    """An explicit ``hub.workers`` above 1 needs a config every worker can run its share of; a gateway that takes
    some of a cluster's partitions needs processors whose state is per device."""
    from edgestream_hub import workers

    w, take, parts = cfg.hub.get("workers"), cfg.hub.get("take"), cfg.hub.get("partitions")
    explicit = type(w) is int and w >= 2
    cluster = take is not None and parts is not None and len(take) < parts
    if not (explicit or cluster) or chk.issues or workers.worker_env() is not None or workers.supervising():
        return
    # what a gateway's share cannot run, fewer workers cannot fix: say hub.take, not "workers: 1"
    gateway = set(workers.split_problems(cfg, chk.registry, local_parts=False)) if cluster else set()
    for where, why in workers.split_problems(cfg, chk.registry, local_parts=explicit):
        if explicit and (where, why) not in gateway:
            chk.issue("hub.workers", f"{w} workers cannot run this config: {where}: {why} (workers: 1, or auto, "
                                     "runs it in one process)")
        else:
            chk.issue("hub.take", f"a gateway taking {len(take or [])} of {parts} partitions sees only those devices: "
                                  f"{where}: {why}")


def _components(data: dict[str, Any], section: str, kind: str, common: Spec, chk: Checker,
                registry: Registry) -> dict[str, ComponentConfig]:
    raw = data.get(section) or {}
    if not isinstance(raw, dict):
        chk.issue(section, f"expected a mapping of name -> {kind}, got {type(raw).__name__}")
        return {}
    out = {}
    for name, v in raw.items():
        if not isinstance(name, str) or not re.match(r"^[A-Za-z0-9_.-]{1,64}$", name):
            chk.issue(f"{section}.{name}", f"{kind} name {name!r} must be 1-64 characters of [A-Za-z0-9_.-]")
            continue
        c = _component(v, f"{section}.{name}", kind, common, chk, registry, name=name)
        if c is not None:
            out[name] = c
    return out


def _component(value: Any, path: str, kind: str, common: Spec, chk: Checker, registry: Registry,
               name: str) -> ComponentConfig | None:
    known = registry.names(kind)
    if not isinstance(value, dict):
        chk.issue(path, f"expected a {kind} as a one-key mapping {{type: {{...}}}} (types: {', '.join(known)})")
        return None
    type_keys = [k for k in value if k not in common.by_name]
    if len(type_keys) != 1:
        what = "no type key" if not type_keys else f"several type keys ({', '.join(map(str, type_keys))})"
        chk.issue(path, f"expected exactly one {kind} type key, found {what}; {kind} types: {', '.join(known)}; "
                        f"other keys allowed: {', '.join(common.by_name)}")
        return None
    tname = str(type_keys[0])
    t = registry.get(kind, tname)
    if t is None:
        import difflib

        hint = difflib.get_close_matches(tname, known, n=1)
        chk.issue(f"{path}.{tname}", f"unknown {kind} type {tname!r}"
                  + (f" (did you mean {hint[0]!r}?)" if hint else "") + f"; {kind} types: {', '.join(known)}")
        return None
    com = chk.parse(common, {k: v for k, v in value.items() if k != tname}, path) or {}
    cfg = chk.parse(t.spec, value[tname], f"{path}.{tname}")
    if cfg is None:
        return None
    return ComponentConfig(kind, tname, name, com.get("label") or name, cfg, com, f"{path}.{tname}")
