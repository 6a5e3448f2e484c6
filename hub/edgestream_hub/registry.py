"""The plugin registry: source, processor and sink factories plus SQL functions, by name.

A ``Registry`` is an instance (tests build a fresh one; every API takes
``registry=``). It is filled from entry points (``edgestream.sources``,
``edgestream.processors``, ``edgestream.sinks``, ``edgestream.functions``);
built-ins register through the same entry points. Each factory is checked
when it is registered: a duplicate name is refused naming both claimants, a
factory without a config ``Spec`` is refused.

A factory is any callable ``factory(config: dict, ctx) -> component`` that
carries its spec as ``factory.spec``; the ``component(spec)`` decorator sets it::

    @component(Spec("double", "Doubles a field.", [Field("field", "str", "Field to double.")]))
    def double(config, ctx):
        return DoubleProcessor(config["field"])
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from typing import Any, Callable, Iterable, Iterator, NamedTuple

from edgestream_hub.errors import PluginError
from edgestream_hub.spec import Spec

KINDS = ("source", "processor", "sink")
GROUPS = {
    "source": "edgestream.sources",
    "processor": "edgestream.processors",
    "sink": "edgestream.sinks",
    "function": "edgestream.functions",
}

#: The built-ins, as entry points. pyproject.toml declares the same lines; this
#: table keeps a stale install (metadata without them) working.
BUILTINS: dict[str, dict[str, str]] = {
    "edgestream.sources": {
        "mqtt": "edgestream_hub.connectors.mqtt:mqtt_source",
        "serial": "edgestream_hub.connectors.serial_port:serial_source",
        "file": "edgestream_hub.connectors.files:file_source",
        "http": "edgestream_hub.connectors.http:http_source",
    },
    "edgestream.processors": {
        "passthrough": "edgestream_hub.processors:passthrough",
        "filter": "edgestream_hub.processors:filter_processor",
        "map": "edgestream_hub.processors:map_processor",
        "sql": "edgestream_hub.processors:sql_processor",
    },
    "edgestream.sinks": {
        "file": "edgestream_hub.connectors.files:file_sink",
        "sqlite": "edgestream_hub.connectors.sqlite:sqlite_sink",
        "http": "edgestream_hub.connectors.http:http_sink",
        "mqtt": "edgestream_hub.connectors.mqtt:mqtt_sink",
        "stdout": "edgestream_hub.connectors.stdout:stdout_sink",
        "log": "edgestream_hub.connectors.stdout:log_sink",
    },
    "edgestream.functions": {},
}


def component(spec: Spec) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: attach the config spec a factory is registered with."""

    def wrap(factory: Callable[..., Any]) -> Callable[..., Any]:
        factory.spec = spec  # type: ignore[attr-defined]  # a function takes attributes; read back by getattr
        return factory

    return wrap


class ComponentType(NamedTuple):
    """A registered factory: what ``{name: {...}}`` in a config builds."""

    kind: str
    name: str
    spec: Spec
    factory: Callable[..., Any]
    origin: str  # "module:attr (distribution)" or "code"


class Registry:
    """Factories by kind and name, plus SQL functions. Refuses duplicates and spec-less factories."""

    def __init__(self) -> None:
        self._types: dict[str, dict[str, ComponentType]] = {k: {} for k in KINDS}
        self.functions: dict[str, Callable[..., Any]] = {}
        self._function_origins: dict[str, str] = {}

    @classmethod
    def default(cls, paths: Iterable[str] | None = None) -> "Registry":
        """Built-ins and every installed plugin (``paths`` limits the search, as ``sys.path`` would)."""
        r = cls()
        r.load_entry_points(paths)
        return r

    def register(self, kind: str, name: str, factory: Callable[..., Any], *, spec: Spec | None = None,
                 origin: str = "code") -> ComponentType:
        """Register one factory; raises PluginError for a duplicate or a missing spec."""
        if kind not in KINDS:
            raise PluginError(name, f"unknown component kind {kind!r} (expected one of {', '.join(KINDS)})")
        if not isinstance(name, str) or not name.isidentifier():
            raise PluginError(str(name), "a component name must be an identifier")
        spec = spec if spec is not None else getattr(factory, "spec", None)
        if not isinstance(spec, Spec):
            raise PluginError(name, f"{kind} factory from {origin} has no config spec "
                                    "(decorate it with edgestream_hub.registry.component(Spec(...)))")
        if not callable(factory):
            raise PluginError(name, f"{kind} factory from {origin} is not callable")
        have = self._types[kind].get(name)
        if have is not None:
            if have.factory is factory:
                return have
            raise PluginError(name, f"duplicate {kind} name: claimed by {have.origin} and by {origin}")
        t = ComponentType(kind, name, spec, factory, origin)
        self._types[kind][name] = t
        return t

    def register_function(self, name: str, fn: Callable[..., Any], origin: str = "code") -> None:
        """Register a SQL function (UDF); duplicates are refused naming both."""
        if not callable(fn):
            raise PluginError(name, f"function from {origin} is not callable")
        have = self.functions.get(name)
        if have is not None and have is not fn:
            raise PluginError(name, f"duplicate function name: claimed by {self._function_origins[name]} "
                                    f"and by {origin}")
        self.functions[name] = fn
        self._function_origins[name] = origin

    def function_origin(self, name: str) -> str:
        """Where the SQL function ``name`` was registered from (``module:attr (distribution)`` or ``code``)."""
        return self._function_origins.get(name, "code")

    def get(self, kind: str, name: str) -> ComponentType | None:
        return self._types[kind].get(name)

    def names(self, kind: str) -> list[str]:
        return sorted(self._types[kind])

    def types(self, kind: str) -> list[ComponentType]:
        return [self._types[kind][n] for n in self.names(kind)]

    # -- entry points --
    def load_entry_points(self, paths: Iterable[str] | None = None, builtins: bool = True) -> None:
        """Register the four entry-point groups: built-ins first, then the distributions
        found on ``paths`` (default: ``sys.path``)."""
        seen: dict[tuple[str, str], str] = {}
        found: list[tuple[str, str, str, str]] = []  # group, name, value, dist
        if builtins:
            for group, table in BUILTINS.items():
                for name, value in table.items():
                    found.append((group, name, value, "edgestream"))
        found.extend(_entry_points(list(paths) if paths is not None else sys.path, set(GROUPS.values())))
        for group, name, value, dname in found:
            key = (group, name)
            if seen.get(key) == value:
                continue  # the same claim seen twice (built-in table and installed metadata)
            seen.setdefault(key, value)
            self._register_entry_point(group, name, value, dname)

    def _register_entry_point(self, group: str, name: str, value: str, dist: str) -> None:
        origin = f"{value} ({dist})"
        kind = next(k for k, g in GROUPS.items() if g == group)
        if kind != "function":
            have = self._types[kind].get(name)
            if have is not None and have.origin != origin:
                raise PluginError(name, f"duplicate {kind} name: claimed by {have.origin} and by {origin}")
        try:
            obj = _load(value)
        except Exception as e:
            raise PluginError(name, f"cannot load {origin}: {type(e).__name__}: {e}") from e
        if kind == "function":
            self.register_function(name, obj, origin)
        else:
            self.register(kind, name, obj, origin=origin)


