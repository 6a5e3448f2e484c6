"""Keep the ``package.json`` files (for ``mip``) in step with the manifests.

Each is made from a manifest by MicroPython's own manifest tool: the same
files, the same version. ``mip`` resolves a relative URL in ``urls`` against
the folder of the ``package.json`` it read (a local path, a ``github:`` or an
``http`` URL alike) but resolves ``deps`` as given: a relative dependency is
looked up from wherever the installer runs. So each ``package.json`` lists
every file it needs, relative to its own folder and never above it: the
agent's (everything, with the shared package) is at the repository's root::

    mpremote mip install github:<org>/<repo>                 # the agent and shared
    mpremote mip install /path/to/checkout/package.json      # the same, from any folder
    mpremote mip install github:<org>/<repo>/shared          # the wire protocol only

``python -m edgestream_tools.packages`` rewrites them; a test fails when one is stale.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from edgestream_tools import boardbuild

ROOT = boardbuild.ROOT
#: package.json (relative to the repository) -> the manifest it installs.
UNITS: dict[str, str] = {"package.json": "agent/manifest.py", "shared/package.json": "shared/manifest.py"}


def package_json(unit: str) -> dict:
    """The mip package.json of one unit: URLs relative to its folder, so it installs from wherever it is hosted."""
    base = (ROOT / unit).parent
    m = boardbuild.resolve_manifest(ROOT / UNITS[unit])
    urls = []
    for f in sorted(m.files(), key=lambda f: f.target_path):
        rel = Path(os.path.relpath(f.full_path, base)).as_posix()
        if rel.startswith("../"):
            raise boardbuild.BoardBuildError(f"{unit}: {f.full_path} is outside its folder: mip cannot fetch it")
        urls.append([f.target_path, rel])
    return {"urls": urls, "version": m.metadata().version}


def write_all() -> None:
    for unit in UNITS:
        (ROOT / unit).write_text(json.dumps(package_json(unit), indent=2) + "\n")


if __name__ == "__main__":
    write_all()
