"""The ``edgestream`` command.

Each subcommand lives in its own module with ``add_arguments(parser)`` and
``run(args) -> exit code``; only the chosen one is imported, so
``edgestream sql ...`` does not pay for MQTT or Prometheus at start.

Exit codes shared by every command: 0 done, 2 bad usage or input a user can
fix (the message says where), 130 interrupted, 141 stdout closed early
(``edgestream sql ... | head -1``: like other Unix tools, quietly).

A subcommand module may also have ``exits_quickly(args) -> bool``: true when
that run leaves nothing for the interpreter's teardown to finish (no thread,
no open file but stdout and stderr, no logging handler). The console script
(``console``) then ends it with ``os._exit`` once stdout and stderr are
flushed, skipping the teardown: freeing every module and object costs ~20 ms
once sqlglot is loaded, a sixth of ``hub check`` on a config with SQL.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import TYPE_CHECKING, Any, NoReturn, Optional, Sequence

from edgestream_hub.errors import EdgeStreamError
from edgestream_hub.pipes import to_devnull

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

#: subcommand -> (module, one-line help). Add a line here to add a command.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("edgestream_tools.demo", "run the end-to-end demo on an embedded default"),
    "firmware": ("edgestream_tools.bundle", "build .mpy bundles of the device packages"),
    "agent": ("edgestream_tools.agent_cli", "work with agents: replay, check, bench, deploy, test, logs"),
    "vboard": ("edgestream_tools.vboard", "run a virtual board on a pty for mpremote: edgestream vboard --board esp32"),
    "hub": ("edgestream_hub.cli", "run or check the hub: edgestream hub run|check -c hub.yaml"),
    "devices": ("edgestream_tools.devices_cli", "list devices, push a config, sync their clocks (hub.yaml devices)"),
    "state": ("edgestream_tools.state_cli", "list, inspect, verify or reset the hub's checkpoints (hub.yaml state)"),
    "sql": ("edgestream_hub.sql.cli", "run a streaming SQL query over files, or EXPLAIN it"),
    "broker": ("edgestream_tools.broker_cli", "the recommended mosquitto config: edgestream broker --print-config|run"),
}

#: exit status after a write to a closed stdout: 128 + SIGPIPE, what a shell reports for a killed writer
EXIT_BROKEN_PIPE = 141


def _columns() -> int:
    """The terminal's width as ``shutil.get_terminal_size`` finds it (``COLUMNS``, else the terminal,
    else 80), without importing shutil (and bz2, lzma...) at every command's start."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        out = sys.__stdout__
        try:
            columns = os.get_terminal_size(out.fileno()).columns if out is not None else 0
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class HelpFormatter(argparse.HelpFormatter):
    """argparse's help formatter, sized by ``_columns`` (argparse's own imports shutil to measure)."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position, _columns() - 2 if width is None else width)


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser whose subcommand groups name their choices in usage errors.

    argparse reports a missing subcommand by its internal destination
    (``the following arguments are required: agent_cmd``); this one says
    ``edgestream agent: choose a command: replay``, and for an unknown one
    ``edgestream agent: unknown command 'x'; choose a command: replay``.
    Subparsers inherit the class, so nested groups behave the same. A group
    needs a ``dest`` (the check reads it). Help is formatted by ``HelpFormatter``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def _groups(self) -> list[Any]:
        return [a for a in self._actions if isinstance(a, argparse._SubParsersAction) and a.dest != argparse.SUPPRESS]

    def _choose(self, group: Any, bogus: Optional[str]) -> NoReturn:
        self.print_usage(sys.stderr)
        head = f"unknown command {bogus!r}; " if bogus is not None else ""
        self.exit(2, f"{self.prog}: {head}choose a command: {', '.join(group.choices)}\n")

    # one signature for typeshed's overloads (a namespace of another class): ours returns a Namespace
    def parse_known_args(self, args: Optional[Sequence[str]] = None,  # type: ignore[override]
                         namespace: Optional[argparse.Namespace] = None) -> tuple[argparse.Namespace, list[str]]:
        groups = self._groups()
        for g in groups:
            g.required = False  # checked below, with a message that lists the commands
        ns, rest = super().parse_known_args(args, namespace)
        for g in groups:
            if getattr(ns, g.dest, None) is None:
                self._choose(g, None)
        return ns, rest

    def _print_message(self, message: str, file: Optional[SupportsWrite[str]] = None) -> None:
        # argparse swallows OSError here; a closed stdout must reach main() like any other write
        if message:
            (file or sys.stderr).write(message)

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        if isinstance(action, argparse._SubParsersAction) and value not in (action.choices or {}):
            self._choose(action, value)
        super()._check_value(action, value)


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: edgestream <command> [options]", "       edgestream --version", "", "commands:"]
    lines += [f"  {name:<{width}}  {help}" for name, (_, help) in COMMANDS.items()]
    lines += ["", "edgestream <command> --help shows a command's options."]
    return "\n".join(lines)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("edgestream")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _dispatch(argv: list[str]) -> tuple[int, bool]:
    """The exit code, and whether the command's run may end without the interpreter's teardown."""
    if argv and argv[0] in ("-h", "--help"):
        print(_usage())
        return 0, False
    if argv and argv[0] == "--version":
        print(f"edgestream {_version()}")
        return 0, False
    if not argv or argv[0] not in COMMANDS:
        head = f"unknown command {argv[0]!r}; " if argv else ""
        print(f"edgestream: {head}choose a command: {', '.join(COMMANDS)}\n\n{_usage()}", file=sys.stderr)
        return 2, False
    name = argv[0]
    module = importlib.import_module(COMMANDS[name][0])
    parser = CommandParser(prog=f"edgestream {name}", description=COMMANDS[name][1])
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    quick = getattr(module, "exits_quickly", None)
    try:
        rc = int(module.run(args) or 0)
    except EdgeStreamError as e:
        print(f"edgestream {name}: {e}", file=sys.stderr)
        rc = 2
    return rc, bool(quick is not None and quick(args))


def main(argv: list[str] | None = None, *, quick_exit: bool = False) -> int:
    """Run one command and return its exit code. With ``quick_exit`` (the console script), a command whose
    module says it ``exits_quickly`` ends the process here, with ``os._exit``, once stdout and stderr are
    flushed."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        try:
            rc, quick = _dispatch(argv)
        except SystemExit:  # argparse: --help or a usage error; its output must reach the pipe too
            sys.stdout.flush()
            raise
        sys.stdout.flush()  # here, not at exit, so a closed pipe is seen below
    except BrokenPipeError:  # `edgestream ... | head -1`: the reader has gone; stop like other Unix tools
        to_devnull(sys.stdout)  # so Python's flush at exit has nothing to fail on
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        return 130
    if quick and quick_exit:
        try:
            sys.stderr.flush()
        finally:
            os._exit(rc)
    return rc


def console() -> NoReturn:
    """The ``edgestream`` console script."""
    sys.exit(main(quick_exit=True))


if __name__ == "__main__":
    console()
