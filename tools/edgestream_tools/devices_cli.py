"""``edgestream devices``: the fleet as the hub sees it, and the configs and time it sends.

    edgestream devices list        [-c hub.yaml] [--json]
    edgestream devices push-config DEVICE FILE [-c hub.yaml] [--timeout S] [--force]
    edgestream devices sync-time   [-c hub.yaml] [DEVICE]

Without ``-c`` the config is ``/etc/edgestream/hub.yaml``, else ``./hub.yaml``.
The REST API (``PUT /api/devices/{id}/config``) does what ``push-config`` does, through a running hub.

``list`` reads the registry the hub keeps (``state.dir``/devices.json, or
``.edgestream/devices.json`` beside hub.yaml), so it works while the hub runs
and when it is stopped. ``push-config`` checks FILE with the agent's own
validator, makes it the device's desired config (the desired-config folder,
which a running hub watches) and, when the device is on MQTT, publishes it
retained itself, so it works with or without a hub; then it waits for the
device's answer. Exit codes of ``push-config``: 0 applied (prints the
version), 2 bad input, 3 the device refused it (prints its reason), 4 no
answer in time (the config stays desired: the device gets it when it comes
back). ``sync-time`` exits 0 when every device was sent the time, 1 if one
could not be reached.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

EXIT_NACK = 3
EXIT_TIMEOUT = 4


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="devices_cmd", metavar="{list,push-config,sync-time}")

    def common(s: argparse.ArgumentParser) -> None:
        s.add_argument("-c", "--config", default=None,
                       help="the hub.yaml (its devices section; default: /etc/edgestream/hub.yaml or ./hub.yaml)")
        s.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                       help="override a config value, as for `edgestream hub run`")

    ls = sub.add_parser("list", help="one row per device: online, last seen, boot, config, health, losses")
    common(ls)
    ls.add_argument("--json", action="store_true", help="one JSON object per line (keys: docs/hub.md, Devices)")
    pc = sub.add_parser("push-config", help="make FILE the device's desired config and wait for its answer")
    pc.add_argument("device", metavar="DEVICE")
    pc.add_argument("file", metavar="FILE", help="an agent.json; without a version it gets the desired one + 1")
    common(pc)
    pc.add_argument("--force", action="store_true",
                    help="send it with \"force\": true: applied even when the device runs a newer version (the way "
                    "back from a version set too high)")
    pc.add_argument("--timeout", type=float, default=30.0, metavar="S",
                    help="seconds to wait for the device's answer (default 30)")
    st = sub.add_parser("sync-time", help="send the hub's clock to a device (or to every known one)")
    st.add_argument("device", metavar="DEVICE", nargs="?")
    common(st)


def run(args: argparse.Namespace) -> int:
    return {"list": _list, "push-config": _push, "sync-time": _sync}[args.devices_cmd](args)


# -- shared --
def hub_alive(pid: int, saved_ms: Any = None) -> bool:
    """Is ``pid`` alive and possibly the hub that saved the registry at ``saved_ms``? A hub killed with
    SIGKILL may linger as a zombie, and its pid may be reused by a program started later: where /proc
    tells (Linux), neither counts as the hub."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
        boot_s = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                      if line.startswith("btime "))
        started_ms = (boot_s + int(fields[19]) / os.sysconf("SC_CLK_TCK")) * 1000
    except (OSError, IndexError, ValueError, StopIteration):
        return True  # no /proc to ask: the pid is alive, take it as the hub
    if fields[0] in ("Z", "X"):
        return False
    # a process started after the registry was saved did not save it (btime has whole seconds)
    return not (type(saved_ms) is int and started_ms > saved_ms + 1500)


