"""The Grafana dashboard and the Prometheus files in tools/ name only metrics the hub exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from edgestream_hub.config import load_config
from edgestream_hub.engine import Engine
from edgestream_hub.wire import SeqStats
from edgestream_shared.decoder import decode
from edgestream_shared.encoder import Encoder, encode_ack, encode_metrics, encode_status

TOOLS = Path(__file__).resolve().parents[2] / "tools"
METRIC = re.compile(r"\bedgestream_[a-z0-9_]+\b")


def exported(tmp_path: Path) -> set[str]:
    """Sample names a hub with a devices section exports once a device reported everything."""
    cfg = tmp_path / "hub.yaml"
    cfg.write_text(f"""
sources: {{board: {{serial: {{port: {tmp_path}/no-such-port, reopen_min: 1s}}}}}}
sinks: {{out: {{stdout: {{}}}}}}
pipelines: {{p: {{from: board, to: out}}}}
devices:
  desired: {{d1: {{version: 2, sensors: [{{name: t, period_ms: 10, source: {{type: sim}}}}]}}}}
""")
    e = Engine(load_config(cfg)).start()
    try:
        r = Encoder("d1", 1)
        r.begin(b"results")
        r.add_result(0, b"t", b"w", 0, 1000, [b"count"], [3])
        for msg in (encode_status("d1", 1, "online"), bytes(r.finish()), encode_ack("d1", 1, 1, True),
                    encode_metrics("d1", 1, {"heap_free": 5000, "lag_max_ms": 3, "link_failures": 0,
                                             "results_sent": 1, "results_dropped": 0, "results_resent": 0,
                                             "config_version": 1})):
            e.devices.observe("board", decode(msg), 1, SeqStats())
        text = generate_latest(e.metrics.registry).decode()
    finally:
        e.stop(5)
    return {s.name for fam in text_string_to_metric_families(text) for s in fam.samples}


def exprs(node) -> list[str]:
    """Every PromQL expression in a Grafana dashboard (targets and template queries)."""
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("expr", "definition") and isinstance(v, str) or k == "query" and isinstance(v, str):
                out.append(v)
            else:
                out += exprs(v)
    elif isinstance(node, list):
        for v in node:
            out += exprs(v)
    return out


def test_the_dashboard_and_the_alerts_name_only_exported_metrics(tmp_path):
    have = exported(tmp_path)
    dash = json.loads((TOOLS / "grafana" / "edgestream-devices.json").read_text())
    alerts = yaml.safe_load((TOOLS / "prometheus" / "alerts.yml").read_text())
    queries = exprs(dash) + [r["expr"] for g in alerts["groups"] for r in g["rules"]]
    assert len(queries) >= 20
    named = {m for q in queries for m in METRIC.findall(q)}
    assert named and named <= have, sorted(named - have)
    # every per-device metric has a panel
    per_device = {n for n in have if n.startswith("edgestream_device_")}
    assert per_device <= named, sorted(per_device - named)


def test_the_dashboard_is_importable_grafana_json():
    dash = json.loads((TOOLS / "grafana" / "edgestream-devices.json").read_text())
    assert dash["uid"] and dash["schemaVersion"] >= 30 and dash["panels"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        assert p["targets"] and all(t["expr"] for t in p["targets"]) and set(p["gridPos"]) == {"x", "y", "w", "h"}


def test_the_scrape_config_loads_the_alerts():
    scrape = yaml.safe_load((TOOLS / "prometheus" / "scrape.yml").read_text())
    assert scrape["rule_files"] == ["alerts.yml"]
    job = scrape["scrape_configs"][0]
    assert job["metrics_path"] == "/metrics" and re.match(r"^[\w.-]+:\d+$", job["static_configs"][0]["targets"][0])
    alerts = yaml.safe_load((TOOLS / "prometheus" / "alerts.yml").read_text())
    names = [r["alert"] for g in alerts["groups"] for r in g["rules"]]
    assert "EdgeStreamDeviceDroppingData" in names and len(names) == len(set(names))
