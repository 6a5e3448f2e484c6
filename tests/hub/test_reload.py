"""Hot reload: only what changed restarts, nothing is lost, a bad config is refused."""

from __future__ import annotations

from typing import NoReturn

from hubtest import PAUSE, wait_for

from edgestream_hub.engine import Engine
from edgestream_hub.service import HubService

CONFIG = """
hub: {watch: WATCH, watch_interval: 20ms}
sources:
  s: {script: {name: s, batch: 20}}
  t: {script: {name: t}}
sinks:
  out: {memory: {}, batch: {size: 50, linger: 1ms}}
  other: {memory: {}}
pipelines:
  p: {from: s, processors: [passthrough: {}], to: out}
  q: {from: t, processors: [{filter: {field: j, ge: 0}}], to: other}
"""


def service(hub, text: str, watch: bool = False) -> HubService:
    path = hub.tmp / "hub.yaml"
    path.write_text(text.replace("WATCH", "true" if watch else "false"))
    svc = HubService(str(path), env={}, registry=hub.registry).start()
    hub.engines.append(svc.engine)
    return svc


def engine(svc: HubService) -> Engine:
    assert svc.engine is not None  # started
    return svc.engine


def rewrite(hub, svc: HubService, old: str, new: str) -> None:
    path = hub.tmp / "hub.yaml"
    path.write_text(path.read_text().replace(old, new))


def test_changing_a_sink_restarts_only_that_sink_and_loses_nothing(hub):
    n = 30_000
    hub.scripts["s"] = [{"i": i} for i in range(n)]
    hub.scripts["t"] = [{"j": 1}]
    svc = service(hub, CONFIG)
    e = engine(svc)
    procs_p, procs_q = e.pipelines["p"].procs[0][1], e.pipelines["q"].procs[0][1]
    src_s, sink_out = e.sources["s"], e.sinks["out"]
    assert wait_for(lambda: len(hub.out.get("out", [])) > 0)
    rewrite(hub, svc, "batch: {size: 50, linger: 1ms}", "batch: {size: 70, linger: 1ms}")
    assert svc.reload()
    assert e.sinks["out"] is not sink_out and e.sinks["out"].batch_size == 70
    assert e.sources["s"] is src_s and src_s.started  # kept running
    assert e.pipelines["p"].procs[0][1] is procs_p and e.pipelines["q"].procs[0][1] is procs_q  # state kept
    assert wait_for(lambda: hub.sources["s"].pos >= n)
    assert svc.stop()
    got = [r["i"] for r in hub.out["out"]]
    assert len(got) == n and sorted(got) == list(range(n))
    assert svc.reloads == {"ok": 1, "refused": 0, "failed": 0}


def test_changing_a_pipeline_restarts_only_that_pipeline(hub):
    hub.scripts["s"] = [{"i": i} for i in range(5000)] + [PAUSE] + [{"i": i} for i in range(5000, 10_000)]
    hub.scripts["t"] = [{"j": 1}]
    svc = service(hub, CONFIG)
    e = engine(svc)
    p_before, q_before = e.pipelines["p"], e.pipelines["q"]
    assert wait_for(lambda: len(hub.out.get("out", [])) > 0)
    rewrite(hub, svc, "processors: [passthrough: {}]", "processors: [{map: {set: {v: 2}}}]")
    assert svc.reload()
    hub.resume["s"].set()
    assert e.pipelines["p"] is not p_before and e.pipelines["q"] is q_before
    assert wait_for(lambda: hub.sources["s"].pos >= 10_000)
    assert svc.stop()
    got = hub.out["out"]
    assert sorted(r["i"] for r in got) == list(range(10_000))
    assert got[-1]["v"] == 2  # the new processor took over
    assert hub.out["other"] == [{"j": 1}]


def test_a_bad_config_is_refused_and_the_running_one_keeps_going(hub, caplog):
    hub.scripts["s"] = [{"i": 0}]
    hub.scripts["t"] = []
    svc = service(hub, CONFIG)
    e = engine(svc)
    before = dict(e.pipelines)
    rewrite(hub, svc, "to: out", "to: nowhere")
    assert not svc.reload()
    assert "pipelines.p.to[0]: line 10: 'nowhere' is not defined in sinks" in caplog.text
    assert e.pipelines == before
    hub.scripts["s"].append({"i": 1})
    assert wait_for(lambda: len(hub.out.get("out", [])) == 2)
    assert e.metrics.value("edgestream_hub_config_reloads_total", result="refused") == 1
    assert svc.stop()


def test_a_file_change_is_picked_up_by_the_watcher(hub):
    hub.scripts["s"] = []
    hub.scripts["t"] = []
    svc = service(hub, CONFIG, watch=True)
    import threading

    runner = threading.Thread(target=svc.run, daemon=True)
    runner.start()
    rewrite(hub, svc, "other: {memory: {}}", "other: {memory: {}, label: other2}")
    assert wait_for(lambda: svc.reloads["ok"] == 1)
    assert engine(svc).sinks["other"].label == "other2"
    svc.stop_requested.set()
    runner.join(10)
    assert not runner.is_alive()


