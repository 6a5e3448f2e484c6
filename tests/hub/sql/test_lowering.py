"""A running hub parses its SQL in a helper process: it never holds sqlglot, and it compiles, refuses and
reloads queries exactly as a hub that parses them itself."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from edgestream_hub.sql import lowering
from edgestream_hub.sql.errors import SqlError
from edgestream_hub.sql.optimizer import compile_query
from edgestream_hub.sql.plan import explain

QUERIES = [
    "SELECT device, count(*) AS n, avg(value) AS mean FROM s GROUP BY device, TUMBLINGWINDOW(ss, 10)",
    "SELECT device, max(value) AS hi FROM s GROUP BY device, HOPPINGWINDOW(ss, 10, 2) HAVING max(value) > 3",
    "SELECT a.device, count(b.y) AS n FROM a JOIN b ON a.device = b.device GROUP BY a.device, TUMBLINGWINDOW(ss, 10)",
    "SELECT device, CASE WHEN value > 3 THEN 'hot' ELSE 'ok' END AS s FROM s WHERE value IS NOT NULL",
]
REFUSED = ["SELEC x FROM s", "SELECT frobnicate(x) FROM s", "SELECT x FROM s GROUP BY x, TUMBLINGWINDOW(ss, -1)",
           "SELECT 'unclosed FROM s"]


@pytest.fixture
def fresh(monkeypatch):
    """No query remembered, no helper left over: each test lowers afresh."""
    monkeypatch.setattr(lowering, "_memo", {})
    monkeypatch.setattr(lowering, "_helper_failed", False)
    yield
    assert lowering._helper is None and lowering._depth == 0


def outcome(text: str) -> str:
    try:
        return explain(compile_query(text))
    except SqlError as e:
        return f"refused: {e}"


def test_a_query_parsed_by_the_helper_compiles_and_is_refused_as_one_parsed_here(fresh, monkeypatch):
    here = [outcome(q) for q in QUERIES + REFUSED]
    monkeypatch.setattr(lowering, "_memo", {})
    with lowering.elsewhere():
        assert lowering._helper is None  # started at the first query, not before
        elsewhere = [outcome(q) for q in QUERIES + REFUSED]
        assert lowering._helper is not None and "sqlglot" not in lowering._helper.proc.args[-1]
        proc = lowering._helper.proc
    assert elsewhere == here and sum(o.startswith("refused: line") for o in here) == len(REFUSED)
    assert proc.poll() == 0  # the helper ends with the block


def test_a_query_lowered_once_is_not_lowered_again_and_each_compile_gets_its_own_tree(fresh):
    with lowering.elsewhere():
        first = lowering.lowered(QUERIES[0])
        assert lowering._helper is not None
        lowering._helper.close()  # a second lowering would need it
        again = lowering.lowered(QUERIES[0])
        lowering._helper = None
    assert first == again and first is not again


def test_a_helper_started_before_the_first_query_is_used_by_it_and_ends_with_the_block(fresh):
    with lowering.elsewhere(start=True):
        helper = lowering._helper
        assert helper is not None
        assert outcome(QUERIES[0]).startswith("mode: fast") and lowering._helper is helper
    assert helper.proc.poll() == 0


def test_without_a_helper_the_query_is_parsed_here_and_the_log_says_so(fresh, monkeypatch, caplog):
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    with caplog.at_level(logging.WARNING), lowering.elsewhere():
        assert outcome(QUERIES[1]) == outcome(QUERIES[1])
        assert outcome(REFUSED[3]).startswith("refused: line 1, column 8: syntax error: unterminated string")
    assert [r.message for r in caplog.records if "helper process failed" in r.message]


def test_a_helper_that_dies_is_replaced_by_parsing_here(fresh, monkeypatch, caplog):
    expected = outcome(QUERIES[2])
    monkeypatch.setattr(lowering, "_memo", {})
    with caplog.at_level(logging.WARNING), lowering.elsewhere():
        outcome(QUERIES[0])
        assert lowering._helper is not None
        lowering._helper.proc.kill()
        lowering._helper.proc.wait(5)
        assert outcome(QUERIES[2]) == expected
    assert any("helper process failed" in r.message for r in caplog.records)


HUB = """
sources: {f: {file: {path: in.jsonl, mode: once}}}
sinks: {o: {file: {path: out.jsonl}}}
pipelines:
  p: {from: f, to: o, processors: [sql: {query: "QUERY"}]}
