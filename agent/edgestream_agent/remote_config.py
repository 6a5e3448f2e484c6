# Remote config: a new agent.json pushed by the hub, applied without a reboot.
#
# The hub publishes a wire "config" message (retained) on
# <prefix>/<device>/config, or sends it as a serial frame. The link reads it
# (wire_in.read: as strict as the shared decoder; the version must be in
# 1..2**31-1) and takes it through these steps (Link._rx), each refusal a
# nack naming the field or the step:
#   1. admit(m, dev, running): is it for this device and newer than the
#      running version? The same version again (the retained copy after a
#      reconnect) is acknowledged without applying anything; an older one is
#      refused, unless the message says "force": true (the way back from a
#      version set too high: docs/wire.md). -> the raw config to validate,
#   2. the link validates it (config.validate, the transport included) and
#      unloads the validator again,
#   3. commit(cfg, text, path, apply): hands the normalised config to
#      apply(cfg) (Agent.apply(cfg, validated=True) rebuilds only the
#      sensors and windows whose config changed) and persists it to
#      agent.json (written to agent.json.tmp, then renamed, so a power cut
#      leaves the old file or the new one, never half of one),
#   4. the link sends the ack: {"kind":"ack","version":N,"ok":true} or a nack
#      with "ok":false and "error" naming the field ("sensors[0].windows[0].
#      size_ms: must be > 0"), or, when the heap is too small, the step
#      ("memory: not enough heap to build sensors[2] (x) (31024 bytes free)").
#      An invalid config never replaces the running one.
# Changes to the `transport` section are persisted and take effect at the
# next start (the link that carries the ack is not torn down under it).
#
# Memory: the link imports this module for steps 1 and 3 and unloads it in
# between, so it is never on the heap next to the validator (the peak of a
# config message: the validator's code, the raw and the normalised config).
# The raw config is dropped once it is validated (kept as JSON text for the
# file).

import os

from edgestream_agent import no_heap


def admit(m, dev, running):
    # m: a config message as wire_in.read returns it, dev: this device,
    # running: the running config's version -> (version, cfg, error): cfg the
    # raw config to validate (its version and device filled in), or None
    # with error None (the running version again: acked, nothing applied) or
    # with the reason of the nack.
    version = m["version"]
    if m["dev"] != dev:
        return version, None, "dev: config for %r sent to %r" % (m["dev"], dev)
    if version == running:
        return version, None, None
    if version < running and not m.get("force"):
        return version, None, ("version: %d is older than the running version %d (send it with \"force\": true "
                               "to go back)" % (version, running))
    cfg = m["config"]
    if "version" in cfg and cfg["version"] != version:
        return version, None, "config.version: %r does not match the message version %d" % (cfg["version"], version)
    cfg["version"] = version
    if "device" not in cfg and "device_id" not in cfg:
        cfg["device"] = dev
    d = cfg.get("device", cfg.get("device_id"))
    if d != dev:
        return version, None, "device: the device id cannot change remotely (%r -> %r)" % (dev, d)
    return version, cfg, None


def commit(cfg, text, path, apply):
    # cfg: the normalised config, text: the raw one as JSON (for the file),
    # apply: normalised config -> None (Agent.apply(c, validated=True)) ->
    # (ok, error): error the nack's reason, or with ok a note for the ack
    # when the file could not be written (applied, but it will not survive
    # a reboot). A failed apply leaves the running config in place.
    try:
        if apply is not None:
            apply(cfg)
    except MemoryError as e:
        # Agent._build names the sensor it was building ("sensors[2] (x)");
        # elsewhere (loading reconfig, a source) the port's own text says nothing
        w = e.args[0] if e.args else None
        cfg = text = e = None
        return False, no_heap("build " + w if isinstance(w, str) and w.startswith("sensors[") else "apply the config")
    except Exception as e:
        return False, "apply: %s: %s" % (e.__class__.__name__, e)
    cfg = None
    return True, _persist(text, path)


def _persist(text, path):
    # -> None, or a note for the ack when the file could not be written
    if not path:
        return None
    tmp = path + ".tmp"
    try:
        with open(tmp, "w") as f:
            f.write(text)
        try:
            os.rename(tmp, path)
        except OSError:
            # some VFS refuse to rename over an existing file
            os.remove(path)
            os.rename(tmp, path)
        return None
    except OSError as e:
        return "persist: %s" % e
