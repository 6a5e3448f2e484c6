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

from dataclasses import dataclass
from typing import Any, Callable, Iterable

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


@dataclass(frozen=True)
class ComponentType:
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
        from importlib import metadata

        dists = metadata.distributions(path=list(paths)) if paths is not None else metadata.distributions()
        groups = set(GROUPS.values())
        for dist in dists:
            eps = [ep for ep in dist.entry_points if ep.group in groups]
            if eps:  # only these have their metadata parsed for the name (an email parse per distribution)
                dname = dist.metadata["Name"] or "?"
                found.extend((ep.group, ep.name, ep.value, dname) for ep in eps)
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
            from importlib import metadata

            obj = metadata.EntryPoint(name, value, group).load()
        except Exception as e:
            raise PluginError(name, f"cannot load {origin}: {type(e).__name__}: {e}") from e
        if kind == "function":
            self.register_function(name, obj, origin)
        else:
            self.register(kind, name, obj, origin=origin)