hub: {watch: false}
state: {enabled: false}
"""


def test_a_running_hub_compiles_and_reloads_its_queries_without_importing_sqlglot(tmp_path):
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"device": f"d{i % 3}", "value": i, "ts": i * 1000}) + "\n"
                                               for i in range(30)))
    q1 = "SELECT device, count(*) AS n FROM f GROUP BY device, TUMBLINGWINDOW(ss, 10)"
    q2 = "SELECT device, max(value) AS hi FROM f GROUP BY device, TUMBLINGWINDOW(ss, 10)"
    (tmp_path / "hub.yaml").write_text(HUB.replace("QUERY", q1))
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from edgestream_hub.service import HubService
        cfg = Path("hub.yaml")
        svc = HubService("hub.yaml").start()
        started = "sqlglot" in sys.modules
        cfg.write_text(cfg.read_text().replace({q1!r}, {q2!r}))
        ok = svc.reload_result()["result"] == "ok"
        cfg.write_text(cfg.read_text().replace({q2!r}, "SELECT nope( FROM f"))
        refused = svc.reload_result()
        svc.stop()
        print(started, ok, "sqlglot" in sys.modules, repr(refused["result"]), repr(refused["error"]))
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    started, ok, after, result, error = out.stdout.strip().split(" ", 4)
    assert (started, ok, after, result) == ("False", "True", "False", "'refused'"), out.stderr
    assert "line 1, column" in error and "pipelines.p.processors[0].sql" in error
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert rows and {r["device"] for r in rows} == {"d0", "d1", "d2"}  # the compiled query ran


@pytest.mark.parametrize("pad", [0, 200_000])  # a long query fills the pipe the stopped helper never reads
def test_a_stopped_helper_is_given_up_after_the_timeout_and_the_query_is_parsed_here(fresh, monkeypatch, caplog, pad):
    query = QUERIES[0] + " " * pad
    expected = outcome(query)
    monkeypatch.setattr(lowering, "_memo", {})
    monkeypatch.setattr(lowering, "ANSWER_TIMEOUT_S", 1.0, raising=False)
    with caplog.at_level(logging.WARNING), lowering.elsewhere(start=True):
        assert lowering._helper is not None
        proc = lowering._helper.proc
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            assert outcome(query) == expected
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
    assert proc.returncode == -signal.SIGKILL  # killed, not left stopped
    assert any("did not answer within 1 s" in r.message for r in caplog.records)


def test_hub_run_in_one_process_never_imports_sqlglot(tmp_path):
    """``hub run`` loads the config and sees whether its queries split between worker processes before it
    starts it: those parse in the helper too, also when ``hub check`` passed the query before (the load then
    compiles nothing, the split does)."""
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"device": f"d{i % 3}", "value": i, "ts": i * 1000}) + "\n"
                                               for i in range(30)))
    q = "SELECT device, count(*) AS n FROM f GROUP BY device, TUMBLINGWINDOW(ss, 10)"
    (tmp_path / "hub.yaml").write_text(HUB.replace("QUERY", q))  # hub.workers: auto; a file sink: one process
    env = {**os.environ, "EDGESTREAM_CACHE_DIR": str(tmp_path / "cache")}
    check = subprocess.run([sys.executable, "-m", "edgestream_hub", "hub", "check", "-c", "hub.yaml"], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    script = textwrap.dedent("""
        import os, signal, sys, threading, time
        from edgestream_hub import __main__ as hub

        os.cpu_count = lambda: 2  # auto would split between two workers, were it not for the file sink

        def look():
            for _ in range(400):  # until the hub has written its rows (20 s at most)
                if os.path.exists("out.jsonl") and os.path.getsize("out.jsonl"):
                    break
                time.sleep(0.05)
            print("sqlglot" in sys.modules, flush=True)
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=look, daemon=True).start()
        sys.exit(hub.main(["hub", "run", "-c", "hub.yaml"]))
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False", out.stderr
    assert "one process (hub.workers: auto)" in out.stderr
    assert (tmp_path / "out.jsonl").read_text()


def test_a_load_after_one_whose_helper_failed_tries_a_helper_again(fresh, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(sys, "executable", "/nonexistent/python")
        with lowering.elsewhere(start=True):
            assert lowering._helper is None and lowering._helper_failed
            outcome(QUERIES[0])  # parsed here
    assert lowering._helper_failed  # as the failed load left it
    with lowering.elsewhere():
        outcome(QUERIES[3])
        assert lowering._helper is not None and not lowering._helper_failed


def test_a_helper_whose_compiler_files_differ_refuses_the_query_asking_for_a_restart(fresh, monkeypatch):
    monkeypatch.setattr(lowering, "_LOADED", b"0" * 16)  # as if the package was upgraded under this process
    with lowering.elsewhere(), pytest.raises(SqlError, match="changed on disk since the hub started"):
        lowering.lowered(QUERIES[0])
    assert QUERIES[0] not in lowering._memo  # not the query's fault: asked again after the restart


def test_a_reload_after_an_upgrade_is_refused_and_the_hub_goes_on(tmp_path):
    (tmp_path / "in.jsonl").write_text("")
    q1 = "SELECT device, count(*) AS n FROM f GROUP BY device, TUMBLINGWINDOW(ss, 10)"
    (tmp_path / "hub.yaml").write_text(HUB.replace("QUERY", q1))
    script = textwrap.dedent("""
        from pathlib import Path
        from edgestream_hub.service import HubService
        from edgestream_hub.sql import lowering
        from edgestream_hub.sql.errors import SqlError
        from edgestream_hub.sql.optimizer import compile_query
        svc = HubService("hub.yaml").start()
        lowering._LOADED = b"0" * 16  # the files on disk are no longer those this hub loaded
        cfg = Path("hub.yaml")
        cfg.write_text(cfg.read_text().replace("count(*) AS n", "count(*) AS k"))
        out = svc.reload_result()
        import sys
        try:  # and parsed here, outside a load: the same refusal
            compile_query("SELECT 1 AS one FROM f")
            here = "compiled"
        except SqlError as e:
            here = "refused" if "restart the hub" in str(e) else str(e)
        print(out["result"], here, "sqlglot" in sys.modules, out["error"].replace(chr(10), " "))
        svc.stop()
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result, here, loaded, error = out.stdout.strip().split(" ", 3)
    assert (result, here, loaded) == ("refused", "refused", "False")
    assert "restart the hub" in error and "processors[0].sql" in error
