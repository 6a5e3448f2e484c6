"""``edgestream hub``: run, check and document a hub config.

    edgestream hub run   [-c hub.yaml] [--set path=value ...] [--log-format text|json]
                         [--fresh-state PIPELINE ...]   # serve until SIGTERM/SIGINT; SIGHUP reloads;
                                                        # that pipeline starts with empty state
    edgestream hub check [-c hub.yaml] [--set path=value ...]   # validate only: exit 0, or 2 with every error
    edgestream hub docs  [-o docs/config-reference.md] [--check]
    edgestream hub plugins                                      # registered components and their origin
    edgestream hub install-service [--user] [-c hub.yaml] [--dry-run]   # a systemd unit that starts at boot

Without ``-c`` the config is ``/etc/edgestream/hub.yaml``, else ``./hub.yaml``
(``config.DEFAULT_CONFIGS``); when neither exists the error names both.

Exit codes: 0 ok (run: stopped and drained), 1 could not start or did not
drain in time, 2 bad config or usage. ``check`` and ``run`` validate the same
way (``run`` before it opens anything), so a config ``check`` passes never
makes ``run`` exit 2, and both print the same located errors. ``check`` opens
no socket, creates no file and imports no connector library (the SQL compiler
only when the config has SQL processors).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    from edgestream_hub.config import DEFAULT_CONFIGS
    from edgestream_hub.logs import FORMATS

    where = " or ".join(DEFAULT_CONFIGS)
    sub = p.add_subparsers(dest="action", metavar="{run,check,docs,plugins,install-service}")
    sub.required = True
    for name, help in (("run", "run the hub on a config file"), ("check", "validate a config file without running")):
        s = sub.add_parser(name, help=help)
        s.add_argument("-c", "--config", default=None, help=f"the hub.yaml to use (default: {where})")
        s.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                       help="override a config value (highest precedence), e.g. --set broker.port=1884")
        if name == "run":
            s.add_argument("--log-level", default=None, choices=("debug", "info", "warning", "error"),
                           help="overrides hub.log_level")
            s.add_argument("--fresh-state", action="append", default=[], metavar="PIPELINE",
                           help="start this pipeline with empty state, whatever the checkpoint holds for it "
                                "(e.g. after its query changed); repeatable")
            s.add_argument("--log-format", default="text", choices=FORMATS,
                           help="text (default) or json: one JSON object per line, for journald and log shippers")
    d = sub.add_parser("docs", help="write the config reference generated from the component specs")
    d.add_argument("-o", "--output", default=None, help="file to write (default: print)")
    d.add_argument("--check", action="store_true", help="exit 1 if --output is not up to date")
    sub.add_parser("plugins", help="list sources, processors, sinks and functions with their origin")
    i = sub.add_parser("install-service", help="write a systemd unit that runs the hub at boot (Type=notify)")
    i.add_argument("-c", "--config", default=None, help=f"the hub.yaml the service runs (default: {where})")
    i.add_argument("--user", action="store_true",
                   help="a user unit (~/.config/systemd/user) instead of a system one (/etc/systemd/system)")
    i.add_argument("--dry-run", action="store_true", help="print the unit, write nothing")


def run(args: argparse.Namespace) -> int:
    return {"run": _run, "check": _check, "docs": _docs, "plugins": _plugins,
            "install-service": _install_service}[args.action](args)


def exits_quickly(args: argparse.Namespace) -> bool:
    """``check`` starts no thread and leaves no file open: the console script may skip the teardown."""
    return args.action == "check"


def _check(args: argparse.Namespace) -> int:
    import gc

    from edgestream_hub.errors import ConfigError, EdgeStreamError

    # no cyclic garbage collection while checking: the imports (sqlglot's ~1000 classes) would trigger passes
    # over an ever larger heap for nothing, and what one check allocates is bounded (the config file's limits)
    collecting = gc.isenabled()
    gc.disable()
    try:
        from edgestream_hub.config import find_config, load_config

        args.config = find_config(args.config)
        cfg = load_config(args.config, sets=args.set)
        from edgestream_hub.workers import base_dir_of

        if base_dir_of(cfg).is_dir():  # a hub ran here: would `hub run` resume its state with this split?
            _workers(cfg, None, start=False)
    except ConfigError as e:
        print(f"edgestream hub check: {e}", file=sys.stderr)
        return 2
    except EdgeStreamError as e:
        print(f"edgestream hub check: {e}", file=sys.stderr)
        return 2
    finally:
        if collecting:
            gc.enable()
    print(f"{args.config}: ok ({len(cfg.sources)} sources, {len(cfg.pipelines)} pipelines, {len(cfg.sinks)} sinks)")
    return 0


def _run(args: argparse.Namespace) -> int:
    import logging  # here: `hub check` imports no logging
    import signal

    from edgestream_hub import logs, workers

    # a reload asked for while the config loads (or across the supervisor's re-exec, which keeps an ignored
    # signal ignored) must not kill the hub: SIGHUP is ignored until its handler is in place
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    from edgestream_hub.config import find_config
    from edgestream_hub.errors import ConfigError, EdgeStreamError, StartError
    from edgestream_hub.service import HubService

    me = workers.worker_env()
    logs.setup(args.log_format, logging.INFO, worker=me[0] if me else None)
    try:
        args.config = find_config(args.config)
    except ConfigError as e:
        print(f"edgestream hub run: {e}", file=sys.stderr)
        return 2
    sets = list(args.set) + ([f"hub.log_level={args.log_level}"] if args.log_level else [])
    svc = HubService(args.config, sets=sets, fresh_state=args.fresh_state)
    cfg = None
    if me is None:  # the hub, not one of its workers: how many processes?
        n = workers.supervising()
        try:
            chosen = n is not None
            # the load and the split compile queries: never with sqlglot here (a supervisor's were checked before)
            with svc.parsing_elsewhere(lazily=chosen):
                cfg = svc.load()
                if n is None:
                    n = _workers(cfg, svc.registry)
            if n > 1 and not chosen:  # supervise in a fresh process image: this one holds the compiled queries
                _reexec(args, n)
        except EdgeStreamError as e:
            print(f"edgestream hub run: {e}", file=sys.stderr)
            return 2
        if n > 1:
            return _supervise(args, cfg, n)

    _on_signals(svc, "stopping")
    try:
        svc.start(cfg)
    except ConfigError as e:
        print(f"edgestream hub run: {e}", file=sys.stderr)
        return 2
    except StartError as e:
        print(f"edgestream hub run: cannot start: {e}", file=sys.stderr)
        return 1
    except EdgeStreamError as e:
        print(f"edgestream hub run: {e}", file=sys.stderr)
        return 2
    logging.getLogger("edgestream.hub").info("running %s (SIGHUP reloads, SIGTERM stops)%s", args.config,
                                             f"; console at {svc.api.url}/" if svc.api is not None and
                                             svc.api.api["console"] else "")
    return 0 if svc.run() else 1


def _on_signals(target: Any, stopping: str) -> None:
    """SIGTERM and SIGINT set ``target.stop_requested`` (logged as ``got SIGTERM: <stopping>``), SIGHUP
    ``target.reload_requested``."""
    import logging
    import signal

    def on_stop(signum: int, frame: object) -> None:
        logging.getLogger("edgestream.hub").info("got %s: %s", signal.Signals(signum).name, stopping)
        target.stop_requested.set()

    def on_hup(signum: int, frame: object) -> None:
        target.reload_requested.set()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_hup)


def _workers(cfg: Any, registry: Any, start: bool = True) -> int:
    """The worker processes ``cfg`` runs in: ``hub.workers`` (``auto``: one per core when it can be split);
    raises ConfigError when the state folder was written by a hub split another way. ``start=False``
    (``hub check``): logs nothing and leaves the state folder as it is."""
    from edgestream_hub import workers
    from edgestream_hub.errors import ConfigError

    def say(msg: str, *args: Any) -> None:
        if start:
            import logging

            logging.getLogger("edgestream.hub").info(msg, *args)

    n = workers.workers_of(cfg.hub)
    if cfg.hub["workers"] == "auto":
        problems = workers.split_problems(cfg, registry) if n > 1 else []
        if problems:
            where, why = problems[0]
            say("one process (hub.workers: auto): %s: %s%s", where, why,
                f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
            n = 1
        kept = workers.recorded_split(cfg)
        if isinstance(kept, dict) and kept["workers"] != n and (kept["workers"] == 1 or not problems):
            say("hub.workers: auto keeps the %d worker process(es) the state in %s was written by "
                "(`edgestream state reset --all` lets the next start choose again)", kept["workers"],
                workers.base_dir_of(cfg))
            n = kept["workers"]
    problem = workers.check_layout(cfg, n) if start else workers.split_mismatch(cfg, n)
    if problem:
        from edgestream_hub.errors import ConfigIssue

        raise ConfigError(ConfigIssue("hub.workers", problem))
    return n


def _argv(args: argparse.Namespace) -> list[str]:
    """``hub run`` arguments that run ``args`` again (in the supervisor's new image, in each worker)."""
    argv = ["hub", "run", "-c", args.config, "--log-format", args.log_format]
    for s in args.set:
        argv += ["--set", s]
    if args.log_level:
        argv += ["--log-level", args.log_level]
    for p in args.fresh_state:
        argv += ["--fresh-state", p]
    return argv


def _reexec(args: argparse.Namespace, n: int) -> None:
    """Become the supervisor of ``n`` workers: the same pid (for systemd and whoever started it), a new image
    that loads the config without compiling its queries (they are in the check cache now)."""
    import os

    from edgestream_hub import workers

    sys.stdout.flush()
    sys.stderr.flush()
    env = dict(os.environ)
    env[workers.SUPERVISOR_ENV] = str(n)
    os.execve(sys.executable, [sys.executable, "-m", "edgestream_hub", *_argv(args)], env)


def _supervise(args: argparse.Namespace, cfg: Any, n: int) -> int:
    """Run the hub as ``n`` worker processes (``workers.Supervisor``) until SIGTERM/SIGINT; SIGHUP reloads all."""
    import logging

    from edgestream_hub.errors import StartError
    from edgestream_hub.workers import Supervisor

    sup = Supervisor(cfg, args.config, n, _argv(args))
    log = logging.getLogger("edgestream.hub")
    _on_signals(sup, "stopping every worker")
    try:
        if not sup.start():
            return sup.exit_code
    except StartError as e:
        print(f"edgestream hub run: cannot start: {e}", file=sys.stderr)
        return 1
    log.info("running %s on %d workers (SIGHUP reloads, SIGTERM stops)%s", args.config, n,
             f"; metrics at {sup.metrics_url}" if sup.metrics_url else "")
    return sup.run()


def _docs(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edgestream_hub.docs import reference

    text = reference()
    if args.output is None:
        sys.stdout.write(text)
        return 0
    out = Path(args.output)
    try:
        if args.check:
            if not out.exists() or out.read_text() != text:
                print(f"{out} is stale: run edgestream hub docs -o {out}", file=sys.stderr)
                return 1
            return 0
        out.write_text(text)
    except OSError as e:  # a missing folder, a directory in the way: say which file, not a traceback
        verb = "read" if args.check else "write"
        print(f"edgestream hub docs: cannot {verb} {out}: {e.strerror or e}", file=sys.stderr)
        return 2
    return 0


def _plugins(args: argparse.Namespace) -> int:
    from edgestream_hub.registry import KINDS, Registry

    r = Registry.default()
    for kind in KINDS:
        for t in r.types(kind):
            print(f"{kind:<10} {t.name:<12} {t.origin}")
    for name in sorted(r.functions):
        print(f"{'function':<10} {name:<12} {r._function_origins[name]}")
    return 0


def _install_service(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from edgestream_hub import systemd
    from edgestream_hub.config import DEFAULT_CONFIGS, find_config, load_config
    from edgestream_hub.errors import ConfigError, EdgeStreamError

    try:
        config = find_config(args.config)
    except ConfigError:
        config = DEFAULT_CONFIGS[0]
        print(f"edgestream hub install-service: {config} does not exist yet: the service starts once it does "
              "(write it, check it with `edgestream hub check`)", file=sys.stderr)
    config = str(Path(config).expanduser().resolve())
    stop_s = 10.0
    if Path(config).is_file():
        try:
            stop_s = load_config(config).hub["shutdown_timeout"] / 1000
        except EdgeStreamError as e:
            print(f"edgestream hub install-service: warning: the config does not pass `hub check` yet:\n{e}",
                  file=sys.stderr)
    text = systemd.unit(sys.executable, config, user=args.user, stop_timeout_s=stop_s)
    if args.dry_run:
        sys.stdout.write(text)
        return 0
    path = systemd.unit_path(args.user)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as e:
        hint = "" if args.user else " (a system unit needs root: sudo, or --user)"
        print(f"edgestream hub install-service: cannot write {path}: {e.strerror or e}{hint}", file=sys.stderr)
        return 1
    ctl = "systemctl --user" if args.user else "sudo systemctl"
    name = systemd.UNIT_NAME.removesuffix(".service")
    print(f"wrote {path}:\n")
    print(text)
    print("enable it (starts now and at every boot):")
    print(f"  {ctl} daemon-reload")
    print(f"  {ctl} enable --now {name}")
    if args.user:
        print("  sudo loginctl enable-linger $USER    # start the user's services at boot, before a login")
    print(f"reload after editing {config}:  {ctl} reload {name}")
    print(f"logs:  journalctl {'--user-unit' if args.user else '-u'} {name} -f")
    return 0
