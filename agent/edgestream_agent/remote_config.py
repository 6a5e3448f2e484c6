# Remote config: a new agent.json pushed by the hub, applied without a reboot.
#
# The hub publishes a wire "config" message (retained) on
# <prefix>/<device>/config, or sends it as a serial frame. handle(payload):
#   1. reads it strictly (wire_in.read, as strict as the shared decoder's
#      decode_config; the Link may hand over the dict it already read); a
#      payload that is not a config message is refused with its reason,
#   2. checks it is for this device and newer than the running version
#      (the same version again - the retained copy after a reconnect - is
#      acknowledged without applying anything),
#   3. validates the whole config (config.validate, the transport included)
#      and unloads the validator again,
#   4. hands the normalised config to apply(cfg) (Agent.apply(cfg,
#      validated=True) rebuilds only the sensors and windows whose config
#      changed),
#   5. persists it to agent.json (written to agent.json.tmp, then renamed,
#      so a power cut leaves the old file or the new one, never half of one),
#   6. returns the ack: {"kind":"ack","version":N,"ok":true} or a nack with
#      "ok":false and "error" naming the field ("sensors[0].windows[0].size_ms:
#      must be > 0"). An invalid config never replaces the running one.
# Changes to the `transport` section are persisted and take effect at the
# next start (the link that carries the ack is not torn down under it).
#
# Memory: the Link imports this module (and with it the validator) for each
# config message and unloads them after it, so a RemoteConfig lives for one
# message; the Link keeps the counters. The message's JSON text is dropped
# once it is parsed, and the raw config once it is validated.

import json
import os
import sys

from edgestream_agent import unload
from edgestream_agent.wire import message


class RemoteConfig:
    def __init__(self, dev, boot, version, path="agent.json", validate=None, apply=None):
        self.dev = dev
        self.boot = boot
        self.version = version      # of the running config
        self.path = path
        self._validate = validate   # raw dict -> normalised dict (raises ValueError); default config.validate
        self._apply = apply         # normalised config dict -> None (Agent.apply(c, validated=True))
        self.accepted = 0
        self.refused = 0
        self.last_error = None

    def handle(self, payload):
        # -> (version, ok, error, ack payload bytes). Never raises for bad input.
        version = 0
        try:
            if isinstance(payload, dict):
                m = payload
            else:
                from edgestream_agent.wire_in import read
                try:
                    m = read(payload, "config")
                except ValueError as e:  # ConfigError: "<field>: <reason>"
                    raise _Nack(str(e))
            payload = None
            version = m["version"]
            if m["dev"] != self.dev:
                raise _Nack("dev: config for %r sent to %r" % (m["dev"], self.dev))
            if version == self.version:
                return self._ack(version, True, None)
            if version < self.version:
                raise _Nack("version: %d is older than the running version %d" % (version, self.version))
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
            loaded = "edgestream_agent.config" in sys.modules
            try:
                if self._validate is None:
                    from edgestream_agent.config import validate
                    ncfg = validate(cfg)
                    del validate
                else:
                    ncfg = self._validate(cfg)
            except ValueError as e:  # ConfigError: message starts with the path
                raise _Nack(str(e))
            # The validator's code leaves the heap before the new sensors are
            # built (it is loaded again for the next config message), unless
            # it was loaded before this message came.
            if not loaded:
                unload("config")
            # the raw config is kept as its JSON text for the file (smaller
            # than the dict) while the new sensors are built
            text = json.dumps(cfg) if self.path else None
            cfg = m = None
            try:
                if self._apply:
                    self._apply(ncfg)  # the normalised config (Agent.apply(c, validated=True))
            except MemoryError:
                raise _Nack("memory: not enough heap to apply the config")
            except Exception as e:  # the running config stays in place
                raise _Nack("apply: %s: %s" % (e.__class__.__name__, e))
            ncfg = None
            self.version = version
            err = self._persist(text)
            self.accepted += 1
            return self._ack(version, True, err)
        except _Nack as e:
            self.refused += 1
            self.last_error = e.reason
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
