"""One hub on several processes (``hub.workers``), and one hub's share of a cluster (``hub.partitions``, ``hub.take``).

A device belongs to partition ``crc32(device) % partitions``. A hub takes the partitions ``hub.take`` names
(default: all), and each of its worker processes a share of those (worker ``k`` of ``n``: ``take[k::n]``).
Every worker subscribes to the same MQTT topic filters and keeps only the messages of its devices (the
device level of ``<prefix>/<device>/<kind>``; the whole topic for ``decode: json`` and ``raw``), dropping the
rest before decoding them: each device's records reach one worker, in order, so its windows and sequence
tracking stay whole. A source with ``shared_group`` is split by the broker instead (no device affinity).

A pipeline runs in every worker only if nothing in it needs records from devices of other partitions:
stateless processors, and SQL whose state is per device (``GROUP BY device``) or per topic. A component that
cannot run in several processes at once (a serial port, a file written by one writer, the REST API) keeps
the hub in one process: ``workers: auto`` (the default) then runs one, an explicit count is a config error
that names it (``split_problems``).

``hub run`` with more than one worker supervises them (``Supervisor``): one process per share, each with
its own state folder (``<state>/worker-<k>``), client ids and checkpoints; the supervisor serves the merged
``/metrics``, forwards SIGHUP (reload) and SIGTERM (stop) to all, restarts a worker that dies and stops
them all when it stops (a SIGKILL of the supervisor takes them down too).
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

if TYPE_CHECKING:
    import subprocess

#: set in a worker process: ``"<index>/<workers>/<partitions>/<taken partitions, comma-separated>"``: the split
#: its supervisor decided at start (a worker started again later keeps it, whatever the file says by then)
ENV = "EDGESTREAM_WORKER"
#: set in a worker process: its folder (``<state>/worker-<k>``)
DIR_ENV = "EDGESTREAM_WORKER_DIR"
#: the config text a worker last ran, in its folder: a worker started again runs it if the file is refused
RUNNING_CONFIG_FILE = "running-config.yaml"
#: set in the supervisor once it re-executed itself to supervise this many workers (the split is decided)
SUPERVISOR_ENV = "EDGESTREAM_SUPERVISE"
#: the file a worker writes in its folder once it runs: its pid and where its metrics are served
READY_FILE = "worker.json"
#: the file in the state folder that says how the hub's state is split
LAYOUT_FILE = "workers.json"
#: processors that keep no state across records
_STATELESS = {"passthrough", "filter", "map"}
#: sinks several processes may write at once
_SHARED_SINKS = {"mqtt", "sqlite", "http", "log"}

class _Log:
    """The module's logger, made on first use: ``hub check`` (which reads this module) imports no logging."""

    def __getattr__(self, name: str) -> Any:
        import logging

        return getattr(logging.getLogger("edgestream.hub.workers"), name)


log: Any = _Log()


def partition_of(key: str, partitions: int) -> int:
    """The partition of a device id (or topic): stable across processes, machines and Python versions.

    >>> partition_of("dev01", 4), partition_of("dev04", 4)
    (2, 1)
    """
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % partitions