def test_adding_and_removing_components(hub):
    hub.scripts["s"] = [{"i": 1}]
    hub.scripts["t"] = []
    hub.scripts["u"] = [{"k": 1}]
    svc = service(hub, CONFIG)
    rewrite(hub, svc, "  q: {from: t, processors: [{filter: {field: j, ge: 0}}], to: other}\n",
            "  r: {from: u, to: other}\n")
    rewrite(hub, svc, "  t: {script: {name: t}}", "  u: {script: {name: u}}")
    assert svc.reload()
    e = engine(svc)
    assert set(e.pipelines) == {"p", "r"} and set(e.sources) == {"s", "u"}
    assert wait_for(lambda: hub.out.get("other") == [{"k": 1}])
    assert svc.stop()


def _hostile_reloads():
    from hubtest import ALIAS_BOMB, deep_yaml

    sql = "filter: {field: j, ge: 0}"
    ors = " OR ".join(f"j = {i}" for i in range(2500))  # past the documented bound on chained terms
    return {
        "latin-1 comment": lambda text: text.encode() + b"# temperature in \xb0C\n",
        "3000 levels deep": lambda text: text.encode() + deep_yaml(3000).split(b"\n")[-2] + b"\n",
        "alias bomb": lambda text: ALIAS_BOMB.split(b"sources:")[0] + text.encode(),
        "over 1 MiB": lambda text: text.encode() + b"#" * (1 << 20),
        "an empty WINDOW clause": lambda text: text.replace(sql, 'sql: "SELECT j FROM s WINDOW w AS ()"').encode(),
        "a number cut short": lambda text: text.replace(sql, 'sql: "SELECT j FROM s WHERE j = 1e"').encode(),
        "2500 ORs": lambda text: text.replace(sql, f'sql: "SELECT j FROM s WHERE {ors}"').encode(),
    }


def test_no_bad_file_ends_the_running_hub(hub, caplog):
    hub.scripts["s"] = [{"i": 0}]
    hub.scripts["t"] = []
    svc = service(hub, CONFIG)
    e = engine(svc)
    good = (hub.tmp / "hub.yaml").read_text()
    cases = _hostile_reloads()
    for name, make in cases.items():
        (hub.tmp / "hub.yaml").write_bytes(make(good))
        assert not svc.reload(), name
        assert "config reload refused" in caplog.text, name
        caplog.clear()
    assert svc.reloads == {"ok": 0, "refused": len(cases), "failed": 0}
    assert e.metrics.value("edgestream_hub_config_reloads_total", result="refused") == len(cases)
    hub.scripts["s"].append({"i": 1})
    assert wait_for(lambda: len(hub.out.get("out", [])) == 2)  # still running
    assert svc.stop()


def test_any_exception_while_loading_a_reload_refuses_it(hub, caplog):
    hub.scripts["s"] = []
    hub.scripts["t"] = []
    svc = service(hub, CONFIG)

    def broken(text: str | None = None) -> NoReturn:
        raise RuntimeError("a bug in a plugin's check")

    svc.load = broken  # type: ignore[method-assign]
    assert not svc.reload()
    assert "config reload refused, the running config keeps going" in caplog.text
    assert "RuntimeError: a bug in a plugin's check" in caplog.text
    assert svc.reloads["refused"] == 1
    assert svc.stop()


def test_the_config_watcher_survives_a_crash_and_says_so(hub, caplog, monkeypatch):
    import threading

    from edgestream_hub import service as service_module

    hub.scripts["s"] = []
    hub.scripts["t"] = []
    real = service_module._stat
    crashes = [2]

    def flaky(path):
        if crashes[0] and threading.current_thread().name == "config-watch":
            crashes[0] -= 1
            raise RuntimeError("stat exploded")
        return real(path)

    monkeypatch.setattr(service_module, "_stat", flaky)
    svc = service(hub, CONFIG, watch=True)
    runner = threading.Thread(target=svc.run, daemon=True)
    runner.start()
    assert wait_for(lambda: not crashes[0])
    rewrite(hub, svc, "other: {memory: {}}", "other: {memory: {}, label: other2}")
    assert wait_for(lambda: svc.reloads["ok"] == 1)  # still watching
    svc.stop_requested.set()
    runner.join(10)
    assert not runner.is_alive()
    crashed = [r for r in caplog.records if "config watch crashed" in r.getMessage()]
    assert crashed and crashed[0].levelname == "ERROR" and crashed[0].exc_info is not None
    assert "RuntimeError: stat exploded" in crashed[0].getMessage()


def test_a_reload_that_changes_the_split_says_the_next_start_refuses_the_state(hub, caplog):
    # `hub.workers` is read at start, and a start with another split of the state is refused (exit 2): the
    # reload must say so, not only that it waits for the next start
    hub.scripts["s"] = []
    hub.scripts["t"] = []
    svc = service(hub, CONFIG)
    rewrite(hub, svc, "hub: {", "hub: {workers: 1, ")
    assert svc.reload()
    assert "hub.workers, hub.partitions and hub.take take effect at the next start" in caplog.text
    assert "refuses the state" in caplog.text and "edgestream state reset --all" in caplog.text
    assert svc.stop()
