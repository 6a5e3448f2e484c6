"""Desired agent configs: a folder with one ``<device>.json`` each, and inline ones from hub.yaml.

A desired config is a whole ``agent.json`` with a ``version`` (1 .. 2^31-1: the agent keeps it in a
small int). It is checked here with the agent's own validator (``edgestream_agent.config.validate``,
run on the host: the same messages a board gives), so a config the hub sends is never refused for a
reason the host could have seen. The folder and ``devices.desired`` may both name a device: the
higher version wins, the file on a tie.

The hub and ``edgestream devices push-config`` share the folder. Both hold ``lock()`` (an ``flock`` on
``<folder>/.lock``) while they read a device's desired config and publish it, and the CLI while it
writes one, so the retained config on the broker is always the newest desired one: a hub never
publishes a config older than one the CLI published after it read.

**Forced.** A config made desired with ``force`` (``push-config --force``, ``PUT ...?force=true``) goes
to the device with ``"force": true``, which applies it even over a newer running version: the way back
from a version set too high. The folder keeps that as ``<device>.force`` (``{"version": N}``) beside
``<device>.json``; it holds while the desired config is that version.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from edgestream_hub.errors import EdgeStreamError

log = logging.getLogger("edgestream.hub.devices")

MAX_VERSION = 2**31 - 1  # the agent keeps its config version in a 31-bit small int


class DesiredConfigError(EdgeStreamError):
    """A desired config that cannot be sent: says where (file or key) and what, with the validator's path."""


@dataclass(frozen=True)
class Desired:
    """One desired config: its version, the config (with ``version`` in it) and where it came from."""

    version: int
    config: dict[str, Any]
    origin: str
    force: bool = False  # sent with "force": true (applied over a newer running version)


class DesiredVersionError(DesiredConfigError):
    """A version that cannot be made desired: older than the desired one, or the same for another config."""


def check_version(v: Any, where: str) -> int:
    if v is None:
        raise DesiredConfigError(f"{where}: version: missing (a desired config needs \"version\": 1..{MAX_VERSION}; "
                                 "`edgestream devices push-config` assigns the next one)")
    if type(v) is not int or not 1 <= v <= MAX_VERSION:
        raise DesiredConfigError(f"{where}: version: expected an integer 1..{MAX_VERSION} (it must fit the "
                                 f"agent's 31-bit small int), got {v!r}")
    return v


def check_config(dev: str, cfg: Any, where: str, *, need_version: bool = True) -> dict[str, Any]:
    """Check a desired config for ``dev`` as the device will: returns it (a copy, ``device`` filled in when
    absent). Raises ``DesiredConfigError`` with the validator's message (``sensors[0].period_ms: must be > 0``)."""
    from edgestream_agent.config import validate
    from edgestream_shared.errors import WireError
    from edgestream_shared.topics import check_id

    try:
        check_id(dev)
    except WireError as e:
        raise DesiredConfigError(f"{where}: {e}") from None
    if not isinstance(cfg, dict):
        raise DesiredConfigError(f"{where}: expected a JSON object (an agent.json), got {type(cfg).__name__}")
    cfg = dict(cfg)
    if "version" in cfg or need_version:
        check_version(cfg.get("version"), where)
    named = cfg.get("device", cfg.get("device_id"))
    if named is not None and named != dev:
        key = "device" if "device" in cfg else "device_id"
        raise DesiredConfigError(f"{where}: {key}: the config is for {named!r}, not {dev!r} (the device id cannot "
                                 "change remotely)")
    probe = dict(cfg)
    if named is None:
        probe["device"] = dev
    try:
        validate(probe)
    except ValueError as e:  # the agent's ConfigError: "<path>: <reason>"
        raise DesiredConfigError(f"{where}: {e}") from None
    return cfg


def desired_dir(setting: str | None, state_dir: str | None, base_dir: str) -> Path:
    """The desired-config folder: ``devices.desired_dir``, else ``desired/`` beside the registry."""
    if setting:
        p = Path(setting).expanduser()
        return p if p.is_absolute() else Path(base_dir) / p
    from edgestream_hub.devices import registry_path

    return registry_path(state_dir, base_dir).parent / "desired"