class Share:
    """The partitions one hub process takes: ``owns(device)``, ``owns_topic(topic, prefix)``."""

    __slots__ = ("index", "workers", "partitions", "mine", "shared", "_topics")

    def __init__(self, partitions: int = 1, take: Sequence[int] | None = None, index: int = 0,
                 workers: int = 1) -> None:
        self.index, self.workers, self.partitions = index, workers, partitions
        taken = list(take) if take is not None else list(range(partitions))
        self.mine = frozenset(taken[index::workers])
        self.shared: frozenset[str] = frozenset()  # sources the broker splits (``shared_sources``)
        self._topics: dict[tuple[str | None, str], bool] = {}

    @property
    def whole(self) -> bool:
        """Does this process take every partition (a one-process hub that is not part of a cluster)?"""
        return len(self.mine) == self.partitions

    def owns(self, key: str) -> bool:
        return self.whole or partition_of(key, self.partitions) in self.mine

    def owns_topic(self, topic: str, prefix: str | None) -> bool:
        """Is a message on ``topic`` this process's: by its device level under the wire layout ``prefix``,
        else (``prefix`` None, or a topic outside the layout) by the whole topic."""
        if self.whole:
            return True
        known = self._topics.get((prefix, topic))
        if known is not None:
            return known
        key = topic
        if prefix is not None and topic.startswith(prefix + "/"):
            dev = topic[len(prefix) + 1:].split("/", 1)[0]
            key = dev or topic
        mine = self.owns(key)
        if len(self._topics) >= 4096:
            self._topics.clear()
        self._topics[(prefix, topic)] = mine  # one source keys by device, another by topic: both asked
        return mine

    def client_id(self, base: str) -> str:
        """``base`` for a whole hub; else ``base-p<partitions taken>``: unique per share, so two workers (or two
        gateways of a cluster) never take each other's MQTT session, and stable across restarts."""
        if self.whole:
            return base
        return f"{base}-p{'.'.join(str(p) for p in sorted(self.mine))}"

    def __repr__(self) -> str:
        return f"Share(worker {self.index + 1}/{self.workers}, partitions {sorted(self.mine)} of {self.partitions})"


def worker_env() -> tuple[int, int] | None:
    """``(index, workers)`` in a worker process, else None."""
    w = _worker_split()
    return (w[0], w[1]) if w is not None else None


def _worker_split() -> tuple[int, int, int, list[int]] | None:
    raw = os.environ.get(ENV)
    if not raw:
        return None
    try:
        index, n, partitions, take = raw.split("/")
        out = (int(index), int(n), int(partitions), [int(x) for x in take.split(",")])
    except ValueError:
        return None
    return out if 0 <= out[0] < out[1] else None


def worker_value(index: int, workers: int, hub: dict[str, Any]) -> str:
    """The ``ENV`` value for worker ``index`` of ``workers`` on the ``hub`` section's partitions."""
    partitions, take = layout(hub, workers)
    return f"{index}/{workers}/{partitions}/{','.join(map(str, take))}"


def running_config() -> Path | None:
    """In a worker process: where the config text it last ran is kept (``RUNNING_CONFIG_FILE``), else None."""
    folder = os.environ.get(DIR_ENV) if worker_env() is not None else None
    return Path(folder) / RUNNING_CONFIG_FILE if folder else None


def keep_running_config(text: str) -> None:
    """In a worker process: keep ``text`` as the config it runs (written to a temp file, renamed into place)."""
    path = running_config()
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        log.warning("cannot keep the running config in %s: %s (a restart of this worker reads the file)", path,
                    e.strerror or e)


def supervising() -> int | None:
    """The number of workers this process supervises (it re-executed itself with the split decided), else None."""
    raw = os.environ.get(SUPERVISOR_ENV, "")
    return int(raw) if raw.isdigit() and int(raw) > 1 else None


def share_of(hub: dict[str, Any]) -> Share:
    """This process's share: in a worker, the one its supervisor gave it; else from the ``hub`` section."""
    w = _worker_split()
    if w is not None:
        return Share(w[2], w[3], w[0], w[1])
    partitions, take = layout(hub, workers_of(hub))
    return Share(partitions, take, 0, 1)


def workers_of(hub: dict[str, Any]) -> int:
    """The number of worker processes the ``hub`` section asks for (``auto``: the cores, at most the partitions
    taken); a worker process answers with the count its supervisor started."""
    w = worker_env()
    if w is not None:
        return w[1]
    want = hub.get("workers", "auto")
    take = hub.get("take")
    room = len(take) if take else (hub.get("partitions") or 1 << 30)
    if want == "auto":
        return max(1, min(os.cpu_count() or 1, room))
    return int(want)


def layout(hub: dict[str, Any], workers: int) -> tuple[int, list[int]]:
    """``(partitions, take)``: ``partitions`` defaults to the number of workers, ``take`` to all of them."""
    partitions = hub.get("partitions") or workers
    take = list(hub.get("take") or range(partitions))
    return partitions, take


