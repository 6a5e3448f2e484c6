"""``edgestream agent check``: does the agent, as a board starts it, fit the board's heap?

Measured, not estimated: the agent is started under the board's MicroPython
profile exactly as ``main.py`` starts it on a board (``edgestream_agent.main``:
the config, the link the config names, its buffers), three times at once:

1. **start**, in the board's heap, nothing else loaded: does it start, and
   how much heap is used and free after start (the agent's own ``ready``
   console line, after ``gc.collect()``)?
2. **breakdown**, in a heap four times larger (at least 1 MB; 16 MB for a
   config far too large), with a meter around each part
   the config sizes: each sensor's pipeline (filters, windows and their
   rings), the link (its offline buffer, its MQTT client or serial transport
   and their buffers); the rest is the agent's code and state.
3. **remote config**, in the board's heap: right after start, the same
   config comes back as a remote config message (a newer version, the same
   size; a config that grows the windows needs that much more), handed to
   the link as the transport hands one over (``Link.inbox``) and handled by
   the link's own task (``Link.poll``), the path a board's messages take; a
   ballast block of growing size, held meanwhile, finds the free heap it
   needs for a moment (within 256 bytes). An agent without a transport
   receives no remote config: none is measured.

It fits when it starts and a remote config is applied with the heap it has
left (the margin: free after start minus what the config message needs).
A board's own link endpoints are not contacted: the MQTT broker becomes a
closed port on loopback, a serial port a pty, NTP loopback; hardware sources
(ADC, pins, I2C) are measured as simulated ones. What the unix port cannot
show (a TLS session's buffers, the WiFi stack) is named in a note.

``agent replay --board`` and ``agent deploy`` use the same measurement.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgestream_hub.errors import EdgeStreamError
from edgestream_tools import micropython as mp


class CheckError(EdgeStreamError):
    """The config is invalid, or the check itself could not run."""


class DoesNotFit(EdgeStreamError):
    """The agent does not fit the board's heap: the message says what takes the memory."""

    exit_code = 3


#: Hardware source types the unix port lacks: measured as a simulated source.
HARDWARE_SOURCES = ("adc", "pin", "i2c", "internal_temp")
BREAKDOWN_FACTOR = 4   # the breakdown's heap: this many times the board's (at least 1 MB) ...
LARGEST = 16 << 20     # ... or this, for a config far too large
_TIMEOUT = 120.0
VERSION_MAX = 2**31 - 1  # a config's version, at most (the agent's validator)

# Each run is a board folder booted as the virtual board boots one
# (vboard.boot_args: the board's filesystem, sys.path, main.py), holding
# agent.json, the .mpy bundle in lib/ (mpy profile) and a main.py:
# run 1 starts the agent as deploy's main.py does, for 1 ms: it stops right
# after start.
_START = "from edgestream_agent.main import main\nmain('agent.json', 1)\n"
_READY = re.compile(rb"edgestream: ready .*heap_free=(\d+) heap_used=(\d+)")

# Run 2: meters around the parts a config sizes; prints them at the first
# scheduler step after start, then stops the agent.
_BREAKDOWN = r"""
KIND = %r
import gc, json
import edgestream_agent.pipeline as pipeline
import edgestream_agent.link as link
import edgestream_agent.offline_buffer as offline_buffer
import edgestream_agent.scheduler as scheduler
parts = {}
def meter(cls, key):
    init = cls.__init__
    def w(self, *a, **k):
        gc.collect()
        b = gc.mem_alloc()
        init(self, *a, **k)
        gc.collect()
        n = key(a)
        parts[n] = parts.get(n, 0) + gc.mem_alloc() - b
    cls.__init__ = w
meter(pipeline.Pipeline, lambda a: 'sensor ' + a[0]['name'])
meter(link.Link, lambda a: 'link')
meter(offline_buffer.OfflineBuffer, lambda a: 'offline buffer')
if KIND == 'mqtt':
    import edgestream_agent.mqtt as mqtt
    meter(mqtt.MQTTClient, lambda a: 'transport')
elif KIND == 'serial':
    import edgestream_agent.serial_link as serial_link
    meter(serial_link.SerialTransport, lambda a: 'transport')
def step(self):
    gc.collect()
    print('@@check', json.dumps({'used': gc.mem_alloc(), 'parts': parts}))
    self.stop()
    return 0
scheduler.Scheduler.step = step
from edgestream_agent.main import main
main('agent.json')
"""

