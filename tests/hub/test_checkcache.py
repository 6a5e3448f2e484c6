"""``hub check`` remembers the SQL queries that compiled (edgestream_hub.checkcache): a check of the same
query under the same key compiles nothing; any change of what the compile reads is a miss; a refused query
is never remembered."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgestream_hub import checkcache
from edgestream_hub.config import load_config
from edgestream_hub.errors import ConfigError
from edgestream_hub.registry import Registry

CONFIG = """
sources: {{s: {{file: {{path: in.jsonl}}}}}}
sinks: {{out: {{file: {{path: out.jsonl}}}}}}
pipelines:
  p:
    from: s
    processors:
      - sql:
          query: "{query}"
          lateness: {lateness}
          tables: {{rooms: {{file: rooms.csv}}}}
    to: out
"""
QUERY = "SELECT s.device, r.room, count(*) AS n FROM s JOIN rooms r ON r.device = s.device " \
        "GROUP BY s.device, r.room, TUMBLINGWINDOW(ss, 10)"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("EDGESTREAM_CACHE_DIR", str(folder))
    (tmp_path / "in.jsonl").write_text("")
    (tmp_path / "rooms.csv").write_text("device,room\nd1,kitchen\n")
    return folder / "sql-checks"


@pytest.fixture
def compiles(monkeypatch):
    """How many times the SQL processor was built."""
    import edgestream_hub.sql.processor as proc

    n = [0]
    real = proc.SqlProcessor.__init__

    def counted(self, *a, **kw):
        n[0] += 1
        real(self, *a, **kw)

    monkeypatch.setattr(proc.SqlProcessor, "__init__", counted)
    return n


def check(tmp_path: Path, query: str = QUERY, lateness: str = "0ms", registry: Registry | None = None) -> None:
    load_config(text=CONFIG.format(query=query, lateness=lateness), env={}, base_dir=str(tmp_path),
                registry=registry or Registry.default(paths=[]))


def test_a_query_that_compiled_is_not_compiled_again(tmp_path, cache, compiles):
    check(tmp_path)
    assert compiles[0] == 1 and len(list(cache.iterdir())) == 1
    check(tmp_path)
    assert compiles[0] == 1


def test_a_change_of_anything_the_compile_reads_is_a_miss(tmp_path, cache, compiles):
    check(tmp_path)
    check(tmp_path, query=QUERY.replace("count(*) AS n", "count(*) AS m"))
    check(tmp_path, lateness="2s")
    assert compiles[0] == 3
    rooms = tmp_path / "rooms.csv"
    rooms.write_text("device,room,floor\nd1,kitchen,1\n")  # the table's columns changed
    os.utime(rooms, ns=(time.time_ns(), time.time_ns() + 10**9))
    check(tmp_path)
    assert compiles[0] == 4
    r = Registry.default(paths=[])
    r.register_function("twice", lambda v: 2 * v)
    check(tmp_path, registry=r)  # another set of functions
    assert compiles[0] == 5
    compiler = Path(checkcache.__file__).parent / "sql" / "windows.py"
    st = compiler.stat()
    try:
        os.utime(compiler, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the compiler changed
        check(tmp_path)
        assert compiles[0] == 6
    finally:
        os.utime(compiler, ns=(st.st_atime_ns, st.st_mtime_ns))
    check(tmp_path)
    assert compiles[0] == 6  # back as it was: the first entry again


def test_a_refused_query_is_compiled_every_time_and_says_why(tmp_path, cache, compiles):
    bad = QUERY.replace("count(*)", "nope(s.device)")
    for _ in range(2):
        with pytest.raises(ConfigError, match="unknown function 'nope'"):
            check(tmp_path, query=bad)
    assert compiles[0] == 2 and not cache.exists()


def test_off_and_an_unwritable_folder_mean_no_cache(tmp_path, cache, compiles, monkeypatch):
    monkeypatch.setenv("EDGESTREAM_CACHE_DIR", "off")
    check(tmp_path)
    check(tmp_path)
    assert compiles[0] == 2 and not cache.exists()
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("EDGESTREAM_CACHE_DIR", str(blocker))  # a file where the folder would go
    check(tmp_path)
    check(tmp_path)
    assert compiles[0] == 4


def test_entries_are_bounded_and_a_whole_key_must_match(tmp_path, cache, monkeypatch):
    monkeypatch.setattr(checkcache, "MAX_ENTRIES", 3)
    keys = [f'{{"k": {i}}}' for i in range(5)]
    for k in keys:
        checkcache.remember(k)
    assert len(list(cache.iterdir())) == 3
    assert checkcache.known(keys[-1]) and not checkcache.known(keys[0])
    path = checkcache._file(str(cache), keys[-1])
    Path(path).write_text(keys[-1] + " ")  # another key that landed in the same file
    assert not checkcache.known(keys[-1])


def test_hub_check_of_a_remembered_query_imports_no_sqlglot(tmp_path, cache):
    (tmp_path / "hub.yaml").write_text(CONFIG.format(query=QUERY, lateness="0ms"))
    probe = ("import sys, runpy; sys.argv = ['edgestream', 'hub', 'check', '-c', sys.argv[1]]\n"
             "from edgestream_tools.cli import main\nrc = main()\nprint('sqlglot' in sys.modules, rc)")
    env = {**os.environ, "EDGESTREAM_CACHE_DIR": str(cache.parent)}
    runs = [subprocess.run([sys.executable, "-c", probe, str(tmp_path / "hub.yaml")], env=env, capture_output=True,
                           text=True, timeout=60) for _ in range(2)]
    assert [r.stdout.split()[-2:] for r in runs] == [["True", "0"], ["False", "0"]], [r.stderr for r in runs]