class _Fleet:
    """The hub config's devices section and where its files are."""

    def __init__(self, args: argparse.Namespace) -> None:
        from edgestream_hub.config import find_config, load_config
        from edgestream_hub.desired import DesiredConfigs, desired_dir
        from edgestream_hub.devices import registry_path
        from edgestream_hub.errors import ConfigError

        args.config = find_config(args.config)
        self.hub = load_config(args.config, sets=args.set)
        if self.hub.devices is None:
            raise ConfigError(f"{args.config}: no `devices` section: the device registry is off (docs/hub.md, Devices)")
        self.cfg = self.hub.devices
        self.prefix = self.cfg["prefix"]
        from edgestream_hub.workers import worker_dirs

        sd = self.hub.state.get("dir")
        self.path = registry_path(sd, self.hub.base_dir)
        # a hub of several workers keeps one registry per worker, each of its own devices
        self.paths = [d / self.path.name for d in worker_dirs(self.hub)] or [self.path]
        if len(self.paths) > 1:
            self.path = self.paths[0].parent.parent / "worker-*" / self.path.name
        self.store = DesiredConfigs(desired_dir(self.cfg["desired_dir"], sd, self.hub.base_dir), self.cfg["desired"])
        self.conn = self.hub.connections.get(self.cfg["connection"]) if self.cfg["connection"] else None

    def registry(self) -> dict[str, Any] | None:
        """The registry file (of every worker, merged: the devices of all, ``hubs`` the (pid, saved_ms) of
        each, ``saved_ms`` the oldest)."""
        from edgestream_hub.devices import read_registry

        parts = []
        for path in self.paths:
            try:
                parts.append(read_registry(path))
            except FileNotFoundError:
                continue
            except (OSError, ValueError) as e:
                print(f"edgestream devices: cannot read the registry {path}: {e}", file=sys.stderr)
        if not parts:
            return None
        merged = dict(parts[0])
        merged["devices"] = {}
        for part in parts:  # a device left in another worker's registry by an earlier split: the newest wins
            for dev, d in part["devices"].items():
                have = merged["devices"].get(dev)
                if have is None or _seen(d) >= _seen(have):
                    merged["devices"][dev] = d
        merged["hubs"] = [(p.get("pid"), p.get("saved_ms")) for p in parts]
        saved = [p["saved_ms"] for p in parts if type(p.get("saved_ms")) is int]
        merged["saved_ms"] = min(saved) if saved else None
        return merged

    def device(self, dev: str) -> dict[str, Any] | None:
        reg = self.registry()
        d = (reg or {}).get("devices", {}).get(dev)
        return d if isinstance(d, dict) else None

    def hub_running(self) -> bool:
        """Is the hub that writes this registry alive (same machine)?"""
        reg = self.registry()
        return any(type(pid) is int and pid > 0 and hub_alive(pid, saved) for pid, saved in (reg or {}).get("hubs", []))

    def link(self, filters: list[str], on_payload: Any) -> Any:
        from edgestream_hub.sender import MqttLink

        assert self.conn is not None, "callers check devices.connection first"
        link = MqttLink(self.conn, f"edgestream-cli-{os.getpid()}", filters, on_payload, label="edgestream devices")
        link.open()
        return link


def _seen(d: Any) -> int:
    v = d.get("last_seen") if isinstance(d, dict) else None
    return v if type(v) is int else -1


# -- list --
def _age(ms: Any, now_ms: int) -> str:
    if type(ms) is not int:
        return "never"
    s = max(0, now_ms - ms) // 1000
    return f"{s}s ago" if s < 120 else f"{s // 60}m ago" if s < 7200 else f"{s // 3600}h ago"


def _cell(v: Any) -> str:
    return "-" if v is None else (("yes" if v else "no") if isinstance(v, bool) else str(v))