# Run 3: at the first scheduler step after start, the remote config
# message (files m0, m1, ...: newer versions of the same config) reaches the
# link the way a transport hands it over (Link.inbox) and is handled by the
# link's own task (Link.poll), with a ballast held (binary search on its
# size); prints the free heap after start and the largest ballast with which
# it was still applied. The check plays the network: the transport is up,
# what the link sends (the ack) is taken as sent, results stay buffered.
_REMOTE = r"""
TRIALS = %d
import gc, json
import edgestream_agent.link as _link
import edgestream_agent.scheduler as _sched
links = []
attach = _link.Link.attach
def att(self, *a):
    links.append(self)
    return attach(self, *a)
_link.Link.attach = att
step0 = _sched.Scheduler.step
def step(self):
    _sched.Scheduler.step = step0
    self.stop()
    lk = links[0]
    sent = []
    tx = lk.tx
    tx.up = lambda: True
    tx.control = lambda kind, payload: sent.append(payload) or True
    tx.send = lambda payload, dup=False: None
    n = [0]
    def trial(size):
        # the message, as a transport holds it (its bytes are part of the
        # need; the file's read buffer is gone), then a ballast that takes
        # `size` bytes in the largest blocks it finds
        gc.collect()
        with open('m%%d' %% n[0], 'rb') as f:
            msg = f.read()
        n[0] += 1
        gc.collect()
        ballast = []
        chunk = left = size
        while left > 0 and chunk >= 64:
            try:
                ballast.append(bytearray(min(chunk, left)))
                left -= min(chunk, left)
            except MemoryError:
                chunk //= 2
        if left > 0:
            return False
        applied = lk.cfg_applied
        lk.inbox(msg, 'config')
        msg = None
        lk.poll()
        ballast = None
        del sent[:]
        gc.collect()
        return lk.cfg_applied > applied
    gc.collect()
    free = gc.mem_free()
    best = 0 if trial(0) else None
    if best is not None:
        hi = free
        while hi - best > 256 and n[0] < TRIALS:
            mid = (best + hi) // 2
            if trial(mid):
                best = mid
            else:
                hi = mid
    print('@@check', json.dumps({'free': free, 'ballast': best}))
    return 0
_sched.Scheduler.step = step
from edgestream_agent.main import main
main('agent.json')
"""
_TRIALS = 16

# What a MemoryError was doing, by the innermost agent module in its traceback.
_DOING = (
    ("config", "validating the config"),
    ("offline_buffer", "allocating the offline buffer (transport.buffer_bytes)"),
    ("mqtt", "allocating the MQTT client's buffers (mqtt.rx_bytes, mqtt.tx_bytes)"),
    ("serial_link", "opening the serial transport"),
    ("link", "building the link"),
    ("ring_window", "building a sliding window's ring"),
    ("tumbling_window", "building a tumbling window"),
    ("pipeline", "building a sensor's pipeline"),
    ("filters", "building a filter"),
    ("sources", "building a source"),
    ("main", "starting: the validated config is held twice for a moment"),
)


