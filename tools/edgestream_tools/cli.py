"""The ``edgestream`` command.

Each subcommand lives in its own module with ``add_arguments(parser)`` and
``run(args) -> exit code``; only the chosen one is imported, so
``edgestream sql ...`` does not pay for MQTT or Prometheus at start.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from edgestream_hub.errors import EdgeStreamError

#: subcommand -> (module, one-line help). Add a line here to add a command.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("edgestream_tools.demo", "run the end-to-end demo on an embedded default"),
    "firmware": ("edgestream_tools.bundle", "build .mpy bundles of the device packages"),
    "agent": ("edgestream_tools.agent_cli", "replay recorded samples through an agent config"),
    "vboard": ("edgestream_tools.vboard", "run a virtual board on a pty for mpremote: edgestream vboard --board esp32"),
    "hub": ("edgestream_hub.cli", "run or check the hub: edgestream hub run|check -c hub.yaml"),
    "sql": ("edgestream_hub.sql.cli", "run a streaming SQL query over files, or EXPLAIN it"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: edgestream <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help}" for name, (_, help) in COMMANDS.items()]
    lines += ["", "edgestream <command> --help shows a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    name = argv[0]
    if name not in COMMANDS:
        print(f"edgestream: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"edgestream {name}", description=COMMANDS[name][1])
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except EdgeStreamError as e:
        print(f"edgestream {name}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