# -- which configs split --
def split_problems(cfg: Any, registry: Any = None, *, local_parts: bool = True) -> list[tuple[str, str]]:
    """Why ``cfg`` cannot run in several processes: ``(config path, reason)`` for each part that cannot (none:
    it can). Compiles the SQL processors (with ``registry``'s functions) to see whether their state is per
    device. ``local_parts=False`` leaves out what only matters within one machine (non-MQTT sources, sinks,
    the API): what a gateway taking some partitions of a cluster must satisfy."""
    out: list[tuple[str, str]] = []
    keyed: dict[str, str | None] = {}  # source -> the field its records are partitioned by (None: by topic)
    for name, cc in cfg.sources.items():
        wire = cc.config.get("decode", "wire") == "wire"
        if cc.type != "mqtt":
            if local_parts:
                out.append((cc.path, f"a {cc.type} source is read by one process"))
            keyed[name] = "device"  # all of its devices in the one process that reads it
        elif cc.config.get("shared_group"):
            keyed[name] = ""  # split by the broker, message by message: no key holds
            if wire:
                out.append((f"{cc.path}.shared_group", "a shared group splits a device's messages, and a wire source "
                                                        "tracks each device's sequence numbers (gaps, duplicates)"))
        else:
            keyed[name] = "device" if wire else None
    if local_parts:
        for cc in cfg.sinks.values():
            if cc.type == "file" and "{worker}" in cc.config["path"]:
                continue  # a file per worker
            if cc.type not in _SHARED_SINKS:
                hint = " (put {worker} in its path for a file per worker)" if cc.type == "file" else ""
                out.append((cc.path, f"a {cc.type} sink is written by one process{hint}"))
        if cfg.api is not None:
            out.append(("api", "the REST API and the console are served by one process"))
    for p in cfg.pipelines.values():
        fields = {keyed.get(s, "") for s in p.sources}
        device_kept = True  # every processor so far passes each record's `device` on unchanged
        for cc in p.processors:
            if cc.type in ("passthrough", "filter"):
                continue
            if cc.type == "map":
                device_kept = device_kept and not _map_touches(cc.config, "device")
                continue
            if cc.type != "sql":
                out.append((cc.path, f"a {cc.type} processor may keep state across devices"))
                device_kept = False
                continue
            why, keeps = _sql_split(cc, cfg, registry, fields, device_kept)
            if why:
                out.append((f"{cc.path}.query", why))
            device_kept = device_kept and keeps
    return out


def _map_touches(cfg: dict[str, Any], name: str) -> bool:
    """Does a ``map`` processor change or remove the field ``name``?"""
    rename = cfg.get("rename") or {}
    keep = cfg.get("keep")
    return (name in rename or name in rename.values() or name in (cfg.get("set") or {})
            or name in (cfg.get("scale") or {}) or name in (cfg.get("drop") or [])
            or (keep is not None and name not in keep))


def shared_sources(cfg: Any, registry: Any = None) -> set[str]:
    """MQTT sources the broker may split message by message (a ``$share`` group of every worker): on an MQTT 5
    connection, decoding ``json`` or ``raw`` (a wire source tracks each device's sequence numbers, which needs
    all of a device's messages), feeding only pipelines that keep no state and sinks where order does not
    matter (no SQLite upsert ``key``, no retained MQTT message: a later record could land before an earlier
    one). Measured the cheapest split (``bench/bench_intake.py``): each message crosses the socket once."""
    out = set()
    for name, cc in cfg.sources.items():
        conn = cfg.connections.get(cc.config.get("connection") or "default") or {}
        if cc.type != "mqtt" or cc.config.get("shared_group") or cc.config.get("decode") == "wire" \
                or conn.get("protocol") != "5":
            continue
        pipelines = [p for p in cfg.pipelines.values() if name in p.sources]
        sinks = [cfg.sinks[s] for p in pipelines for s in p.sinks if s in cfg.sinks]
        if any((k.type == "sqlite" and k.config.get("key")) or (k.type == "mqtt" and k.config.get("retain"))
               for k in sinks):
            continue
        if all(cc2.type in _STATELESS or (cc2.type == "sql" and _sql_split(cc2, cfg, registry, {""}, True)[0] is None)
               for p in pipelines for cc2 in p.processors):
            out.add(name)
    return out


