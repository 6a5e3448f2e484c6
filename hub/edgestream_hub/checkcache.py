"""SQL queries ``hub check`` compiled without error, remembered on disk so the next check need not import
sqlglot (~80 ms, most of a check) to compile the same query again.

An entry is kept only for a query that compiled, under a key that holds everything the compile reads:
the processor's config (the query and its options, the lookup tables' settings), each lookup table's
file (path, size, modification time), the registered SQL functions and where each comes from (with its
module file's size and time), the files of the hub's SQL compiler, sqlglot's version and install, and
the Python version. A change in any of them is a miss; a refused query is never kept (it is compiled
again, so its error is exact); ``hub run`` always compiles. A key that cannot be made (a table or module
file that cannot be read) means no caching.

Entries live in ``$EDGESTREAM_CACHE_DIR/sql-checks`` (default ``$XDG_CACHE_HOME/edgestream`` or
``~/.cache/edgestream``), one small file per query holding its key (a lookup compares the whole key, so
two keys never share a verdict), at most ``MAX_ENTRIES`` (the oldest go). ``EDGESTREAM_CACHE_DIR=off``
turns it off. A cache that cannot be read or written is no cache.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

__all__ = ["key", "known", "remember", "MAX_ENTRIES"]

MAX_ENTRIES = 256
_HERE = os.path.dirname(os.path.abspath(__file__))


def _folder() -> str | None:
    base = os.environ.get("EDGESTREAM_CACHE_DIR")
    if base == "off":
        return None
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        base = os.path.join(xdg, "edgestream")
    return os.path.join(base, "sql-checks")


def _stat(path: str) -> list[Any]:
    st = os.stat(path)
    return [path, st.st_size, st.st_mtime_ns]


def _compiler() -> list[Any]:
    """The hub's SQL compiler files (and this file and the processors that build it)."""
    sql = os.path.join(_HERE, "sql")
    files = sorted(e.path for e in os.scandir(sql) if e.name.endswith(".py"))
    files += [os.path.join(_HERE, name) for name in ("processors.py", "registry.py", "checkcache.py")]
    return [_stat(f) for f in files]


def _sqlglot() -> list[Any]:
    """sqlglot's version and install, found as an import would find it (without importing it)."""
    for entry in sys.path:
        pkg = os.path.join(entry or ".", "sqlglot")
        init = os.path.join(pkg, "__init__.py")
        if os.path.isfile(init):
            with open(os.path.join(pkg, "_version.py"), encoding="utf-8") as f:
                version = f.read()
            return [version, _stat(pkg), _stat(init)]
    raise OSError("sqlglot not found on sys.path")


def _functions(registry: Any) -> list[Any]:
    """Each registered SQL function, where it comes from and its module file."""
    if registry is None:
        return []
    out = []
    for name, fn in sorted(registry.functions.items()):
        module = sys.modules.get(getattr(fn, "__module__", None) or "")
        path = getattr(module, "__file__", None)
        out.append([name, registry.function_origin(name), getattr(fn, "__qualname__", repr(fn)),
                    _stat(path) if path else None])
    return out


def key(cfg: dict[str, Any], registry: Any) -> str | None:
    """The key of a SQL processor's (parsed) config, or None if one cannot be made."""
    try:
        tables = []
        for t in (cfg.get("tables") or {}).values():
            path = t.get("file") or (t.get("sqlite") or {}).get("path")
            tables.append(_stat(str(path)) if path else None)
        return json.dumps({"config": cfg, "tables": tables, "functions": _functions(registry),
                           "compiler": _compiler(), "sqlglot": _sqlglot(),
                           "python": [sys.version, sys.implementation.cache_tag]}, sort_keys=True, default=str)
    except (OSError, TypeError, ValueError):
        return None


def _file(folder: str, k: str) -> str:
    import zlib

    return os.path.join(folder, f"{zlib.crc32(k.encode()):08x}-{len(k)}.json")  # k is ASCII (json.dumps)


def known(k: str | None) -> bool:
    """Whether a query with key ``k`` compiled before."""
    folder = _folder()
    if k is None or folder is None:
        return False
    try:
        with open(_file(folder, k), encoding="utf-8") as f:
            return f.read() == k
    except (OSError, ValueError):
        return False


def remember(k: str | None) -> None:
    """Keep ``k`` as a query that compiled (best effort: a cache that cannot be written is no cache)."""
    folder = _folder()
    if k is None or folder is None:
        return
    try:
        os.makedirs(folder, exist_ok=True)
        path = _file(folder, k)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(k)
        os.replace(tmp, path)
        entries = [e for e in os.scandir(folder) if e.name.endswith(".json")]
        if len(entries) > MAX_ENTRIES:
            entries.sort(key=lambda e: e.stat().st_mtime_ns)
            for e in entries[:len(entries) - MAX_ENTRIES]:
                os.unlink(e.path)
    except OSError:
        pass
