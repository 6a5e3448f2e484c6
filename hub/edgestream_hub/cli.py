"""``edgestream hub``: run, check and document a hub config.

    edgestream hub run   -c hub.yaml [--set path=value ...]   # serve until SIGTERM/SIGINT; SIGHUP reloads
    edgestream hub check -c hub.yaml [--set path=value ...]   # validate only: exit 0, or 2 with every error
    edgestream hub docs  [-o docs/config-reference.md] [--check]
    edgestream hub plugins                                    # registered components and where they come from

Exit codes: 0 ok (run: stopped and drained), 1 could not start or did not
drain in time, 2 bad config or usage. ``check`` and ``run`` validate the same
way (``run`` before it opens anything), so a config ``check`` passes never
makes ``run`` exit 2, and both print the same located errors. ``check`` opens
no socket, creates no file and imports no connector library (the SQL compiler
only when the config has SQL processors).
"""

from __future__ import annotations

import argparse
import logging
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="{run,check,docs,plugins}")
    sub.required = True
    for name, help in (("run", "run the hub on a config file"), ("check", "validate a config file without running")):
        s = sub.add_parser(name, help=help)
        s.add_argument("-c", "--config", required=True, help="the hub.yaml to use")
        s.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                       help="override a config value (highest precedence), e.g. --set broker.port=1884")
        if name == "run":
            s.add_argument("--log-level", default=None, choices=("debug", "info", "warning", "error"),
                           help="overrides hub.log_level")
    d = sub.add_parser("docs", help="write the config reference generated from the component specs")
    d.add_argument("-o", "--output", default=None, help="file to write (default: print)")
    d.add_argument("--check", action="store_true", help="exit 1 if --output is not up to date")
    sub.add_parser("plugins", help="list sources, processors, sinks and functions with their origin")


def run(args: argparse.Namespace) -> int:
    return {"run": _run, "check": _check, "docs": _docs, "plugins": _plugins}[args.action](args)


def _check(args: argparse.Namespace) -> int:
    from edgestream_hub.config import load_config
    from edgestream_hub.errors import ConfigError, EdgeStreamError

    try:
        cfg = load_config(args.config, sets=args.set)
    except ConfigError as e:
        print(f"edgestream hub check: {e}", file=sys.stderr)
        return 2
    except EdgeStreamError as e:
        print(f"edgestream hub check: {e}", file=sys.stderr)
        return 2
    print(f"{args.config}: ok ({len(cfg.sources)} sources, {len(cfg.pipelines)} pipelines, {len(cfg.sinks)} sinks)")
    return 0


def _run(args: argparse.Namespace) -> int:
    import signal

    from edgestream_hub.errors import ConfigError, EdgeStreamError, StartError
    from edgestream_hub.service import HubService

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(PrintableFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(handlers=[handler], level=logging.INFO)
    sets = list(args.set) + ([f"hub.log_level={args.log_level}"] if args.log_level else [])
    svc = HubService(args.config, sets=sets)

    def on_stop(signum: int, frame: object) -> None:
        logging.getLogger("edgestream.hub").info("got %s: stopping", signal.Signals(signum).name)
        svc.stop_requested.set()

    def on_hup(signum: int, frame: object) -> None:
        svc.reload_requested.set()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_hup)
    try:
        svc.start()
    except ConfigError as e:
        print(f"edgestream hub run: {e}", file=sys.stderr)
        return 2
    except StartError as e:
        print(f"edgestream hub run: cannot start: {e}", file=sys.stderr)
        return 1
    except EdgeStreamError as e:
        print(f"edgestream hub run: {e}", file=sys.stderr)
        return 2
    print(f"edgestream hub: running {args.config} (SIGHUP reloads, SIGTERM stops)", file=sys.stderr, flush=True)
    return 0 if svc.run() else 1


class PrintableFormatter(logging.Formatter):
    """Log lines quote user text (topics, file names, payload excerpts): control and bidirectional-control
    characters in them are escaped, so a line cannot hide or reorder what a terminal shows."""

    def format(self, record: logging.LogRecord) -> str:
        from edgestream_hub.errors import printable

        return printable(super().format(record))


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