def _sql_split(cc: Any, cfg: Any, registry: Any, fields: set[str | None],
               device_kept: bool) -> tuple[str | None, bool]:
    """Why this SQL processor cannot run per partition (or None), and whether its output rows carry their
    input's ``device`` unchanged."""
    from edgestream_hub.components import ComponentContext
    from edgestream_hub.errors import EdgeStreamError
    from edgestream_hub.processors import sql_processor
    from edgestream_hub.sql import ir

    ctx = ComponentContext("processor", cc.label, cc.label, base_dir=cfg.base_dir, registry=registry)
    try:
        proc = sql_processor(cc.config, ctx)
    except EdgeStreamError as e:
        return f"cannot tell whether it keeps state per device: {e}", False
    plan = getattr(proc, "proc", proc).plan
    streams = {s.alias for s in plan.query.streams}

    def stream_field(e: Any, name: str) -> bool:
        return isinstance(e, ir.Field) and e.source in streams and e.path == (name,)

    outs = [(n, e) for n, e in plan.select if n != "*"]
    named = [e for n, e in outs if n == "device"]
    keeps = (stream_field(named[0], "device") if named else plan.star) and plan.mode == "rows"
    if plan.mode == "rows" and not plan.analytics and plan.limit is None:
        return None, keeps  # stateless
    if plan.mode == "join":
        return "a join matches records of every device", False
    if plan.analytics or plan.mode == "rows":
        return "it keeps state across records (an analytic function or LIMIT) that is not per device", False
    if plan.mode == "window_rows":
        return "a window without GROUP BY holds the records of every device", False
    if plan.limit is not None or plan.order:
        return "ORDER BY and LIMIT sort and cut a window's rows across devices", False
    grouped = {k.path[0] for k in plan.keys if isinstance(k, ir.Field) and k.source in streams and len(k.path) == 1}
    if "" in fields:
        return "a source with shared_group splits messages with no device affinity: only stateless SQL runs", False
    if None in fields:
        return "a source with decode json or raw is split by topic: only stateless SQL runs", False
    if "device" not in grouped:
        return "its groups span devices: add `device` to GROUP BY to run it per worker", False
    if not device_kept:
        return ("a processor before it changes or removes `device`, so GROUP BY device no longer follows the "
                "worker's devices"), False
    return None, False


# -- the state folder --
def base_dir_of(cfg: Any) -> Path:
    """The folder a hub keeps its files in: ``state.dir``, else ``.edgestream`` beside the config."""
    sd = cfg.state.get("dir")
    p = Path(sd).expanduser() if sd else Path(".edgestream")
    return p if p.is_absolute() else Path(cfg.base_dir) / p


def worker_dir(base: Path, index: int) -> Path:
    return base / f"worker-{index}"


def adjust(cfg: Any, index: int) -> None:
    """Make a loaded config worker ``index``'s: its own state folder, metrics on a free loopback port (the
    supervisor merges them), the desired configs of the whole hub."""
    base = base_dir_of(cfg)
    if cfg.devices is not None and not cfg.devices.get("desired_dir"):
        from edgestream_hub.desired import desired_dir

        cfg.devices["desired_dir"] = str(desired_dir(None, cfg.state.get("dir"), cfg.base_dir))
    cfg.state["dir"] = str(worker_dir(base, index))
    if cfg.metrics.get("listen"):
        cfg.metrics["listen"] = "127.0.0.1:0"


