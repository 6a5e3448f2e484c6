"""Debugging sinks: ``stdout`` prints one JSON line per record, ``log`` logs them."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from edgestream_hub.components import ComponentContext, Sink
from edgestream_hub.registry import component
from edgestream_hub.spec import Field, Spec


class StdoutSink(Sink):
    def __init__(self, stream: str, ctx: ComponentContext) -> None:
        self.stream = stream

    def write(self, records: list[dict[str, Any]]) -> None:
        out = sys.stdout if self.stream == "stdout" else sys.stderr
        out.write("".join(json.dumps(r, separators=(",", ":"), default=repr) + "\n" for r in records))
        out.flush()


@component(Spec("stdout", "Prints one JSON line per record (for debugging).", [
    Field("stream", "str", "Where to print.", default="stdout", choices=("stdout", "stderr")),
], example="sinks:\n  debug: {stdout: {}}"))
def stdout_sink(config: dict[str, Any], ctx: ComponentContext) -> StdoutSink:
    return StdoutSink(config["stream"], ctx)


class LogSink(Sink):
    def __init__(self, level: str, ctx: ComponentContext) -> None:
        self.level = getattr(logging, level.upper())
        self.log = logging.getLogger(f"edgestream.records.{ctx.label}")

    def write(self, records: list[dict[str, Any]]) -> None:
        for r in records:
            self.log.log(self.level, "%s", json.dumps(r, separators=(",", ":"), default=repr))


@component(Spec("log", "Logs one line per record through the hub's logger `edgestream.records.<label>`.", [
    Field("level", "str", "Log level.", default="info", choices=("debug", "info", "warning", "error")),
], example="sinks:\n  debug: {log: {level: info}}"))
def log_sink(config: dict[str, Any], ctx: ComponentContext) -> LogSink:
    return LogSink(config["level"], ctx)
