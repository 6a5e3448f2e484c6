"""``edgestream state list|inspect|verify|reset`` on the checkpoints of a real hub."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgestream_hub.config import load_config
from edgestream_hub.engine import Engine

EDGESTREAM = str(Path(sys.executable).parent / "edgestream")
QUERY = "SELECT device, count(*) AS n FROM s GROUP BY device, TUMBLINGWINDOW(ss, 1)"


def write_config(tmp_path: Path, query: str = QUERY, state: str = "") -> Path:
    cfg = tmp_path / "hub.yaml"
    cfg.write_text(f"""
sources: {{f: {{file: {{path: in.jsonl, mode: follow, poll_interval: 10ms}}}}}}
sinks: {{out: {{file: {{path: out.jsonl}}}}}}
pipelines:
  p: {{from: f, processors: [sql: "{query}"], to: out}}
{state}
""")
    return cfg


def run_hub(tmp_path: Path, ts: list[int]) -> None:
    """A hub that takes these records, then stops (its input did not end: the open window is kept)."""
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"device": "a", "ts": t}) + "\n" for t in ts))
    e = Engine(load_config(tmp_path / "hub.yaml")).start()
    try:
        deadline = time.monotonic() + 10
        while e.metrics.value("edgestream_pipeline_records_in_total", component="p") < len(ts):
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        assert e.stop()


def state(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([EDGESTREAM, "state", *args], capture_output=True, text=True, timeout=60)


def test_list_inspect_and_verify_a_stopped_hubs_state(tmp_path):
    cfg = write_config(tmp_path)
    run_hub(tmp_path, [0, 100, 1200, 1300])
    r = state("list", "-c", str(cfg))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"state folder: {tmp_path / '.edgestream' / 'state'}\n")
    assert r.stdout.splitlines()[1].split() == ["checkpoint", "kind", "base", "written", "(UTC)", "size",
                                                "pipelines"]
    last = r.stdout.splitlines()[-1].split()
    assert last[1] in ("full", "delta") and last[-1] == "p"
    js = [json.loads(x) for x in state("list", "-c", str(cfg), "--json").stdout.splitlines()]
    assert js[-1]["pipelines"] == ["p"] and js[-1]["sources"] == [] and js[-1]["bytes"] > 0
    r = state("inspect", "-c", str(cfg))
    assert r.returncode == 0, r.stderr
    assert "pipeline p\n  processor p.sql: " in r.stdout and "(fast mode)" in r.stdout
    assert "    watermark 1300, 1 key, 1 row emitted, 0 late, 0 dead letters\n" in r.stdout
    assert "    1 open window:\n      [1000, 2000) 1 group" in r.stdout
    body = json.loads(state("inspect", "-c", str(cfg), "--json").stdout)
    assert body["sections"]["pipeline/p"]["processors"]["p.sql"]["query"] == QUERY
    r = state("verify", "-c", str(cfg))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "pipeline p, processor p.sql: resumes" in r.stdout


def newest(tmp_path: Path) -> Path:
    return sorted((tmp_path / ".edgestream" / "state").glob("checkpoint-*.ckpt"))[-1]


def test_verify_finds_damage_and_state_the_config_cannot_resume(tmp_path):
    cfg = write_config(tmp_path)
    run_hub(tmp_path, [0, 100])
    run_hub(tmp_path, [200])  # a second checkpoint, so a damaged newest one has one to fall back on
    bad = newest(tmp_path)
    data = bytearray(bad.read_bytes())
    data[-3] ^= 1
    bad.write_bytes(bytes(data))
    r = state("verify", "-c", str(cfg))
    assert r.returncode == 1
    assert f"checkpoint {int(bad.stem.split('-')[1])}: DAMAGED: {bad.name}: checksum mismatch" in r.stdout
    assert "a start resumes from checkpoint " in r.stdout
    write_config(tmp_path, QUERY.replace("AS n", "AS m"))
    r = state("verify", "-c", str(cfg))
    assert r.returncode == 1
    assert f"pipeline p, processor p.sql: INCOMPATIBLE: its state was saved by a different query ({QUERY}) " \
           f"(start with --fresh-state p, or: edgestream state reset -c {cfg} --pipeline p)" in r.stdout
    r = state("inspect", "-c", str(cfg), "9999")
    assert r.returncode == 1 and "checkpoint-000000009999.ckpt: cannot read" in r.stderr


def test_reset_drops_a_pipelines_state_but_never_under_a_running_hub(tmp_path):
    cfg = write_config(tmp_path)
    run_hub(tmp_path, [0, 100])
    write_config(tmp_path, QUERY.replace("AS n", "AS m"))
    e = None
    try:
        with pytest.raises(Exception, match="--fresh-state p"):
            Engine(load_config(cfg)).start()
        e = Engine(load_config(cfg), fresh_state=["p"]).start()
        r = state("reset", "-c", str(cfg), "--pipeline", "p")
        assert r.returncode == 1 and "is in use by another hub" in r.stderr and "stop it first" in r.stderr
    finally:
        if e is not None:
            e.stop()
    r = state("reset", "-c", str(cfg), "--pipeline", "p", "--pipeline", "q")
    assert r.returncode == 0, r.stderr
    assert "pipeline q: no state in the checkpoint" in r.stdout
    assert "written without the state of p: it starts empty at the next start" in r.stdout
    assert "pipeline/p" not in json.loads(state("inspect", "-c", str(cfg), "--json").stdout)["sections"]
    r = state("reset", "-c", str(cfg), "--all")
    assert r.returncode == 0 and r.stdout.startswith("deleted ")
    assert state("list", "-c", str(cfg)).stdout.endswith("no checkpoints yet\n")
    assert state("inspect", "-c", str(cfg)).returncode == 1


def test_without_state_or_a_config_that_loads(tmp_path):
    cfg = write_config(tmp_path, state="state: {enabled: false}")
    r = state("verify", "-c", str(cfg))
    assert r.returncode == 0 and "state.enabled is false: this hub keeps no checkpoints" in r.stdout
    (tmp_path / "bad.yaml").write_text("sources: 3\n")
    r = state("list", "-c", str(tmp_path / "bad.yaml"))
    assert r.returncode == 2 and r.stderr.startswith("edgestream state list: ")
    (tmp_path / "empty").mkdir()
    r = subprocess.run([EDGESTREAM, "state", "list"], capture_output=True, text=True, timeout=60,
                       cwd=tmp_path / "empty")
    assert r.returncode == 2 and "no config file given and none found at" in r.stderr


def test_reset_of_a_folder_that_does_not_exist_creates_nothing(tmp_path):
    """A mistyped state.dir must not be created (with a LOCK) nor reported as reset."""
    cfg = write_config(tmp_path, state=f"state: {{dir: {tmp_path / 'no' / 'such'}}}")
    for how in (["--all"], ["--pipeline", "agg"]):
        r = state("reset", "-c", str(cfg), *how)
        assert r.returncode == 0 and f"no state folder {tmp_path / 'no' / 'such'}: nothing to reset" in r.stdout, r
    assert not (tmp_path / "no").exists()
    for cmd in ("list", "verify"):  # said as a folder that is not there, not as one without checkpoints
        r = state(cmd, "-c", str(cfg))
        assert r.returncode == 0 and "no such folder: no hub has run with this state.dir yet" in r.stdout, r
    assert not (tmp_path / "no").exists()


def test_inspect_refuses_a_checkpoint_number_below_1(tmp_path):
    cfg = write_config(tmp_path)
    r = state("inspect", "-c", str(cfg), "--", "-1")
    assert r.returncode == 2 and "checkpoint: -1: expected a checkpoint number, 1 or more" in r.stderr, r.stderr


def test_verify_applies_each_chain_so_entries_that_do_not_add_up_are_damage(tmp_path):
    import hashlib

    from edgestream_hub.checkpoint import CheckpointStore, section
    from edgestream_hub.sql.state import encode

    cfg = write_config(tmp_path, state="state: {dir: st}")
    store = CheckpointStore(tmp_path / "st", full_every=10)
    for v in (2, 3):
        store.write({"pipeline/p": section({"processors": {"p.sql": {"state": encode({"W": {1: v}})}}})})
    body = b'{"pipeline/p":{"processors":{}}}'  # a whole base whose delta has entries with nothing to apply to
    with open(store.path(1), "rb") as f:
        head = json.loads(f.readline())
    head.update(bytes=len(body), sha256=hashlib.sha256(body).hexdigest())
    store.path(1).write_bytes(json.dumps(head).encode() + b"\n" + body)
    r = state("verify", "-c", str(cfg))
    assert "checkpoint 1: ok" in r.stdout, r.stdout
    assert "checkpoint 2: DAMAGED: checkpoint-000000000002.ckpt: section pipeline/p:" in r.stdout, r.stdout