# -- entry points, read as importlib.metadata reads them (importing it costs ~14 ms: a sixth of `hub check`) --

def _entry_points(paths: list[str], groups: set[str]) -> Iterator[tuple[str, str, str, str]]:
    """``(group, name, value, distribution)`` of every entry point in ``groups`` of the distributions on
    ``paths``, in the order ``importlib.metadata.distributions(path=paths)`` yields them: per path entry, its
    ``*.dist-info`` and ``*.egg-info`` folders grouped by normalised project name in listing order (then the
    ``EGG-INFO`` of an ``.egg`` folder). A path entry that is not a folder (a zip) is left to importlib.metadata.
    A distribution's name is read only when it has such entry points."""
    for root in paths:
        try:
            children = os.listdir(root or ".")
        except OSError:
            if os.path.isfile(root):  # a zip (a missing path entry holds nothing, as for importlib.metadata)
                yield from _zip_entry_points(root, groups)
            continue
        infos: dict[str, list[str]] = {}
        eggs: list[str] = []
        base = os.path.basename(root).lower()
        for child in children:
            low = child.lower()
            if low.endswith((".dist-info", ".egg-info")):
                name = re.sub(r"[-_.]+", "-", low.rpartition(".")[0].partition("-")[0]).replace("-", "_")
                infos.setdefault(name, []).append(os.path.join(root, child))
            elif base.endswith(".egg") and low == "egg-info":
                eggs.append(os.path.join(root, child))
        for folder in [f for fs in infos.values() for f in fs] + eggs:
            eps = [(g, n, v) for g, n, v in _read_entry_points(folder) if g in groups]
            if eps:
                dist = _dist_name(folder)
                yield from ((g, n, v, dist) for g, n, v in eps)


def _read(folder: str, name: str) -> str | None:
    try:
        with open(os.path.join(folder, name), encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return None


def _read_entry_points(folder: str) -> Iterator[tuple[str, str, str]]:
    """``(group, name, value)`` of a distribution's ``entry_points.txt`` (importlib.metadata's ``Sectioned``
    reading: blank lines and ``#``/``;`` comments skipped, ``[group]`` headers, ``name = value`` split at the
    first ``=``); a line that is none of these is a PluginError naming the file."""
    group = None
    for line in (_read(folder, "entry_points.txt") or "").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            group = line[1:-1].strip()
        elif group is not None:
            name, eq, value = line.partition("=")
            if not eq:
                raise PluginError(os.path.basename(folder), f"{os.path.join(folder, 'entry_points.txt')}: "
                                                            f"{line!r} is not `name = module:attribute`")
            yield group, name.strip(), value.strip()


def _dist_name(folder: str) -> str:
    """The ``Name`` header of the distribution's METADATA (or PKG-INFO), as ``dist.metadata["Name"]``."""
    text = _read(folder, "METADATA") or _read(folder, "PKG-INFO") or ""
    for line in text.splitlines():
        if not line.strip():
            break  # the headers end at the first blank line
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == "name":
            return value.strip() or "?"
    return "?"


def _zip_entry_points(root: str, groups: set[str]) -> Iterator[tuple[str, str, str, str]]:
    from importlib import metadata

    for dist in metadata.distributions(path=[root]):
        eps = [ep for ep in dist.entry_points if ep.group in groups]
        if eps:
            name = dist.metadata["Name"] or "?"
            yield from ((ep.group, ep.name, ep.value, name) for ep in eps)


_ENTRY_POINT = re.compile(r"(?P<module>[\w.]+)\s*(:\s*(?P<attr>[\w.]+)\s*)?((?P<extras>\[.*\])\s*)?$")


def _load(value: str) -> Any:
    """The object an entry point's value names (``module:attr.attr [extras]``), as ``EntryPoint.load``."""
    m = _ENTRY_POINT.match(value)
    if m is None:
        raise ValueError(f"{value!r} is not an entry point (module:attribute)")
    obj: Any = importlib.import_module(m.group("module"))
    for attr in filter(None, (m.group("attr") or "").split(".")):
        obj = getattr(obj, attr)
    return obj
