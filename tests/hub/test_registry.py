"""Registry: validation at registration, entry points, the example plugin in a pipeline."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hubtest import PLUGIN_DIR, Harness, wait_for

from edgestream_hub.errors import PluginError
from edgestream_hub.processors import passthrough
from edgestream_hub.registry import Registry, component
from edgestream_hub.spec import Spec


def test_builtins_register_through_entry_points():
    r = Registry.default(paths=[])
    assert r.names("source") == ["file", "http", "mqtt", "serial"]
    assert {"passthrough", "filter", "map", "sql"} <= set(r.names("processor"))
    assert r.names("sink") == ["file", "http", "log", "mqtt", "sqlite", "stdout"]
    file_sink = r.get("sink", "file")
    assert file_sink is not None and file_sink.origin == "edgestream_hub.connectors.files:file_sink (edgestream)"


def test_duplicate_names_are_refused_naming_both():
    r = Registry.default(paths=[])

    @component(Spec("file", "Another file sink.", []))
    def other(cfg, ctx):
        return None

    with pytest.raises(PluginError) as e:
        r.register("sink", "file", other, origin="acme_plugin:other (acme)")
    msg = str(e.value)
    assert "plugin 'file'" in msg and "edgestream_hub.connectors.files:file_sink (edgestream)" in msg
    assert "acme_plugin:other (acme)" in msg
    r.register("processor", "passthrough", passthrough)  # the same factory again is not a duplicate
    with pytest.raises(PluginError, match="duplicate function name: claimed by a and by b"):
        r.register_function("f", len, "a")
        r.register_function("f", abs, "b")


def test_a_factory_without_a_spec_is_refused_at_registration():
    r = Registry()
    with pytest.raises(PluginError, match="processor factory from code has no config spec"):
        r.register("processor", "nospec", lambda cfg, ctx: None)
    with pytest.raises(PluginError, match="unknown component kind"):
        r.register("widget", "w", passthrough)


def test_the_example_plugin_loads_from_its_entry_points():
    r = Registry.default(paths=[PLUGIN_DIR])
    t = r.get("processor", "threshold")
    assert t is not None and t.origin == "edgestream_plugin_example:threshold (edgestream-plugin-example)"
    assert r.functions["c_to_f"](100) == 212


def test_a_broken_plugin_names_itself(tmp_path):
    d = tmp_path / "broken-0.1.dist-info"
    d.mkdir()
    (d / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 0.1\n")
    (d / "entry_points.txt").write_text("[edgestream.sinks]\nblackhole = no_such_module:sink\n")
    with pytest.raises(PluginError, match=r"plugin 'blackhole': cannot load no_such_module:sink \(broken\)"):
        Registry.default(paths=[str(tmp_path)])


def test_the_plugin_processor_runs_in_a_pipeline(tmp_path):
    h = Harness(tmp_path)
    h.registry = h.make_registry(paths=[PLUGIN_DIR])
    h.scripts["s"] = [{"t": 1}, {"t": 30}, {"t": "hot"}, {"t": 25.5}]
    try:
        e = h.engine("""
hub: {dead_letter: dlq}
sources: {s: {script: {name: s}}}
sinks: {out: {memory: {}}, dlq: {memory: {}}}
pipelines:
  p: {from: s, processors: [{threshold: {field: t, above: 20}, label: warm}], to: out}
""")
        assert wait_for(lambda: len(h.out.get("out", [])) == 2 and len(h.out.get("dlq", [])) == 1)
        assert e.stop()
        assert h.out["out"] == [{"t": 30}, {"t": 25.5}]
        assert h.out["dlq"][0]["component"] == "warm" and "expected a number" in h.out["dlq"][0]["reason"]
    finally:
        h.close()


def test_hub_plugins_lists_an_installed_plugin():
    import os

    env = {**os.environ, "PYTHONPATH": PLUGIN_DIR + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, "-m", "edgestream_tools.cli", "hub", "plugins"], capture_output=True,
                       text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    assert "threshold" in r.stdout and "c_to_f" in r.stdout and "mqtt" in r.stdout


def _by_importlib_metadata(paths, groups):
    from importlib import metadata

    return [(ep.group, ep.name, ep.value, d.metadata["Name"] or "?") for d in metadata.distributions(path=paths)
            for ep in d.entry_points if ep.group in groups]


def test_entry_points_are_read_as_importlib_metadata_reads_them(tmp_path):
    """The registry reads distributions' entry points itself (importing importlib.metadata is a sixth of `hub
    check`): the same entry points, names and order, for every group on this interpreter's path and for
    distributions laid out in every way it reads (egg-info, an .egg folder, a zip, comments, no METADATA)."""
    import sys
    import zipfile

    from edgestream_hub.registry import _entry_points

    def dist(folder, meta, eps):
        folder.mkdir(parents=True)
        if meta is not None:
            (folder / ("PKG-INFO" if folder.name.endswith("egg-info") else "METADATA")).write_text(meta)
        (folder / "entry_points.txt").write_text(eps)

    eps = "# a comment\n; another\n[edgestream.sinks]\n  b = m.x:y [extra]\n\n[other]\nc=d\n"
    dist(tmp_path / "Zeta.Pkg-1.0.dist-info", "Metadata-Version: 2.1\nName: Zeta.Pkg\nVersion: 1.0\n\nName: no\n",
         eps)
    dist(tmp_path / "alpha_pkg-2.0.dist-info", None, "[edgestream.sources]\na = m:f\n")
    dist(tmp_path / "alpha-pkg-1.0.egg-info", "Name: alpha-pkg\n", "[edgestream.sources]\na2 = m:g\n")
    dist(tmp_path / "old-0.1.egg" / "EGG-INFO", "Name: old\n", "[edgestream.processors]\np = m:h\n")
    with zipfile.ZipFile(tmp_path / "zipped.zip", "w") as z:
        z.writestr("zipped-1.0.dist-info/METADATA", "Name: zipped\n")
        z.writestr("zipped-1.0.dist-info/entry_points.txt", "[edgestream.sinks]\nz = zz:z\n")
    paths = [str(tmp_path), str(tmp_path / "old-0.1.egg"), str(tmp_path / "zipped.zip"), str(tmp_path / "none")]
    groups = {"edgestream.sinks", "edgestream.sources", "edgestream.processors", "other"}
    got = list(_entry_points(paths, groups))
    assert got == _by_importlib_metadata(paths, groups)
    assert {n for _, n, _, _ in got} == {"a", "a2", "b", "c", "p", "z"}
    every = {ep.group for d in __import__("importlib.metadata").metadata.distributions() for ep in d.entry_points}
    assert list(_entry_points(sys.path, every)) == _by_importlib_metadata(sys.path, every)


def test_an_entry_point_line_that_is_not_name_equals_value_names_its_file(tmp_path):
    d = tmp_path / "bad-0.1.dist-info"
    d.mkdir()
    (d / "entry_points.txt").write_text("[edgestream.sinks]\nblackhole\n")
    with pytest.raises(PluginError, match=r"plugin 'bad-0.1.dist-info': .*entry_points.txt: 'blackhole' is not "):
        Registry.default(paths=[str(tmp_path)])