def _list(args: argparse.Namespace) -> int:
    from edgestream_hub.devices import PUBLIC_KEYS, state_from

    fleet = _Fleet(args)
    reg = fleet.registry()
    if reg is None:
        print(f"edgestream devices: no device registry at {fleet.path} yet (the hub writes it once it runs with "
              "this devices section)", file=sys.stderr)
        return 0
    rows = []
    for dev in sorted(reg["devices"]):
        d = state_from(dev, reg["devices"][dev])
        if d is not None:
            rows.append(d.public())
    if args.json:
        for r in rows:
            print(json.dumps({k: r[k] for k in PUBLIC_KEYS}, separators=(",", ":")))
        return 0
    now = int(time.time() * 1000)
    head = ["DEVICE", "ONLINE", "LAST SEEN", "LINK", "BOOT", "REBOOTS", "AGENT", "CONFIG", "HEAP", "LAG MS",
            "LINK FAIL", "SENT", "DROPPED", "RESENT", "RECEIVED", "GAPS", "DUPS", "MISSING", "LAST NACK"]
    table = [head]
    for r in rows:
        config = f"{_cell(r['config_reported'])}/{_cell(r['config_desired'])} {r['config_state']}"
        nack = f"v{r['last_nack_version']}: {r['last_nack']}" if r["last_nack"] else "-"
        table.append([r["device"], _cell(r["online"]), _age(r["last_seen"], now), _cell(r["link"]), _cell(r["boot"]),
                      _cell(r["reboots"]), _cell(r["agent_version"]), config, _cell(r["heap_free"]),
                      _cell(r["loop_lag_ms"]), _cell(r["link_failures"]), _cell(r["results_sent"]),
                      _cell(r["results_dropped"]), _cell(r["results_resent"]), _cell(r["results_received"]),
                      _cell(r["gaps"]), _cell(r["duplicates"]), _cell(r["missing"]), nack])
    widths = [max(len(row[i]) for row in table) for i in range(len(head) - 1)]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
    saved = reg.get("saved_ms")
    state = "running" if fleet.hub_running() else "not running"
    print(f"({len(rows)} device{'s' if len(rows) != 1 else ''}; registry {fleet.path}, saved {_age(saved, now)}; "
          f"hub {state}; CONFIG is reported/desired)", file=sys.stderr)
    return 0


# -- push-config --
def _push(args: argparse.Namespace) -> int:
    from edgestream_hub.desired import DesiredConfigError, assign_version, check_config
    from edgestream_hub.sender import config_message
    from edgestream_shared.decoder import decode
    from edgestream_shared.errors import WireError

    fleet = _Fleet(args)
    dev = args.device
    try:
        raw = json.loads(Path(args.file).read_text(encoding="utf-8"))
    except OSError as e:
        raise DesiredConfigError(f"{args.file}: cannot read it: {e.strerror or e}") from None
    except ValueError as e:
        raise DesiredConfigError(f"{args.file}: not JSON: {e}") from None
    cfg = check_config(dev, raw, args.file, need_version=False)  # the agent's validator: the board's messages
    known = fleet.device(dev) or {}
    route = str(known.get("link") or "")
    via_mqtt = fleet.conn is not None and not route.startswith(("serial:", "http:"))
    answers: list[dict[str, Any]] = []
    got = threading.Event()

    def on_ack(payload: bytes, topic: str) -> None:
        try:
            m = decode(payload)
        except WireError:
            return
        if m["kind"] == "ack" and m["dev"] == dev:
            answers.append(m)
            got.set()

    link = fleet.link([f"{fleet.prefix}/{dev}/config/ack"], on_ack) if via_mqtt else None
    try:
        if link is not None and not link.wait_ready(min(args.timeout, 10.0)):
            print(f"edgestream devices: broker {link.conn['host']}:{link.conn['port']} not reachable: {link.why}; "
                  "the config is made desired only", file=sys.stderr)
            link.close()
            link = None
        started = int(time.time() * 1000)
        with fleet.store.lock():
            version = assign_version(fleet.store, dev, cfg, known.get("config_reported"), args.file, args.force)
            where = fleet.store.write(dev, cfg, args.force)
            if link is not None:
                err = link.publish(f"{fleet.prefix}/{dev}/config", config_message(dev, version, cfg, args.force),
                                   qos=1, retain=True)
                if err:
                    print(f"edgestream devices: config not published: {err}", file=sys.stderr)
        print(f"{dev}: config version {version} is desired ({where}); waiting for the device "
              f"(up to {args.timeout:g}s)", file=sys.stderr)
        return _wait(fleet, dev, version, started, answers, got, args.timeout, route, link is not None)
    finally:
        if link is not None:
            link.close()