@dataclass
class Report:
    """What the three runs measured, and the verdict."""

    board: str
    profile: str
    heap: int
    started: bool = False
    used: int = 0
    free: int = 0
    failure: str = ""            # what the start printed when it failed
    parts: dict[str, int] = field(default_factory=dict)
    total: int = 0               # heap used after start in the larger heap
    config_need: int | None = None  # free heap a remote config needs for a moment
    config_applied: bool = False    # applied after start in the board's heap
    checked_config: bool = False    # the remote-config run ran
    receives_configs: bool = True   # it has a transport a remote config can come by
    notes: list[str] = field(default_factory=list)

    @property
    def margin(self) -> int | None:
        return None if self.config_need is None else self.free - self.config_need

    @property
    def fits(self) -> bool:
        return self.started and (self.config_applied or not self.receives_configs)

    def memory(self) -> str:
        """What takes the memory, largest first (from the breakdown run)."""
        if not self.parts:
            return "the breakdown run did not finish"
        sensors = {k[7:]: v for k, v in self.parts.items() if k.startswith("sensor ")}
        link = self.parts.get("link", 0)
        rest = self.total - sum(sensors.values()) - link
        pieces = []
        if sensors:
            per = ", ".join(f"{n} {_kb(v)}" for n, v in sorted(sensors.items(), key=lambda kv: -kv[1]))
            pieces.append((sum(sensors.values()), f"the sensors' filters and windows {_kb(sum(sensors.values()))} "
                                                  f"({per}; the first sensor to use a filter or window type "
                                                  f"also loads its code)"))
        if link:
            inner = [f"offline buffer {_kb(self.parts['offline buffer'])}"] if "offline buffer" in self.parts else []
            if "transport" in self.parts:
                inner.append(f"transport with its buffers {_kb(self.parts['transport'])}")
            pieces.append((link, f"the link {_kb(link)}" + (f" ({', '.join(inner)})" if inner else "")))
        pieces.append((rest, f"the agent's code and state {_kb(rest)}"))
        return "; ".join(text for _, text in sorted(pieces, key=lambda p: -p[0]))

    def sentence(self) -> str:
        """One plain sentence: fits, or why not and what takes the memory."""
        where = f"{self.board}'s {self.heap // 1024} KB heap"
        if not self.started:
            doing = _doing(self.failure)
            if "MemoryError" not in self.failure:
                return f"the agent does not start on {self.board}: {_last_line(self.failure)}"
            return (f"the agent does not fit {where}: it runs out of memory while {doing}; "
                    f"after start it takes {_kb(self.total)} (measured in a larger heap): {self.memory()}")
        if not self.fits:
            return (f"the agent starts on {self.board} with {_kb(self.free)} free, but {self._config_text()}: "
                    f"the hub's configs would be refused (memory: nack); what takes the memory: {self.memory()}")
        if not self.receives_configs:
            return f"the agent starts on {self.board} with {_kb(self.free)} free (no transport: no remote config)"
        return f"the agent starts on {self.board} with room for a remote config ({_kb(self.margin or 0)} to spare)"

    def _config_text(self) -> str:
        """Why a remote config does not fit (the remote-config run refused it in the board's heap)."""
        if self.config_need is None:
            return "a remote config is refused even in a larger heap"
        if self.config_need <= self.free:
            return (f"a remote config is refused in the board's heap: its {_kb(self.free)} free are in pieces "
                    f"too small (in a larger heap it needs {_kb(self.config_need)} free for a moment)")
        return (f"a remote config needs {_kb(self.config_need)} free for a moment (measured in a larger heap): "
                f"{_kb(self.config_need - self.free)} short")

    def lines(self) -> list[str]:
        out = [f"agent check: {self.board} ({self.heap // 1024} KB heap, {self.profile} profile)"]
        if self.started:
            out.append(f"  after start: {_kb(self.used)} used, {_kb(self.free)} free")
            if self.config_applied:
                out.append(f"  a remote config needs {_kb(self.config_need or 0)} free for a moment: "
                           f"margin {_kb(self.margin or 0)}")
            elif self.checked_config:
                out.append(f"  {self._config_text()}")
        out.append(f"  what takes the memory: {self.memory()}")
        out += [f"  note: {n}" for n in self.notes]
        return out


def _kb(n: int) -> str:
    return f"{n / 1024:.1f} KB"


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "it printed nothing"


def _doing(traceback: str) -> str:
    # the agent names the sensor it was building (Agent._build: "MemoryError: sensors[2] (x)")
    m = re.search(r"MemoryError: (sensors\[\d+\] \([^)\n]*\))\s*$", traceback.strip())
    if m:
        return f"building {m.group(1)}: its filters, windows and their buffers"
    # frozen modules name their file (edgestream_agent/link.py), a bundle's their module (edgestream_agent.link)
    mods = re.findall(r'File "(?:[^"]*/)?edgestream_agent[./]([a-z_]+)', traceback)
    for mod in reversed(mods):
        for key, phrase in _DOING:
            if mod == key:
                return phrase
    return "loading the agent's code"