def recorded_split(cfg: Any) -> dict[str, Any] | str | None:
    """The split the state folder's checkpoints were written with (``{"workers", "partitions", "take"}``),
    None when there are none, or why the layout file cannot be used."""
    from edgestream_hub.checkpoint import CheckpointStore, state_dir

    base = base_dir_of(cfg)
    path = base / LAYOUT_FILE
    try:
        have = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        have = None
    except (OSError, ValueError) as e:
        return f"cannot read {path}: {e} (delete it if no hub runs on this folder)"
    if have is not None and not (isinstance(have, dict) and type(have.get("workers")) is int
                                 and type(have.get("partitions")) is int and isinstance(have.get("take"), list)):
        return f"{path} is not a layout this hub wrote (delete it if no hub runs on this folder)"

    def has_checkpoints(folder: Path | None) -> bool:
        return folder is not None and folder.is_dir() and bool(CheckpointStore(folder).numbers())

    if have is None or have["workers"] == 1:
        single = state_dir(cfg.state, cfg.base_dir) or base / "state"
        return have or {"workers": 1, "partitions": 1, "take": [0]} if has_checkpoints(single) else None
    if not any(has_checkpoints(worker_dir(base, i)) for i in range(have["workers"])):
        return None  # written down, but no worker checkpointed anything: nothing to lose
    return have


def split_mismatch(cfg: Any, workers: int) -> str | None:
    """Why the checkpoints in the state folder cannot be resumed by ``workers`` processes with this config's
    partitions (written by a hub split another way), or None. Reads only: ``hub check`` asks it too."""
    from edgestream_hub.checkpoint import state_dir

    if state_dir(cfg.state, cfg.base_dir) is None:
        return None
    base = base_dir_of(cfg)
    partitions, take = layout(cfg.hub, workers)
    have = recorded_split(cfg)
    if isinstance(have, str):
        return have
    if have is not None and have != {"workers": workers, "partitions": partitions, "take": take}:
        return (f"the state in {base} was written by a hub of {have['workers']} worker(s) taking partitions "
                f"{have['take']} of {have['partitions']}; this config runs {workers} taking {take} of "
                f"{partitions}. Open windows and sequence positions live with the worker that owned each device: "
                f"set hub.workers (and hub.partitions, hub.take) back, or start from empty state with "
                f"`edgestream state reset --all`")
    return None


def check_layout(cfg: Any, workers: int) -> str | None:
    """Why the state folder cannot be used by ``workers`` processes with this config's partitions, or None
    (and the layout is written down, for ``edgestream state`` and ``edgestream devices``). A hub's open windows
    and sequence positions live in the folder of the worker that owns the device: another split would lose
    them (a hub without checkpoints has none to lose)."""
    problem = split_mismatch(cfg, workers)
    if problem:
        return problem
    base = base_dir_of(cfg)
    partitions, take = layout(cfg.hub, workers)
    want = {"workers": workers, "partitions": partitions, "take": take}
    path = base / LAYOUT_FILE
    if workers > 1 or len(take) != partitions:
        try:
            base.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps(want), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as e:
            return f"cannot write {path}: {e.strerror or e}"
    elif path.exists():
        path.unlink()
    return None


def worker_dirs(cfg: Any) -> list[Path]:
    """The worker folders of the hub whose config is ``cfg`` (none for a one-process hub)."""
    base = base_dir_of(cfg)
    try:
        n = int(json.loads((base / LAYOUT_FILE).read_text(encoding="utf-8"))["workers"])
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [worker_dir(base, i) for i in range(n)] if n > 1 else []


