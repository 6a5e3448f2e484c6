"""The generated config reference must match the specs."""

from __future__ import annotations

from pathlib import Path

from edgestream_hub.docs import reference

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_config_reference_is_up_to_date():
    text = (DOCS / "config-reference.md").read_text()
    stale = "docs/config-reference.md is stale: run  edgestream hub docs -o docs/config-reference.md"
    assert text == reference(), stale


def test_every_metric_is_documented():
    from edgestream_hub.metrics import METRICS

    hub_md = (DOCS / "hub.md").read_text()
    missing = [name for name, _, _ in METRICS if name not in hub_md]
    assert not missing, f"metrics missing from docs/hub.md: {missing}"