def load_config(path: str | Path) -> dict[str, Any]:
    """Read and validate agent.json (the agent's own validator): CheckError naming the path."""
    from edgestream_agent.config import ConfigError, validate

    try:
        raw = json.loads(Path(path).read_text())
    except OSError as e:
        raise CheckError(f"config {path}: {e.strerror or e}") from e
    except ValueError as e:
        raise CheckError(f"config {path}: not JSON: {e}") from e
    try:
        validate(json.loads(json.dumps(raw)))
    except ConfigError as e:
        raise CheckError(f"config {path}: {e}") from e
    return raw


def _for_check(raw: dict[str, Any], serial_port: str, mqtt_port: int) -> tuple[dict[str, Any], list[str]]:
    """The config the check starts: the board's endpoints replaced by local ones (notes say which)."""
    cfg = json.loads(json.dumps(raw))
    # the remote-config run sends newer versions: a version at the top of the range starts a little
    # lower (the same number of digits, so the same size), or the newer ones would be refused for it
    if int(cfg.get("version", 0)) > VERSION_MAX - _TRIALS - 1:
        cfg["version"] = VERSION_MAX - _TRIALS - 1
    notes = []
    for s in cfg["sensors"]:
        src = s.get("source", "sim")
        kind = src if isinstance(src, str) else src.get("type")
        if kind in HARDWARE_SOURCES:
            s["source"] = {"type": "sim"}
            notes.append(f"sensor {s['name']}: its {kind} source is measured as a simulated one")
    t = cfg.get("transport")
    if t:
        if t.get("mqtt"):
            if t["mqtt"].get("tls"):
                notes.append("mqtt.tls: a TLS session's buffers (tens of KB on ESP32) are not measured here")
            t["mqtt"] = dict(t["mqtt"], host="127.0.0.1", port=mqtt_port, tls=False)
        if t.get("type") == "serial":
            port = (t.get("serial") or {}).get("port", "stdio")
            t["serial"] = dict(t.get("serial") or {}, port=serial_port)
            notes.append(f"serial port {port} is measured on a pty")
        if t.get("ntp"):
            t["ntp"] = dict(t["ntp"], host="127.0.0.1")
        if t.get("wifi"):
            notes.append("wifi: the WiFi stack is not measured here (the unix port has none)")
        if t.get("spill_path"):
            t["spill_path"] = "spill"
    return cfg, notes


def _messages(cfg: dict[str, Any], folder: Path, rx_limit: int | None) -> list[str]:
    """Write the remote config messages m0..mN (newer versions of cfg); notes on their size.

    cfg's version leaves room for them (``_for_check``).
    """
    from edgestream_shared.encoder import encode_config

    dev = cfg.get("device", cfg.get("device_id", "edgestream"))
    base = int(cfg.get("version", 0))
    notes = []
    for i in range(_TRIALS + 1):
        new = dict(cfg, version=base + 1 + i)
        msg = encode_config(dev, base + 1 + i, new)
        (folder / f"m{i}").write_bytes(msg)
        if i == 0 and rx_limit is not None and len(msg) > rx_limit:
            notes.append(f"a config message of this size ({len(msg)} bytes) is over transport.mqtt.rx_bytes "
                         f"({rx_limit}): the agent refuses it unread; raise rx_bytes")
    return notes


