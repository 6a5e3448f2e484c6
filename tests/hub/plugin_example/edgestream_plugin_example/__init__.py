"""An example EdgeStream hub plugin: a ``threshold`` processor and a ``c_to_f`` SQL function.

Installed by its ``edgestream_plugin_example-0.1.0.dist-info/entry_points.txt``
(what ``pip install`` of a package with these entry points would write)::

    [edgestream.processors]
    threshold = edgestream_plugin_example:threshold

    [edgestream.functions]
    c_to_f = edgestream_plugin_example:c_to_f
"""

from __future__ import annotations

from typing import Any

from edgestream_hub.registry import component
from edgestream_hub.spec import Field, Spec


class Threshold:
    """Keeps records whose ``field`` is above ``above``; a non-number goes to the dead-letter sink."""

    def __init__(self, field: str, above: float, ctx: Any) -> None:
        self.field, self.above, self.ctx = field, above, ctx

    def process(self, records: list[dict[str, Any]], now_ms: int) -> list[dict[str, Any]]:
        f, v, out = self.field, self.above, []
        for r in records:
            try:
                x = r[f]
            except (KeyError, TypeError):
                self.ctx.dead_letter(r, f"threshold: field {f!r} is missing")
                continue
            if type(x) not in (int, float) or x != x:
                self.ctx.dead_letter(r, f"threshold: field {f!r} is {type(x).__name__} {x!r}, expected a number")
                continue
            if x > v:
                out.append(r)
        return out

    def tick(self, now_ms: int) -> list[dict[str, Any]]:
        return []

    def flush(self) -> list[dict[str, Any]]:
        return []

    def snapshot(self) -> Any:
        return None


@component(Spec("threshold", "Keeps records whose field is above a value (example plugin).", [
    Field("field", "str", "Field to test."),
    Field("above", "float", "Keep records whose field is greater than this."),
]))
def threshold(config: dict[str, Any], ctx: Any) -> Threshold:
    return Threshold(config["field"], config["above"], ctx)


def c_to_f(c: float | None) -> float | None:
    """Celsius to Fahrenheit (NULL stays NULL)."""
    return None if c is None else c * 9 / 5 + 32


def no_spec(config: dict[str, Any], ctx: Any) -> Threshold:
    """A factory without a spec: the registry must refuse it."""
    return Threshold("x", 0, ctx)
