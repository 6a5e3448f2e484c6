"""The demo's live view: the devices and the latest results, read from the hub's REST API.

On a terminal it redraws one compact screen a second (devices, the latest
row of each pipeline, the demo's events). When stdout is not a terminal it
writes plain lines instead: each new result row as ``<pipeline> <json>``,
each event, and a line per device every ``STATUS_EVERY_S``. A write to a
closed stdout raises ``BrokenPipeError``, which stops the demo.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any, TextIO

#: the pipelines whose rows the view shows, in this order
PIPELINES = ("averages", "alerts", "running")
STATUS_EVERY_S = 10.0


def api_get(base: str, path: str, timeout: float = 2.0) -> Any:
    """GET ``base + path`` as JSON, or None when the hub does not answer (stopped, restarting)."""
    try:
        with urllib.request.urlopen(base.rstrip("/") + path, timeout=timeout) as r:
            return json.loads(r.read())
    except (OSError, ValueError, urllib.error.URLError):
        return None


def _cell(v: Any) -> str:
    return "-" if v is None else ("yes" if v is True else "no" if v is False else str(v))


def _row(r: dict[str, Any]) -> str:
    """One result row, short: its text fields first, then the numbers."""
    skip = {"start", "end", "started", "ended", "at", "site", "machine"}
    parts = [f"{k}={v}" for k, v in r.items() if k not in skip and not k.startswith("_")]
    return " ".join(parts)


class View:
    """Renders the run's state; ``refresh()`` once a second."""

    def __init__(self, run: Any, out: TextIO) -> None:
        self.run = run
        self.out = out
        self.tty = out.isatty()
        self.seen: dict[str, int] = {}     # pipeline -> records it had handed its sinks at the last look
        self.events_shown = 0
        self.last_status = 0.0

    def refresh(self) -> None:
        base = self.run.console
        devices = (api_get(base, "/api/devices") or {}).get("devices", [])
        latest: dict[str, list[dict[str, Any]]] = {}
        counts = self._counts(base)
        for name in PIPELINES:
            new = counts.get(name, 0) - self.seen.get(name, 0)
            limit = max(1, min(new, 100)) if not self.tty else 1
            got = api_get(base, f"/api/pipelines/{name}/results?limit={limit}")
            latest[name] = (got or {}).get("results", [])
            if not self.tty and new > 0:
                latest[name] = latest[name][-new:]
            elif not self.tty:
                latest[name] = []
            self.seen[name] = counts.get(name, self.seen.get(name, 0))
        if self.tty:
            self._screen(devices, latest)
        else:
            self._lines(devices, latest)

    @staticmethod
    def _counts(base: str) -> dict[str, int]:
        got = api_get(base, "/api/pipelines") or {}
        return {p["name"]: int(p.get("records_out") or 0) for p in got.get("pipelines", []) if "name" in p}

    # -- a terminal ------------------------------------------------------------------------
    def _screen(self, devices: list[dict[str, Any]], latest: dict[str, list[dict[str, Any]]]) -> None:
        r = self.run
        left = f" / {r.duration:.0f}s" if r.duration is not None else " (Ctrl-C stops)"
        broker = f"{r.broker_kind} :{r.broker_port} {'up' if r.broker_up else 'DOWN'}"
        lines = [f"EdgeStream demo  {r.elapsed():.0f}s{left}   broker {broker}   console {r.console}", ""]
        head = ("DEVICE", "ONLINE", "LINK", "RESULTS", "GAPS", "DUPS", "MISSING", "CONFIG", "HEAP FREE")
        table = [head]
        for d in devices:
            config = f"{_cell(d.get('config_reported'))}/{_cell(d.get('config_desired'))} {d.get('config_state')}"
            table.append((d["device"], _cell(d.get("online")), _cell(d.get("link")), _cell(d.get("results_received")),
                          _cell(d.get("gaps")), _cell(d.get("duplicates")), _cell(d.get("missing")), config,
                          _cell(d.get("heap_free"))))
        widths = [max(len(row[i]) for row in table) for i in range(len(head))]
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
        lines += ["", "LATEST RESULTS"]
        for name in PIPELINES:
            rows = latest.get(name) or []
            lines.append(f"  {name:<9} {_row(rows[-1]) if rows else '(none yet)'}")
        lines += ["", "EVENTS"] + [f"  {e}" for e in r.events[-6:]]
        self.out.write("\x1b[H\x1b[J" + "\n".join(lines) + "\n")
        self.out.flush()

    # -- plain lines -------------------------------------------------------------------------
    def _lines(self, devices: list[dict[str, Any]], latest: dict[str, list[dict[str, Any]]]) -> None:
        out = []
        for e in self.run.events[self.events_shown:]:
            out.append(f"event {e.strip()}")
        self.events_shown = len(self.run.events)
        for name in PIPELINES:
            out += [f"{name} {json.dumps(row, separators=(',', ':'))}" for row in latest.get(name) or []]
        now = time.monotonic()
        if devices and now - self.last_status >= STATUS_EVERY_S:
            self.last_status = now
            for d in devices:
                out.append(f"device {d['device']} online={_cell(d.get('online'))} link={_cell(d.get('link'))} "
                           f"results={_cell(d.get('results_received'))} gaps={_cell(d.get('gaps'))} "
                           f"duplicates={_cell(d.get('duplicates'))} missing={_cell(d.get('missing'))} "
                           f"config={_cell(d.get('config_reported'))}/{_cell(d.get('config_desired'))}")
        if out:
            self.out.write("\n".join(out) + "\n")
            self.out.flush()
