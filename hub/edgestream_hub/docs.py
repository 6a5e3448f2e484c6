"""Generates ``docs/config-reference.md`` from the specs (``edgestream hub docs``)."""

from __future__ import annotations

from edgestream_hub import config as c
from edgestream_hub.registry import Registry

HEADER = """# Hub config reference

Generated from the component specs by `edgestream hub docs -o docs/config-reference.md`; do not edit by
hand (a test fails when this file is stale). How the config works (layers, `${VAR:default}`,
`--set`, hot reload) is in [hub.md](hub.md).

Durations are strings: a number and `ms`, `s`, `m`, `h` or `d` (`"500ms"`, `"10s"`), at most 30 days
(`"30d"`) unless a key states its own maximum. Sizes are bytes or a
number with `B`, `KB`, `MB`, `GB`, `KiB`, `MiB`, `GiB`. A `host` is a DNS name or an IP address (no scheme,
port or path; `hub check` does not resolve it); a `hostport` is `host:port` (`"127.0.0.1:9108"`,
`"[::1]:9108"`, port 0-65535). Relative file names are relative to the config file's folder.
"""


def reference(registry: Registry | None = None) -> str:
    """The whole reference as Markdown (built-ins only unless a registry is given)."""
    if registry is None:
        registry = Registry()
        registry.load_entry_points(paths=[])  # built-ins only: installed plugins do not change the docs
    out = [HEADER, "## Sections", ""]
    out += ["| section | what |", "| --- | --- |",
            "| `hub` | engine settings |",
            "| `broker` | the MQTT connection named `default` |",
            "| `connections` | more MQTT connections, by name |",
            "| `sources` | sources by name: `name: {type: {...}, label: ...}` |",
            "| `pipelines` | pipelines by name: `from`, `processors`, `to` |",
            "| `sinks` | sinks by name: `name: {type: {...}, queue, policy, batch, retry, label}` |",
            "| `state` | processor snapshots |",
            "| `metrics` | the Prometheus endpoint |",
            "| `devices` | the device registry, config reconciliation and time sync |",
            "| `api` | the REST API and the web console |", ""]
    for spec in (c.HUB_SPEC, c.MQTT_CONNECTION_SPEC, c.PIPELINE_SPEC, c.STATE_SPEC, c.METRICS_SPEC, c.DEVICES_SPEC,
                 c.API_SPEC):
        out.append(spec.markdown("###"))
    out += ["## Common keys", ""]
    for spec in (c.SOURCE_COMMON_SPEC, c.PROCESSOR_COMMON_SPEC, c.SINK_COMMON_SPEC):
        out.append(spec.markdown("###"))
    for kind, title in (("source", "Sources"), ("processor", "Processors"), ("sink", "Sinks")):
        out += [f"## {title}", ""]
        for t in registry.types(kind):
            out.append(t.spec.markdown("###").replace(f"### `{t.name}`", f"### {kind} `{t.name}`", 1))
    return "\n".join(out).rstrip() + "\n"
