"""The fixture cases (query / input / expected) through the processor and through ``edgestream sql``.

Each case runs three ways that must agree: the whole input in one batch,
one record per batch (results never depend on batching), and the CLI.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from sqlcases import load_cases, same

from edgestream_hub.api import SimpleContext
from edgestream_hub.sql.processor import SqlProcessor
from edgestream_tools.cli import main

CASES = load_cases()


def run(case: dict, batch: int | None) -> tuple[list, SimpleContext]:
    ctx = SimpleContext()
    p = SqlProcessor(case["query"], ctx, tables=case["tables"], **case["options"])
    out: list = []
    recs = case["input"]
    step = batch or max(1, len(recs))
    for i in range(0, len(recs), step):
        out += p.process(recs[i: i + step], now_ms=0)
    out += p.flush()
    return out, ctx


def check(case: dict, got: list) -> None:
    assert same(got, case["expected"]), (
        f"{case['id']}\nquery: {case['query']}\nexpected:\n"
        + "\n".join(map(json.dumps, case["expected"])) + "\ngot:\n" + "\n".join(map(json.dumps, got))
    )


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_case_one_batch(case):
    got, ctx = run(case, None)
    check(case, got)
    assert len(ctx.late_records) == case["late"], ctx.late_records
    assert len(ctx.dead) == case["dead"], ctx.dead


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_case_record_by_record(case):
    got, ctx = run(case, 1)
    check(case, got)
    assert len(ctx.late_records) == case["late"]
    assert len(ctx.dead) == case["dead"]


@pytest.mark.parametrize("case", [c for c in CASES if not c["tables"] and "_stream" not in json.dumps(c["input"])],
                         ids=lambda c: c["id"])
def test_case_cli(case, tmp_path, capsys):
    path = tmp_path / "s.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in case["input"]))
    stream = SqlProcessor(case["query"], SimpleContext()).plan.query.sources[0].name
    args = ["sql", case["query"], "--input", f"{stream}={path}"]
    opts = case["options"]
    if "lateness_ms" in opts:
        args += ["--lateness", str(opts["lateness_ms"])]
    if "time_field" in opts:
        args += ["--time-field", opts["time_field"]]
    assert main(args) == 0
    got = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    check(case, got)