def _wait(fleet: _Fleet, dev: str, version: int, started: int, answers: list[dict[str, Any]],
          got: threading.Event, timeout_s: float, route: str, mqtt: bool) -> int:
    deadline = time.monotonic() + timeout_s
    seen = 0
    while True:
        for m in answers[seen:]:
            seen += 1
            if m["ok"] and m["version"] == version:
                return _applied(dev, version, m.get("error"))
            if not m["ok"] and m["version"] in (version, 0):
                return _refused(dev, version, m.get("error"))
        d = fleet.device(dev)
        if d is not None:
            if d.get("config_reported") == version:
                return _applied(dev, version, None)
            at = d.get("last_nack_at")
            if d.get("last_nack_version") == version and type(at) is int and at >= started:
                return _refused(dev, version, d.get("last_nack"))
        left = deadline - time.monotonic()
        if left <= 0:
            break
        got.wait(min(0.2, left))
        got.clear()
    d = fleet.device(dev) or {}
    if d.get("online"):
        state = "online, but did not answer"
    elif d:
        state = f"offline (last seen {_age(d.get('last_seen'), int(time.time() * 1000))})"
    else:
        state = "never seen by the hub"
    how = ("the broker holds it (retained) for when the device connects" if mqtt else
           "a running hub sends it when the device is heard" + ("" if fleet.hub_running() else
                                                                 " (no hub is running now)"))
    print(f"edgestream devices: {dev} did not answer within {timeout_s:g}s ({state}); config version {version} stays "
          f"desired: {how}", file=sys.stderr)
    return EXIT_TIMEOUT


def _applied(dev: str, version: int, note: Any) -> int:
    print(f"{dev}: config version {version} applied" + (f" ({note})" if note else ""))
    return 0


def _refused(dev: str, version: int, reason: Any) -> int:
    print(f"{dev}: refused config version {version}: {reason}", file=sys.stderr)
    return EXIT_NACK


# -- sync-time --
def _sync(args: argparse.Namespace) -> int:
    from edgestream_hub.reconcile import requests_dir
    from edgestream_hub.sender import time_message

    fleet = _Fleet(args)
    reg = fleet.registry() or {"devices": {}}
    devices = [args.device] if args.device else sorted(reg["devices"])
    if not devices:
        print(f"edgestream devices: no devices known yet ({fleet.path})", file=sys.stderr)
        return 1
    link = None
    failed = 0
    try:
        for dev in devices:
            d = reg["devices"].get(dev) or {}
            route = str(d.get("link") or "")
            if fleet.conn is not None and not route.startswith(("serial:", "http:")):
                if link is None:
                    link = fleet.link([], lambda p, t: None)
                    if not link.wait_ready(10):
                        print(f"edgestream devices: broker {link.conn['host']}:{link.conn['port']} not reachable: "
                              f"{link.why}", file=sys.stderr)
                        return 1
                msg = time_message(dev)
                err = link.publish(f"{fleet.prefix}/{dev}/time", msg, qos=1)
                if err:
                    failed += 1
                    print(f"{dev}: time not sent: {err}", file=sys.stderr)
                else:
                    print(f"{dev}: time sent ({json.loads(msg)['epoch_ms']})")
            elif route.startswith("serial:") and fleet.hub_running():
                req = requests_dir(fleet.path)
                req.mkdir(parents=True, exist_ok=True)
                tmp = req / f".time-{dev}-{os.getpid()}.tmp"
                tmp.write_text(json.dumps({"kind": "time", "device": dev}))
                os.replace(tmp, req / f"time-{dev}-{time.time_ns()}.json")
                print(f"{dev}: time requested from the running hub (over {route})")
            else:
                failed += 1
                why = (f"reached over {route} and no hub is running" if route.startswith("serial:") else
                       f"only heard over {route}" if route else "unknown, and devices.connection is not set")
                print(f"{dev}: time not sent: {why}", file=sys.stderr)
    finally:
        if link is not None:
            link.close()
    return 1 if failed else 0
