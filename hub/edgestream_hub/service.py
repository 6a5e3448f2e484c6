"""The hub service: an ``Engine`` plus its config file, hot reload and signals.

``HubService.reload()`` validates the file first: a bad config (or anything
loading it raises) is refused, its errors are logged and counted
(``edgestream_hub_config_reloads_total{result="refused"}``) and the running
config keeps going; a good one is
applied with ``Engine.reload`` (only what changed restarts). Reloads happen
on SIGHUP, on ``POST /api/reload`` and, with ``hub.watch``, when the file's content changes (the
watching thread is supervised: a crash is logged and it starts again).

With an ``api`` section it also serves the REST API and the console
(``edgestream_hub.rest``), started after the engine and stopped before it
(every event stream gets its final event first); a reload that changes the
section restarts them. Under systemd (``$NOTIFY_SOCKET``) it reports
``READY=1`` once everything runs, ``RELOADING=1``/``READY=1`` around each
reload and ``STOPPING=1`` when it stops (``edgestream_hub.systemd``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from typing import Any, Mapping, Sequence

from edgestream_hub import heap, workers
from edgestream_hub.config import MAX_CONFIG_BYTES, HubConfig, load_config
from edgestream_hub.engine import Engine
from edgestream_hub.errors import ConfigError, ConfigIssue, EdgeStreamError
from edgestream_hub.registry import Registry
from edgestream_hub.supervise import supervise
from edgestream_hub.systemd import notify, reloading

log = logging.getLogger("edgestream.hub")


def _parsing_elsewhere(path: str | None) -> Any:
    """A block in which SQL is parsed in a helper process (``edgestream_hub.sql.lowering``): the hub then holds
    only the compiled queries, never the parser (sqlglot, ~10 MB). With the config file's ``path``, when it
    has a ``sql:`` key the helper starts at once, loading the parser while the hub loads the rest; else it
    starts only if a query not parsed before is asked for."""
    import re

    from edgestream_hub.sql.lowering import elsewhere

    start = False
    if path is not None:
        try:
            with open(path, "rb") as f:
                start = re.search(rb"\bsql[\"']?\s*:", f.read(MAX_CONFIG_BYTES + 1)) is not None
        except OSError:
            pass  # loading the config says what is wrong with the file
    return elsewhere(start=start)


class HubService:
    """Runs a config file: start, reload on change or SIGHUP, stop."""

    def __init__(self, path: str, *, sets: Sequence[str] = (), env: Mapping[str, str] | None = None,
                 registry: Registry | None = None, metrics_registry: Any = None,
                 fresh_state: Sequence[str] = ()) -> None:
        self.path = path
        self.fresh_state = list(fresh_state)
        self.sets = list(sets)
        self.env = env
        self.registry = registry if registry is not None else Registry.default()
        self.metrics_registry = metrics_registry
        self.engine: Engine | None = None
        self.reload_requested = threading.Event()
        self.stop_requested = threading.Event()
        self._digest = ""
        self._watcher: threading.Thread | None = None
        self._last_stat: tuple[int, int] | None = None
        self.reloads = {"ok": 0, "refused": 0, "failed": 0}
        self.api: Any = None  # the running rest.ApiServer
        self._reload_lock = threading.Lock()

    def load(self, text: str | None = None) -> HubConfig:
        """The config of the file (or of ``text``, read as if it were the file), made this worker's in a worker."""
        cfg = load_config(self.path, text=text, env=self.env, sets=self.sets, registry=self.registry)
        w = workers.worker_env()
        if w is not None:  # a worker of a hub with hub.workers > 1: its own folder and metrics port
            problems = workers.split_problems(cfg, self.registry)
            if problems:  # e.g. a reload that adds a file sink: two workers would write one file
                raise ConfigError([ConfigIssue("hub.workers", f"{w[1]} workers cannot run this config: {where}: {why} "
                                                              "(stop the hub and start it again to run it in one "
                                                              "process)") for where, why in problems])
            workers.adjust(cfg, w[0])
        eng = self.engine
        if eng is not None and not eng.share.whole:
            shared = frozenset(workers.shared_sources(cfg, self.registry))
            if shared != eng.share.shared:  # its subscriptions were chosen at start
                raise ConfigError(ConfigIssue("sources", f"the sources the broker splits between workers would change "
                                                         f"({', '.join(sorted(eng.share.shared)) or 'none'} -> "
                                                         f"{', '.join(sorted(shared)) or 'none'}): stop the hub and "
                                                         "start it again to apply this config"))
        return cfg

    def parsing_elsewhere(self, *, lazily: bool = False) -> Any:
        """A block in which SQL is parsed in the helper process, as ``start`` and ``reload`` do: for a caller
        that loads the config and compiles its queries before it starts it (``hub run`` choosing its worker
        processes). ``lazily``: the helper starts only if a query needs it (their check is likely cached)."""
        return _parsing_elsewhere(None if lazily else self.path)

    def start(self, config: HubConfig | None = None) -> "HubService":
        """Start on ``config`` (the file's, loaded now, if None)."""
        heap.tune()  # before the engine starts its threads (each would get a malloc arena of its own)
        refused: ConfigError | None = None
        # a config given was loaded in ``parsing_elsewhere``: its queries are remembered, no helper to start
        with _parsing_elsewhere(self.path if config is None else None):
            if config is not None:
                cfg = config
            else:
                cfg, refused = self._load_at_start()
            self._digest = _digest(cfg.text)
            self._last_stat = _stat(self.path)
            engine = Engine(cfg, registry=self.registry, metrics_registry=self.metrics_registry,
                            fresh_state=self.fresh_state)
            if cfg.api is not None:
                from edgestream_hub.taps import Taps

                engine.taps = Taps.from_config(cfg.api)
            self.engine = engine.start()
        try:
            self._start_api(cfg.api)
        except BaseException:
            engine.stop()
            raise
        self._watcher = threading.Thread(
            target=supervise, args=("config watch", self._watch, log),
            kwargs={"wait": self.stop_requested.wait, "backoff_max_s": 5.0}, name="config-watch", daemon=True)
        self._watcher.start()
        notify("READY=1", f"STATUS=running {self.path}")
        if refused is not None:
            self.reloads["refused"] += 1
            self.engine.metrics.child("edgestream_hub_config_reloads_total", "refused").inc()
        if workers.worker_env() is not None:
            workers.keep_running_config(cfg.text)
            self._tell_supervisor()
        return self

    def _load_at_start(self) -> tuple[HubConfig, ConfigError | None]:
        """The file's config; in a worker started again after its file was edited into one that is refused
        (the other workers refused the reload and run on), the config it ran before, and why the file's was
        refused. A one-process hub refuses to start on a bad file."""
        try:
            return self.load(), None
        except ConfigError as e:
            kept = workers.running_config()
            try:
                text = kept.read_text(encoding="utf-8") if kept is not None else None
            except OSError:
                text = None
            if text is None:
                raise
            cfg = self.load(text)
            log.error("config file refused at the start, running the config this worker ran before (%s); the "
                      "file says:\n%s", kept, e)
            return cfg, e

    def _tell_supervisor(self) -> None:
        """A worker says it runs, and where its metrics are, in ``worker.json`` of its folder."""
        import json

        assert self.engine is not None
        folder = self.engine.component_state_dir
        if folder is None:
            return
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f"{workers.READY_FILE}.tmp"
        tmp.write_text(json.dumps({"pid": os.getpid(), "metrics": self.engine.metrics_url}), encoding="utf-8")
        os.replace(tmp, folder / workers.READY_FILE)
    def _start_api(self, api: dict[str, Any] | None) -> None:
        """Serve the REST API and the console of ``api`` (None: none); raises StartError if it cannot bind."""
        if api is None:
            return
        from edgestream_hub.rest import ApiServer

        self.api = ApiServer(self.engine, api, reload=self.reload_result, config_path=self.path).start()

    def _swap_api(self, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        """After a reload changed the ``api`` section: new taps, and the server restarted on a thread of its
        own (the reload may have come through the server being replaced)."""
        from edgestream_hub.taps import Taps

        assert self.engine is not None
        self.engine.taps = Taps.from_config(new) if new is not None else None
        before, self.api = self.api, None

        def swap() -> None:
            if before is not None:
                before.stop()
            try:
                self._start_api(new)
            except EdgeStreamError as e:
                log.error("api: not restarted after the reload: %s", e)

        threading.Thread(target=swap, name="api-restart", daemon=True).start()


    def _watch(self) -> None:
        """Request a reload when the file's content changes. ``_last_stat`` (set at start) is kept across
        restarts of this loop: a change made while it was restarting after a crash is still seen."""
        while not self.stop_requested.is_set():
            eng = self.engine
            interval = eng.config.hub["watch_interval"] / 1000 if eng else 1.0
            if self.stop_requested.wait(interval):
                return
            if eng is None or not eng.config.hub["watch"]:
                continue
            st = _stat(self.path)
            if st != self._last_stat:
                self._last_stat = st
                try:
                    with open(self.path, "rb") as f:  # bounded: a huge file is refused by the reload
                        changed = _digest(f.read(MAX_CONFIG_BYTES + 1).decode("utf-8", "replace")) != self._digest
                except OSError:
                    changed = False
                if changed:
                    log.info("%s changed: reloading", self.path)
                    self.reload_requested.set()

    def reload(self) -> bool:
        """Validate and apply the config file now. False if it was refused or failed."""
        return self.reload_result()["result"] == "ok"

    def reload_result(self) -> dict[str, Any]:
        """Validate and apply the config file now: ``{"result": "ok"|"refused"|"failed", "error": ...,
        "restarted": ...}``. One reload at a time (SIGHUP, the file watcher and the API may ask at once)."""
        with self._reload_lock:
            reloading(f"reloading {self.path}")
            try:
                with _parsing_elsewhere(None):  # a reload's queries are mostly remembered: a helper only if not
                    out = self._reload()
            finally:
                notify("READY=1", f"STATUS=running {self.path}")
        if self.api is not None:
            self.api.reloaded(out)
        return out

    def _reload(self) -> dict[str, Any]:
        assert self.engine is not None
        m = self.engine.metrics
        try:
            cfg = self.load()
        except Exception as e:  # whatever loading raises refuses the reload; the hub goes on
            self.reloads["refused"] += 1
            m.child("edgestream_hub_config_reloads_total", "refused").inc()
            if isinstance(e, ConfigError):
                log.error("config reload refused, the running config keeps going:\n%s", e)
                return {"result": "refused", "error": str(e)}
            log.error("config reload refused, the running config keeps going: %s: %s", type(e).__name__, e,
                      exc_info=True)
            return {"result": "refused", "error": f"{type(e).__name__}: {e}"}
        self._digest = _digest(cfg.text)
        old_api = self.engine.config.api
        try:
            done = self.engine.reload(cfg)
        except Exception as e:  # building the new components failed: the running ones were not touched
            self.reloads["failed"] += 1
            m.child("edgestream_hub_config_reloads_total", "failed").inc()
            why = str(e) if isinstance(e, EdgeStreamError) else f"{type(e).__name__}: {e}"
            log.error("config reload failed, the running config keeps going: %s", why,
                      exc_info=not isinstance(e, EdgeStreamError))
            return {"result": "failed", "error": why}
        self.reloads["ok"] += 1
        m.child("edgestream_hub_config_reloads_total", "ok").inc()
        workers.keep_running_config(cfg.text)
        taps = self.engine.taps
        if cfg.api != old_api:
            self._swap_api(old_api, cfg.api)
            done["api"] = ["server"]
        elif taps is not None:
            taps.forget("source", set(cfg.sources))
            taps.forget("emitted", set(cfg.pipelines))
        return {"result": "ok", "error": None, "restarted": {k: v for k, v in done.items() if v}}

    def run(self) -> bool:
        """Serve until a stop is requested or every (finite) source is done; then stop. True if drained."""
        assert self.engine is not None
        while not self.stop_requested.is_set():
            if self.reload_requested.wait(0.1):
                self.reload_requested.clear()
                self.reload()
            if self.engine.finished.is_set():
                log.info("every source is done: stopping")
                break
        return self.stop()

    def stop(self) -> bool:
        notify("STOPPING=1", f"STATUS=stopping {self.path}")
        self.stop_requested.set()
        if self._watcher is not None:
            self._watcher.join(5)
        api, self.api = self.api, None
        if api is not None:
            api.stop()
        return self.engine.stop() if self.engine is not None else True


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _stat(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
        return (st.st_mtime_ns, st.st_size)
    except OSError:
        return None
