"""The generated config reference must match the specs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edgestream_hub.docs import reference

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_config_reference_is_up_to_date():
    text = (DOCS / "config-reference.md").read_text()
    stale = "docs/config-reference.md is stale: run  edgestream hub docs -o docs/config-reference.md"
    assert text == reference(), stale


def test_every_metric_is_documented():
    from edgestream_hub.metrics import METRICS, STATE_METRICS

    hub_md = (DOCS / "hub.md").read_text()
    missing = [m[0] for m in [*METRICS, *STATE_METRICS] if f"`{m[0]}`" not in hub_md]
    assert not missing, f"metrics missing from docs/hub.md: {missing}"


def test_every_device_metric_and_listed_key_is_documented():
    from edgestream_hub.devices import PUBLIC_KEYS
    from edgestream_hub.metrics import DEVICE_METRICS, DEVICES_METRICS

    devices = (DOCS / "hub.md").read_text().split("## Devices", 1)[1].split("\n## ", 1)[0]
    names = [m[0] for m in DEVICE_METRICS] + [m[0] for m in DEVICES_METRICS]
    assert not [n for n in names if f"`{n}`" not in devices]
    assert not [k for k in PUBLIC_KEYS if f"`{k}`" not in devices]
    listed = devices.split("prints one JSON object per line with the keys of the table above, in that order:", 1)[1]
    order = [listed.index(f"`{k}`") for k in PUBLIC_KEYS]
    assert order == sorted(order), "the --json keys are listed in their order"


@pytest.mark.parametrize("args", [["-o", "missing/config-reference.md"], ["-o", "."], ["-o", ".", "--check"]])
def test_docs_output_that_cannot_be_written_is_a_located_error(args, tmp_path):
    edgestream = Path(sys.executable).parent / "edgestream"
    r = subprocess.run([str(edgestream), "hub", "docs", *args], cwd=tmp_path, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr.startswith("edgestream hub docs: cannot "), r.stderr
    assert args[1] in r.stderr and "Traceback" not in r.stderr, r.stderr
