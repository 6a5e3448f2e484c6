"""Debugging sinks: ``stdout`` prints one JSON line per record, ``log`` logs them.

Lines are written by ``jsonio`` (a non-finite number as null, counted in
``edgestream_sink_nonfinite_values_total``; a type JSON lacks as text),
so no record is lost for holding one. When the reader of the stream goes away
(``edgestream hub run ... | head -1``), the sink says so once and drops its
records from then on; the hub goes on.
"""

from __future__ import annotations

import sys
from typing import Any

from edgestream_hub import jsonio, pipes
from edgestream_hub.components import ComponentContext, Sink
from edgestream_hub.errors import OutputGoneError
from edgestream_hub.registry import component
from edgestream_hub.spec import Field, Spec


def _lines(records: list[dict[str, Any]], ctx: ComponentContext) -> list[str]:
    """One JSON text per record; counts the non-finite numbers written as null."""
    out = []
    nonfinite = 0
    for r in records:
        try:
            text, n = jsonio.dumps(r)
        except (ValueError, RecursionError) as e:  # a cycle: say so rather than lose the line
            text, n = jsonio.dumps({"unprintable": f"{type(r).__name__}: {type(e).__name__}: {e}"})
        out.append(text)
        nonfinite += n
    ctx.count(jsonio.NONFINITE_METRIC, nonfinite)
    return out


#: the streams whose reader went away; they stay gone for the life of the process
_GONE: set[str] = set()


class StdoutSink(Sink):
    """Once the stream's reader has gone (a closed pipe), every batch raises ``OutputGoneError``: the
    engine logs that once and counts the records as dropped, and the hub goes on."""

    def __init__(self, stream: str, ctx: ComponentContext) -> None:
        self.stream = stream
        self.ctx = ctx

    def write(self, records: list[dict[str, Any]]) -> None:
        if self.stream in _GONE:  # for the process: a sink built by a reload must not write to /dev/null
            raise OutputGoneError(self.ctx.label, f"the reader of {self.stream} went away")
        out = sys.stdout if self.stream == "stdout" else sys.stderr
        text = "".join(line + "\n" for line in _lines(records, self.ctx))
        try:
            try:
                out.write(text)
            except UnicodeEncodeError:  # a lone surrogate, or a stream that cannot hold the text: escape it
                enc = getattr(out, "encoding", None) or "utf-8"
                out.write(text.encode(enc, "backslashreplace").decode(enc))
            out.flush()
        except BrokenPipeError:
            _GONE.add(self.stream)
            pipes.to_devnull(out)  # what is still buffered cannot fail again, at exit either
            raise OutputGoneError(self.ctx.label, f"the reader of {self.stream} went away (broken pipe)") from None


@component(Spec("stdout", "Prints one JSON line per record (for debugging).", [
    Field("stream", "str", "Where to print.", default="stdout", choices=("stdout", "stderr")),
], example="sinks:\n  debug: {stdout: {}}"))
def stdout_sink(config: dict[str, Any], ctx: ComponentContext) -> StdoutSink:
    return StdoutSink(config["stream"], ctx)


class LogSink(Sink):
    def __init__(self, level: str, ctx: ComponentContext) -> None:
        import logging  # here: `hub check` imports no logging

        self.level = getattr(logging, level.upper())
        self.log = logging.getLogger(f"edgestream.records.{ctx.label}")
        self.ctx = ctx

    def write(self, records: list[dict[str, Any]]) -> None:
        for line in _lines(records, self.ctx):
            self.log.log(self.level, "%s", line)


@component(Spec("log", "Logs one line per record through the hub's logger `edgestream.records.<label>`.", [
    Field("level", "str", "Log level.", default="info", choices=("debug", "info", "warning", "error")),
], example="sinks:\n  debug: {log: {level: info}}"))
def log_sink(config: dict[str, Any], ctx: ComponentContext) -> LogSink:
    return LogSink(config["level"], ctx)
