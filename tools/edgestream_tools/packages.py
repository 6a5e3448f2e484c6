"""Keep the device packages' ``package.json`` (for ``mip``) in step with their sources.

``python -m edgestream_tools.packages`` rewrites them; a test fails when one is stale.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UNITS = {"shared": "edgestream_shared", "agent": "edgestream_agent"}
VERSION = "0.1.0"


def package_json(unit: str) -> dict:
    """The mip package.json of one unit: relative URLs, so it installs from wherever it is hosted."""
    base = ROOT / unit
    files = sorted(p.relative_to(base).as_posix() for p in (base / UNITS[unit]).rglob("*.py"))
    doc: dict = {"urls": [[f, f] for f in files], "version": VERSION}
    if unit == "agent":
        doc["deps"] = [["../shared/package.json", "latest"]]
    return doc


def write_all() -> None:
    for unit in UNITS:
        (ROOT / unit / "package.json").write_text(json.dumps(package_json(unit), indent=2) + "\n")


if __name__ == "__main__":
    write_all()