def _popen(boot_dir: Path, folder: Path, board: str, heap: str | None, profile: str) -> subprocess.Popen:
    from edgestream_tools.vboard import boot_args

    cmd = mp.command(board, profile)
    if heap is not None:
        cmd[-1] = f"heapsize={heap}"
    argv, env = boot_args(boot_dir, folder, ("main.py",))
    return subprocess.Popen(cmd + argv, cwd=folder, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _collect(proc: subprocess.Popen) -> bytes:
    from edgestream_tools.vboard import strip_marks

    try:
        out, _ = proc.communicate(timeout=_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate(timeout=10)
        out += b"\n(the check run did not finish within %d s)" % int(_TIMEOUT)
    return strip_marks(out)


def _marked(out: bytes) -> dict[str, Any] | None:
    for line in out.splitlines():
        if line.startswith(b"@@check "):
            return json.loads(line[8:])
    return None


def measure(config: str | Path, board: str = "esp32", profile: str = "mpy", remote_config: bool = True,
            lib: str | Path | None = None, heap: str | None = None) -> Report:
    """Start the agent of ``config`` under the board's profile; see the module docstring.

    ``heap`` ("64k") replaces the profile's heap: a board's own, when it is smaller.
    """
    raw = load_config(config)
    heap = heap or mp.heap_for(board)
    heap_bytes = int(heap[:-1]) * 1024 if heap.endswith("k") else int(heap)
    rep = Report(board=board, profile=profile, heap=heap_bytes)
    from edgestream_tools.broker import free_port

    larger = f"{max(heap_bytes * BREAKDOWN_FACTOR, 1 << 20) // 1024}k"
    serial_master, serial_slave = os.openpty()  # a serial transport's port: nobody on the other end
    try:
        with tempfile.TemporaryDirectory(prefix="edgestream-check-") as tmp:
            from edgestream_tools.vboard import write_boot, write_module

            work = Path(tmp)
            write_boot(work)
            if lib is None and profile != "frozen":
                lib = mp.mpy_bundle(profile)  # the checkout's .mpy -O3 bundle for the profile's arch, in /lib
            # (the board's filesystem is its folder: a serial port is reached through a link in it)
            cfg, rep.notes = _for_check(raw, "tty", free_port())
            kind = (cfg.get("transport") or {}).get("type", "none")
            if kind == "none":
                rep.receives_configs = remote_config = False
            runs = {}
            for name, code in (("start", _START), ("breakdown", _BREAKDOWN % (kind, )),
                               ("remote", _REMOTE % (_TRIALS, ))):
                if name == "remote" and not remote_config:
                    continue
                d = work / name
                d.mkdir()
                (d / "agent.json").write_text(json.dumps(cfg))
                # the run's code as a compiled module: it interns only the names it uses
                write_module(d, "_check", code)
                (d / "main.py").write_text("import _check\n")
                (d / "tty").symlink_to(os.ttyname(serial_slave))
                if lib is not None:
                    (d / "lib").symlink_to(Path(lib).resolve())
                if name == "remote":
                    mqtt = (cfg.get("transport") or {}).get("mqtt") or {}
                    rep.notes += _messages(cfg, d, mqtt.get("rx_bytes", 2048) if mqtt else None)
                runs[name] = _popen(work, d, board, larger if name == "breakdown" else heap, profile)
            outs = {name: _collect(p) for name, p in runs.items()}
            if _marked(outs["breakdown"]) is None and b"MemoryError" in outs["breakdown"]:
                # a config far too large for the board: measured in a much larger heap
                outs["breakdown"] = _collect(_popen(work, work / "breakdown", board, f"{LARGEST // 1024}k", profile))
            refused = (_marked(outs["remote"]) or {}).get("ballast") is None if "remote" in outs else False
            if refused and _READY.search(outs["start"]):
                # refused in the board's heap: how much it would need, in the larger heap, from the
                # same start (a config the first run applied and saved would be "already running")
                (work / "remote" / "agent.json").write_text(json.dumps(cfg))
                outs["remote-larger"] = _collect(_popen(work, work / "remote", board, larger, profile))
    finally:
        os.close(serial_master)
        os.close(serial_slave)
    m = _READY.search(outs["start"])
    if m:
        rep.started, rep.free, rep.used = True, int(m.group(1)), int(m.group(2))
    else:
        rep.failure = outs["start"].decode(errors="replace")
    b = _marked(outs["breakdown"])
    if b is not None:
        rep.parts, rep.total = b["parts"], b["used"]
    if rep.started and "remote" in outs:
        rep.checked_config = True
        r = _marked(outs["remote"])
        if r is not None and r["ballast"] is not None:
            rep.config_need = r["free"] - r["ballast"]
            rep.config_applied = True
        else:
            r = _marked(outs.get("remote-larger", b""))
            if r is not None and r["ballast"] is not None:
                rep.config_need = r["free"] - r["ballast"]
    return rep


def check_start(config: str | Path, board: str, profile: str = "mpy") -> Report:
    """Only whether it starts (replay's refusal): DoesNotFit with the plain sentence if not."""
    rep = measure(config, board, profile, remote_config=False)
    if not rep.started:
        raise DoesNotFit(rep.sentence())
    return rep
