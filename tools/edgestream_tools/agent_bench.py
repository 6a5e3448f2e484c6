"""``edgestream agent bench``: how fast a config's pipelines run on a board's MicroPython.

Runs the config's sensors through the agent's own sampling path
(``edgestream_agent.bench`` under the board build of MicroPython: 32-bit,
the board's heap, the agent frozen in or from a ``.mpy`` bundle) on synthetic
samples, in order and as fast as they are taken, and prints one JSON object
on stdout::

    edgestream agent bench --config agent.json --samples 20000
    {"samples_per_s": 301234, "alloc_bytes_per_sample": 0.0, "heap_used": 6176, ...}

Keys: ``samples_per_s``, ``alloc_bytes_per_sample`` (steady state; 0 is the
agent's budget), ``heap_used`` and ``heap_free`` (bytes), ``samples``,
``results``, ``elapsed_ms``, ``sensors``, ``native`` (whether the hot path ran
as machine code), ``board``, ``profile``. An invalid config exits 2 with the
validator's message; one the board's heap cannot start exits 3 with the
sentence of ``agent check``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from edgestream_hub.errors import EdgeStreamError


class AgentBenchError(EdgeStreamError):
    """The benchmark run failed (its output says why), or the samples asked for are not a positive count."""


def add_parser(sub: Any) -> None:
    """The ``bench`` subcommand, in the ``edgestream agent`` group ``sub``."""
    from edgestream_tools import micropython as mp

    b = sub.add_parser("bench", help="measure a config's pipelines under MicroPython (samples/s, heap)")
    b.add_argument("--config", required=True, help="the agent.json to measure")
    b.add_argument("--samples", type=int, default=10000, help="samples to push, over all sensors (default 10000)")
    b.add_argument("--board", choices=sorted(mp.BOARDS), default="esp32", help="heap size (default: esp32)")
    b.add_argument("--profile", choices=("frozen", "mpy"), default="frozen",
                   help="the agent frozen into the firmware, or .mpy files on a stock one (default: frozen)")


def measure(config: str, samples: int = 10000, board: str = "esp32", profile: str = "frozen") -> dict[str, Any]:
    """Run the benchmark; returns its figures (the JSON object the command prints)."""
    from edgestream_tools import micropython as mp
    from edgestream_tools.agent_cli import _check_config

    if samples <= 0:
        raise AgentBenchError(f"--samples: expected a count > 0, got {samples}")
    _check_config(config)  # the validator's message, before starting an interpreter
    proc = mp.run(["-m", "edgestream_agent.bench", str(config), str(samples)], board=board, profile=profile,
                  check=False, timeout=600)
    out = proc.stdout.decode(errors="replace").strip()
    if proc.returncode != 0 or not out:
        text = (out + "\n" + proc.stderr.decode(errors="replace")).strip()
        raise AgentBenchError(f"micropython ({board}, heap {mp.heap_for(board)}, {profile}) exited "
                              f"{proc.returncode}:\n{text}")
    figures: dict[str, Any] = json.loads(out.splitlines()[-1])
    figures.update(board=board, profile=profile)
    return figures


def run(args: argparse.Namespace) -> int:
    import sys

    from edgestream_tools.agentcheck import DoesNotFit, check_start

    try:
        figures = measure(args.config, args.samples, args.board, args.profile)
    except AgentBenchError as e:
        if "MemoryError" not in str(e):
            raise
        try:  # out of heap: the sentence `agent check` (and replay) gives, when the agent cannot start either
            check_start(args.config, args.board, args.profile)
        except DoesNotFit as nofit:
            print(f"edgestream agent bench: does not fit: {nofit}", file=sys.stderr)
            return DoesNotFit.exit_code
        raise
    print(json.dumps(figures))
    return 0
