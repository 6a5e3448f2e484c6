"""Run the benchmarks under bench/, print their numbers and write bench/RESULTS.md: ``make bench``.

``python -m bench`` runs every ``bench_*.py`` and writes ``bench/RESULTS.md`` (the machine and every
reported figure, ``bench/report.py``); ``python -m bench bench_sql bench_hub`` runs only those and
prints (add ``-o FILE`` to write their figures to FILE). A benchmark that fails is named in the output
and in the file, the others still run, and the exit code is 1.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
import traceback
from pathlib import Path

from bench import report


def names() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("only", nargs="*", metavar="bench_x", help="run only these benchmarks (default: all)")
    ap.add_argument("-o", "--output", type=Path, default=None,
                    help=f"write the figures here (default: {report.RESULTS.relative_to(report.ROOT)} when all run, "
                         "nowhere when some are named)")
    args = ap.parse_args(argv)
    known = names()
    unknown = [n for n in args.only if n not in known]
    if unknown:
        ap.error(f"no benchmark {', '.join(unknown)} (there are: {', '.join(known)})")
    out = args.output or (None if args.only else report.RESULTS)
    machine = report.machine_info()
    for k, v in machine.items():
        print(f"{k}: {v}")
    t0 = time.monotonic()
    failed = []
    for name in known:
        if args.only and name not in args.only:
            continue
        print(f"== {name}", flush=True)
        t = time.monotonic()
        try:
            importlib.import_module(f"bench.{name}").main()
        except Exception as e:  # one broken benchmark must not cost the others' figures)
            traceback.print_exc()
            failed.append(name)
            report.note("Failures", f"{name} failed: {type(e).__name__}: {e}")
        print(f"   ({name}: {time.monotonic() - t:.0f} s)", flush=True)
    if out is not None:
        report.write(out, report.REPORT, machine, elapsed_s=time.monotonic() - t0)
        print(f"wrote {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
