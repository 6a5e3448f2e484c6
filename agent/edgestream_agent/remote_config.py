# Remote config: a new agent.json pushed by the hub, applied without a reboot.
#
# The hub publishes a wire "config" message (retained) on
# <prefix>/<device>/config, or sends it as a serial frame. The link reads it
# (wire_in.read: as strict as the shared decoder; the version must be in
# 1..2**31-1) and hands the dict to handle(m), which:
#   1. checks it is for this device and newer than the running version:
#      the same version again (the retained copy after a reconnect) is
#      acknowledged without applying anything; an older one is refused,
#      unless the message says "force": true (the way back from a version
#      set too high: docs/wire.md),
#   2. validates the whole config (config.validate, the transport included)
#      and unloads the validator again,
#   3. hands the normalised config to apply(cfg) (Agent.apply(cfg,
#      validated=True) rebuilds only the sensors and windows whose config
#      changed),
#   4. persists it to agent.json (written to agent.json.tmp, then renamed,
#      so a power cut leaves the old file or the new one, never half of one),
#   5. returns the ack: {"kind":"ack","version":N,"ok":true} or a nack with
#      "ok":false and "error" naming the field ("sensors[0].windows[0].size_ms:
#      must be > 0"), or, when the heap is too small, the step
#      ("memory: not enough heap to build sensors[2] (x) (31024 bytes free)").
#      An invalid config never replaces the running one.
# Changes to the `transport` section are persisted and take effect at the
# next start (the link that carries the ack is not torn down under it).
#
# Memory: the Link imports this module (and with it the validator) for each
# config message and unloads them after it, with whatever a refused config
# loaded, so a RemoteConfig lives for one message. The raw config is
# dropped once it is validated (kept as JSON text for the file).

import json
import os
import sys

from edgestream_agent import need, no_heap, unload
from edgestream_agent.wire_out import message


class RemoteConfig:
    def __init__(self, dev, boot, version, path="agent.json", validate=None, apply=None):
        self.dev = dev
        self.boot = boot
        self.version = version      # of the running config
        self.path = path
        self._validate = validate   # raw dict -> normalised dict (raises ValueError); default config.validate
        self._apply = apply         # normalised config dict -> None (Agent.apply(c, validated=True))

    def handle(self, m):
        # m: a config message as wire_in.read returns it -> (version, ok,
        # error, ack payload bytes). Never raises for bad input or a heap
        # too small for the config.
        version = m["version"]
        try:
            if m["dev"] != self.dev:
                raise _Nack("dev: config for %r sent to %r" % (m["dev"], self.dev))
            if version == self.version:
                return self._ack(version, True, None)
            if version < self.version and not m.get("force"):
                raise _Nack("version: %d is older than the running version %d (send it with \"force\": true "
                            "to go back)" % (version, self.version))
            cfg = m["config"]
            if "version" in cfg and cfg["version"] != version:
                raise _Nack("config.version: %r does not match the message version %d"
                            % (cfg["version"], version))
            cfg["version"] = version
            if "device" not in cfg and "device_id" not in cfg:
                cfg["device"] = self.dev
            dev = cfg.get("device", cfg.get("device_id"))
            if dev != self.dev:
                raise _Nack("device: the device id cannot change remotely (%r -> %r)" % (self.dev, dev))
            m = None
            loaded = "edgestream_agent.config" in sys.modules
            try:
                if self._validate is None:
                    ncfg = need("config", "validate")(cfg)
                else:
                    ncfg = self._validate(cfg)
            except ValueError as e:  # ConfigError: message starts with the path
                raise _Nack(str(e))
            except MemoryError:
                cfg = None
                raise _Nack(no_heap("validate the config"))
            # The validator's code leaves the heap before the new sensors are
            # built (it is loaded again for the next config message), unless
            # it was loaded before this message came.
            if not loaded:
                unload("config")
            # the raw config is kept as its JSON text for the file (smaller
            # than the dict) while the new sensors are built
            text = json.dumps(cfg) if self.path else None
            cfg = None
            try:
                if self._apply:
                    self._apply(ncfg)  # the normalised config (Agent.apply(c, validated=True))
            except MemoryError as e:
                # Agent._build names the sensor it was building
                ncfg = text = None
                raise _Nack(no_heap("build " + e.args[0] if e.args and isinstance(e.args[0], str)
                                    else "apply the config"))
            except Exception as e:  # the running config stays in place
                raise _Nack("apply: %s: %s" % (e.__class__.__name__, e))
            ncfg = None
            self.version = version
            return self._ack(version, True, self._persist(text))
        except _Nack as e:
            return self._ack(version, False, e.reason)

    def _ack(self, version, ok, error):
        return version, ok, error, message("ack", self.dev, self.boot, "version", version, "ok", ok,
                                           "error", error)

    def _persist(self, text):
        # -> None, or a note for the ack when the file could not be written
        # (the config is applied; it will not survive a reboot).
        if not self.path:
            return None
        tmp = self.path + ".tmp"
        try:
            with open(tmp, "w") as f:
                f.write(text)
            try:
                os.rename(tmp, self.path)
            except OSError:
                # some VFS refuse to rename over an existing file
                os.remove(self.path)
                os.rename(tmp, self.path)
            return None
        except OSError as e:
            return "persist: %s" % e


class _Nack(Exception):
    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason
