"""``python -m edgestream_hub hub run ...``: how a hub with ``hub.workers`` above 1 starts its workers."""

import argparse
import sys

from edgestream_hub import cli


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="edgestream")
    sub = p.add_subparsers(dest="command", required=True)
    cli.add_arguments(sub.add_parser("hub"))
    return cli.run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