# -- the supervisor --
def restart_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` without ``--fresh-state P``: that was for the first start; a worker started again resumes from
    its own checkpoint (its messages were acknowledged once it held them)."""
    return [a for i, a in enumerate(argv) if a != "--fresh-state" and (i == 0 or argv[i - 1] != "--fresh-state")]


class Supervisor:
    """Starts ``workers`` processes of ``edgestream hub run`` on one config, serves their merged metrics,
    forwards reloads and stops, restarts one that dies. ``run()`` returns the exit code."""

    def __init__(self, cfg: Any, path: str, workers: int, argv: Sequence[str]) -> None:
        import threading

        self.cfg, self.path, self.n, self.argv = cfg, path, workers, list(argv)
        self.base = base_dir_of(cfg)
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * workers
        self.started = [False] * workers  # each worker ran once (a restart drops --fresh-state)
        self.restarts = [0] * workers
        self._lock_fd: int | None = None
        self.stop_requested = threading.Event()
        self.reload_requested = threading.Event()
        self._metrics: Any = None
        self.metrics_url: str | None = None

    def _spawn(self, index: int) -> subprocess.Popen[bytes]:
        import signal
        import subprocess
        import sys

        from edgestream_hub.parent_death import die_with_parent

        env = dict(os.environ)
        env.pop(SUPERVISOR_ENV, None)
        env[ENV] = worker_value(index, self.n, self.cfg.hub)
        env[DIR_ENV] = str(worker_dir(self.base, index))
        env.pop("NOTIFY_SOCKET", None)  # the supervisor speaks to systemd
        ready = worker_dir(self.base, index) / READY_FILE
        try:
            ready.unlink()
        except OSError:
            pass
        die = die_with_parent(signal.SIGKILL)  # a SIGKILL of the supervisor takes the workers down too

        def preexec() -> None:
            os.setpgid(0, 0)  # a Ctrl-C reaches the supervisor only, which stops the workers in order
            signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the worker handles it: a reload, never a kill
            die()

        argv = restart_argv(self.argv) if self.started[index] else self.argv
        return subprocess.Popen([sys.executable, "-m", "edgestream_hub", *argv], env=env, preexec_fn=preexec)

    def start(self) -> bool:
        """Start every worker and wait until each runs; False (all stopped) if one could not start."""
        import time

        from edgestream_hub import pidlock

        try:  # a second `hub run` on this folder must not touch the running one's workers
            self.base.mkdir(parents=True, exist_ok=True)
            self._lock_fd = pidlock.take(self.base / "supervisor.lock")
        except pidlock.Held as e:
            log.error("another hub (pid %s) runs on %s: stop it first", e.holder, self.base)
            self.exit_code = 1
            return False
        except OSError as e:
            log.error("cannot lock %s: %s", self.base / "supervisor.lock", e.strerror or e)
            self.exit_code = 1
            return False
        for i in range(self.n):
            self.procs[i] = self._spawn(i)
        deadline = time.monotonic() + 120
        waiting = set(range(self.n))
        while waiting and time.monotonic() < deadline and not self.stop_requested.is_set():
            for i in sorted(waiting):
                p = self.procs[i]
                assert p is not None
                if p.poll() is not None:
                    log.error("worker %d could not start (exit %d)", i, p.returncode)
                    self.exit_code = p.returncode if p.returncode in (1, 2) else 1
                    self._stop_all()
                    return False
                if self._ready(i) is not None:
                    waiting.discard(i)
                    self.started[i] = True
            time.sleep(0.05)
        if waiting:
            if not self.stop_requested.is_set():
                log.error("workers %s did not start in time", ", ".join(map(str, sorted(waiting))))
            self.exit_code = 0 if self.stop_requested.is_set() else 1
            self._stop_all()
            return False
        if self.cfg.metrics.get("listen"):
            self._serve_metrics()
        return True

    exit_code = 0

    def _ready(self, index: int) -> dict[str, Any] | None:
        p = self.procs[index]
        try:
            info = json.loads((worker_dir(self.base, index) / READY_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return info if isinstance(info, dict) and p is not None and info.get("pid") == p.pid else None

    def _serve_metrics(self) -> None:
        from prometheus_client import CollectorRegistry

        from edgestream_hub.metrics import serve_registry

        m = self.cfg.metrics
        reg = CollectorRegistry(auto_describe=False)
        reg.register(MergedCollector(self))
        try:
            self._metrics = serve_registry(reg, m["listen"], read_timeout_s=m["read_timeout"] / 1000,
                                                      max_connections=m["max_connections"])
        except OSError as e:
            from edgestream_hub.errors import StartError

            self._stop_all()
            raise StartError("metrics", f"cannot listen on {m['listen']}: {e.strerror or e}") from e
        host, port = self._metrics.server_address[:2]
        self.metrics_url = f"http://{f'[{host}]' if ':' in host else host}:{port}/metrics"

    def worker_urls(self) -> list[tuple[int, int, str]]:
        """``(index, pid, metrics URL)`` of each worker that runs."""
        out = []
        for i in range(self.n):
            info = self._ready(i)
            if info and isinstance(info.get("metrics"), str):
                out.append((i, info["pid"], info["metrics"]))
        return out

    def run(self) -> int:
        """Until a stop is asked: restart a worker that died (backoff 1 s doubling to 30 s), forward reloads."""
        import signal
        import time

        from edgestream_hub.systemd import notify

        notify("READY=1", f"STATUS=running {self.path} on {self.n} workers")
        due: dict[int, float] = {}
        backoff = [1.0] * self.n
        while not self.stop_requested.wait(0.1):
            if self.reload_requested.is_set():
                self.reload_requested.clear()
                log.info("reloading %s in every worker", self.path)
                self._signal(signal.SIGHUP, ready_only=True)  # one still starting reads the file as it is
            now = time.monotonic()
            for i, p in enumerate(self.procs):
                if p is not None and p.poll() is not None:
                    log.error("worker %d exited (code %d): starting it again in %.0fs", i, p.returncode, backoff[i])
                    self.procs[i] = None
                    due[i] = now + backoff[i]
                    backoff[i] = min(backoff[i] * 2, 30.0)
                elif p is not None and self._ready(i) is not None:
                    backoff[i] = 1.0
                    self.started[i] = True
                if self.procs[i] is None and now >= due.get(i, 0):
                    self.restarts[i] += 1
                    self.procs[i] = self._spawn(i)
        return self.stop()

    def _signal(self, sig: int, ready_only: bool = False) -> None:
        for i, p in enumerate(self.procs):
            if ready_only and self._ready(i) is None:
                continue
            if p is not None and p.poll() is None:
                try:
                    p.send_signal(sig)
                except OSError:
                    pass

    def _stop_all(self, timeout_s: float = 30.0) -> bool:
        import signal
        import subprocess
        import time

        self._signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        ok = True
        for p in self.procs:
            if p is None:
                continue
            try:
                rc = p.wait(max(0.1, deadline - time.monotonic()))
                ok = ok and rc == 0
            except subprocess.TimeoutExpired:
                log.error("worker pid %d did not stop in time: killing it", p.pid)
                p.kill()
                p.wait()
                ok = False
        return ok

    def stop(self) -> int:
        from edgestream_hub.systemd import notify

        notify("STOPPING=1", f"STATUS=stopping {self.path}")
        ok = self._stop_all(self.cfg.hub["shutdown_timeout"] / 1000 + 10)
        if self._metrics is not None:
            self._metrics.stop()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        return 0 if ok else 1


#: gauges whose merged value is not the sum of the workers'
_GAUGE_MERGE = {"edgestream_state_checkpoint_duration_seconds": max, "edgestream_state_checkpoint_age_seconds": max,
                "edgestream_devices_desired_invalid": max, "process_start_time_seconds": min,
                "process_max_fds": max}


class MergedCollector:
    """The workers' metrics as one hub's: counters, histograms and most gauges summed by label set, the
    gauges in ``_GAUGE_MERGE`` merged by their rule, ``*_info`` by max; plus ``edgestream_hub_workers`` and
    ``edgestream_hub_worker_restarts_total``. A worker that does not answer within 2 s is left out (and
    ``edgestream_hub_workers_scraped`` says how many answered).

    The merged counters never go back (Prometheus reads a drop as a reset to zero and would count the other
    workers' totals again): a worker left out counts with what it last answered, and a worker started again
    counts on from what its previous process last answered."""

    def __init__(self, sup: Supervisor) -> None:
        import threading

        self.sup = sup
        self._last: dict[int, tuple[int, list[Any]]] = {}  # worker -> (pid, families it last answered)
        self._gone: list[Any] = []  # what the workers' previous processes last answered, summed
        self._lock = threading.Lock()  # scrapes may come at once

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        from prometheus_client.parser import text_string_to_metric_families

        urls = self.sup.worker_urls()
        texts = scrape([(i, u) for i, _, u in urls])
        pids = {i: pid for i, pid, _ in urls}
        live: dict[int, list[Any]] = {}
        for i, text in texts.items():
            try:
                live[i] = list(text_string_to_metric_families(text))
            except ValueError as e:
                log.warning("metrics of worker %d not merged: %s", i, e)
        with self._lock:
            for i, fams in live.items():
                before = self._last.get(i)
                if before is not None and before[0] != pids[i]:  # started again: carry what the last one counted
                    self._gone = list(merge([], [self._gone, before[1]]))
                self._last[i] = (pids[i], fams)
            stale = [self._gone] + [fams for i, (_, fams) in self._last.items() if i not in live]
            yield from merge(live.values(), stale)
        g = GaugeMetricFamily("edgestream_hub_workers", "Worker processes of this hub (hub.workers).")
        g.add_metric([], self.sup.n)
        yield g
        g = GaugeMetricFamily("edgestream_hub_workers_scraped", "Workers whose metrics this scrape merged.")
        g.add_metric([], len(live))
        yield g
        c = CounterMetricFamily("edgestream_hub_worker_restarts", "Worker processes started again after they died.",
                                labels=["worker"])
        for i, n in enumerate(self.sup.restarts):
            c.add_metric([str(i)], n)
        yield c


def scrape(urls: Sequence[tuple[int, str]], timeout_s: float = 2.0) -> dict[int, str]:
    """Each worker's metrics text, fetched at once (the slowest bounds the scrape)."""
    import threading
    import urllib.request

    out: dict[int, str] = {}

    def one(i: int, url: str) -> None:
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as r:
                out[i] = r.read().decode("utf-8")
        except (OSError, ValueError) as e:
            log.warning("metrics of worker %d not merged: %s", i, e)

    threads = [threading.Thread(target=one, args=(i, u), daemon=True) for i, u in urls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout_s + 1)
    return dict(out)


#: metric types whose samples only grow (a worker's last answer still counts once it is gone)
_CUMULATIVE = {"counter", "histogram", "summary"}


def merge(live: Iterable[Iterable[Any]], stale: Iterable[Iterable[Any]] = ()) -> Iterable[Any]:
    """Metric families of several workers merged into one hub's (see ``MergedCollector``): ``live`` as parsed
    from their expositions now, ``stale`` what workers that did not answer (or are gone) answered last, of
    which only the counting samples are added."""
    from prometheus_client.metrics_core import Metric
    from prometheus_client.samples import Sample

    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}

    def take(fams: Iterable[Any], counting_only: bool) -> None:
        for fam in fams:
            if counting_only and fam.type not in _CUMULATIVE:
                continue
            if fam.name not in families:
                families[fam.name] = Metric(fam.name, fam.documentation, fam.type, fam.unit)
                values[fam.name] = {}
            rule = _GAUGE_MERGE.get(fam.name) or (max if fam.name.endswith("_info") or fam.type == "info" else None)
            acc = values[fam.name]
            for s in fam.samples:
                if counting_only and s.name.endswith("_created"):
                    continue
                k = (s.name, tuple(sorted(s.labels.items())))
                if k not in acc:
                    acc[k] = s.value
                elif s.name.endswith("_created"):
                    acc[k] = min(acc[k], s.value)
                elif fam.type == "gauge" or rule is not None:
                    acc[k] = (rule or _sum)(acc[k], s.value)
                else:
                    acc[k] += s.value

    for fams in live:
        take(fams, False)
    for fams in stale:
        take(fams, True)
    for name, fam in families.items():
        fam.samples = [Sample(n, dict(labels), v) for (n, labels), v in values[name].items()]
        yield fam


def _sum(a: float, b: float) -> float:
    return a + b
