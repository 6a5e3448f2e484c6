"""The root of every error EdgeStream's host side raises on purpose.

The tree: ``EdgeStreamError`` > ``ConfigError`` (one or more ``ConfigIssue``
with their YAML path and line), ``PluginError`` (names the plugin),
``StartError`` (a component that cannot work, raised before anything is
consumed) and ``ComponentError`` (a runtime failure of one component; its
``OutputGoneError`` is a sink whose destination went away for good).
"""

from __future__ import annotations

import re
from typing import NamedTuple

# C0 and C1 control characters and the bidirectional controls (a U+202E in a name reverses what follows)
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str, keep: str = "\t\n") -> str:
    """``text`` with control and bidirectional-control characters escaped (``\\x00``, ``\\u202e``), so a
    message quoting user text cannot hide, rewrite or reorder what a terminal shows. Characters in
    ``keep`` (by default tab and newline: a message's own layout) stay."""
    if text.isprintable():
        return text
    return _UNSAFE.sub(lambda m: m.group() if m.group() in keep else ascii(m.group())[1:-1], text)


class EdgeStreamError(Exception):
    """Base class: catch this to handle any EdgeStream failure a user can act on."""


class ConfigIssue(NamedTuple):
    """One problem in a config: where (``sinks.out.file.path``), which line, what. (A NamedTuple, not a
    dataclass: ``hub check`` imports no ``dataclasses``/``inspect``, ~5 ms.)"""

    path: str
    message: str
    line: int | None = None
    origin: str | None = None  # "env EDGESTREAM_X" / "--set" when not from the YAML file

    def __str__(self) -> str:
        where = printable(self.path, keep="") or "<root>"
        message = printable(self.message)
        if self.line is not None:
            return f"{where}: line {self.line}: {message}"
        if self.origin:
            return f"{where}: ({self.origin}) {message}"
        return f"{where}: {message}"


class ConfigError(EdgeStreamError):
    """A config that cannot work; ``issues`` holds every problem found, all at once."""

    def __init__(self, issues: list[ConfigIssue] | ConfigIssue | str, source: str | None = None) -> None:
        if isinstance(issues, str):
            issues = [ConfigIssue("", issues)]
        elif isinstance(issues, ConfigIssue):
            issues = [issues]
        self.issues = list(issues)
        self.source = source
        head = f"{printable(source, keep='')}: " if source else ""
        n = len(self.issues)
        lines = [f"{head}{n} config error{'s' if n != 1 else ''}:"] + [f"  {i}" for i in self.issues]
        super().__init__("\n".join(lines) if n != 1 else f"{head}{self.issues[0]}")


class PluginError(EdgeStreamError):
    """A plugin refused at registration (duplicate name, no config spec, failed import)."""

    def __init__(self, plugin: str, message: str) -> None:
        super().__init__(f"plugin {plugin!r}: {message}")
        self.plugin = plugin


class StartError(EdgeStreamError):
    """A component could not start (port in use, missing file): raised before consuming anything."""

    def __init__(self, component: str, message: str) -> None:
        super().__init__(f"{component}: {message}")
        self.component = component


class ComponentError(EdgeStreamError):
    """A runtime failure of one component; the engine retries it with backoff."""

    def __init__(self, component: str, message: str) -> None:
        super().__init__(f"{component}: {message}")
        self.component = component


class OutputGoneError(ComponentError):
    """A sink's destination went away for good (the reader of its pipe closed it): the engine logs it once
    and counts the sink's records as dropped instead of retrying them."""