class DesiredConfigs:
    """The desired configs of every device: ``scan()`` reads the folder again (only files that changed),
    ``get(dev)`` reads one device's afresh (call it under ``lock()`` before publishing)."""

    def __init__(self, folder: Path, inline: dict[str, Any] | None = None) -> None:
        self.folder = folder
        self.inline: dict[str, Desired] = {}
        for dev, cfg in (inline or {}).items():
            c = check_config(dev, cfg, f"devices.desired.{dev}")
            self.inline[dev] = Desired(c["version"], c, f"devices.desired.{dev}")
        self._files: dict[str, tuple[tuple[int, int], Desired | None]] = {}  # dev -> (stat key, parsed)
        self.errors: dict[str, str] = {}  # dev -> why its file is not used

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder's lock (shared by the hub and the CLI)."""
        import fcntl

        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".lock", "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def path(self, dev: str) -> Path:
        return self.folder / f"{dev}.json"

    def force_path(self, dev: str) -> Path:
        return self.folder / f"{dev}.force"

    def _forced(self, dev: str, version: int) -> bool:
        """Was ``version`` made desired with force (``<device>.force`` names it)?"""
        try:
            mark = json.loads(self.force_path(dev).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(mark, dict) and mark.get("version") == version

    def _read(self, dev: str, path: Path) -> Desired:
        where = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise DesiredConfigError(f"{where}: cannot read it: {e.strerror or e}") from None
        try:
            cfg = json.loads(text)
        except ValueError as e:
            raise DesiredConfigError(f"{where}: not JSON: {e}") from None
        c = check_config(dev, cfg, where)
        return Desired(c["version"], c, where, self._forced(dev, c["version"]))

    def scan(self) -> tuple[dict[str, Desired], set[str]]:
        """Every device's desired config now, and the devices whose file changed since the last scan. A file
        that cannot be used is logged (once per content) and its last good config stays desired."""
        from edgestream_shared.errors import WireError
        from edgestream_shared.topics import check_id

        seen: dict[str, tuple[int, int]] = {}
        try:
            entries = list(os.scandir(self.folder))
        except FileNotFoundError:
            entries = []
        except OSError as e:
            log.error("cannot read the desired-config folder %s: %s", self.folder, e.strerror or e)
            entries = []
        for entry in entries:
            if not entry.name.endswith(".json") or entry.name.startswith("."):
                continue
            dev = entry.name[:-5]
            try:
                check_id(dev)
                st = entry.stat()
            except (WireError, OSError):
                continue
            seen[dev] = (st.st_mtime_ns, st.st_size)
        changed: set[str] = set()
        for dev in set(self._files) - set(seen):
            del self._files[dev]
            self.errors.pop(dev, None)
            changed.add(dev)
        for dev, key in seen.items():
            old = self._files.get(dev)
            if old is not None and old[0] == key:
                continue
            try:
                parsed: Desired | None = self._read(dev, self.path(dev))
                self.errors.pop(dev, None)
            except DesiredConfigError as err:
                parsed = old[1] if old is not None else None  # the last good one stays desired
                if self.errors.get(dev) != str(err):
                    log.error("desired config not used: %s%s", err, f" (version {parsed.version} stays desired)"
                              if parsed is not None else "")
                self.errors[dev] = str(err)
            self._files[dev] = (key, parsed)
            changed.add(dev)
        out = dict(self.inline)
        for dev, (_, parsed) in self._files.items():
            if parsed is not None and (dev not in out or parsed.version >= out[dev].version):
                out[dev] = parsed
        return out, changed

    def get(self, dev: str) -> Desired | None:
        """One device's desired config, read now (the file as it is, not as the last scan saw it)."""
        best = self.inline.get(dev)
        d: Desired | None
        try:
            d = self._read(dev, self.path(dev))
        except DesiredConfigError:
            cached = self._files.get(dev) if self.path(dev).exists() else None
            d = cached[1] if cached is not None else None  # the last good one (scan logs why the file is not)
        if d is None:
            return best
        return d if best is None or d.version >= best.version else best

    def write(self, dev: str, cfg: dict[str, Any], force: bool = False) -> Path:
        """Make ``cfg`` (checked, with its version) the device's desired config file, atomically (temp file in
        the folder, then a rename); ``force``: sent with ``"force": true``. Call under ``lock()``."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if force:  # the mark first: the config file's change is what a running hub reads both on
            self._replace(self.force_path(dev), {"version": cfg["version"]})
        else:
            self.force_path(dev).unlink(missing_ok=True)
        return self._replace(self.path(dev), cfg)

    def _replace(self, path: Path, data: dict[str, Any]) -> Path:
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return path


def assign_version(store: DesiredConfigs, dev: str, cfg: dict[str, Any], reported: Any, where: str,
                   force: bool = False) -> int:
    """The version ``cfg`` (checked) becomes desired with, set in ``cfg``: its own, or without one the
    desired (or reported, if higher) version + 1. Call under ``store.lock()``, then ``store.write``.
    Raises ``DesiredVersionError`` for a version the device would not apply: older than the desired one
    or than the one it runs (unless ``force``), the desired one with another config, or the one it runs
    (it would acknowledge it without applying it)."""
    current = store.get(dev)
    desired = current.version if current is not None else 0
    running = reported if type(reported) is int else 0
    nxt = max(desired, running) + 1
    if "version" in cfg:
        version: int = cfg["version"]
        again = current is not None and version == desired and current.config == cfg  # the desired one again
        if current is not None and version == desired and not again:
            raise DesiredVersionError(f"{where}: version: {version} is already desired for {dev} with another "
                                      f"config (raise it, or leave it out to get {nxt})")
        if not force and version < max(desired, running) and not again:
            what = f"the desired version {desired}" if desired >= running else f"the version {running} it runs"
            raise DesiredVersionError(f"{where}: version: {version} is older than {what} of {dev}: the device refuses "
                                      f"it (leave the version out to get {nxt}, or force it to go back)")
        if version == running and not again:
            raise DesiredVersionError(f"{where}: version: {dev} runs version {version} already: it would acknowledge "
                                      f"this config without applying it (raise it, or leave it out to get {nxt})")
        return version
    if nxt > MAX_VERSION:
        raise DesiredVersionError(f"{where}: version: the next version {nxt} does not fit 31 bits (force a lower "
                                  "version to go back)")
    cfg["version"] = version = nxt
    return version
