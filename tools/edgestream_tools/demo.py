"""``edgestream demo``: a small plant, end to end, with the commands a user runs.

1. a broker: ``edgestream broker run`` (mosquitto with the project's config),
   or ``--embedded`` (amqtt, pure Python) where mosquitto is missing;
2. the hub: ``edgestream hub run`` on ``examples/demo/hub.yaml``: 10 s
   averages into SQLite joined with a fleet table, temperature alerts
   (``CASE``/``HAVING``) into a file, "machine running" sessions from a
   vibration sensor, durable state, the device registry and the console;
3. three virtual boards (``edgestream vboard``), each deployed with
   ``edgestream agent deploy`` through ``mpremote``: ``press-1`` (esp32,
   ``.mpy``, MQTT), ``conveyor-2`` (rp2040, ``.mpy``, on a serial cable to
   the hub), ``cooler-3`` (tiny: a 64 KB heap, agent frozen in, MQTT);
4. a live view of the devices and the latest results (plain lines when
   stdout is not a terminal); halfway, ``edgestream devices push-config``
   sends press-1 a new config and shows its ack, then the broker is
   restarted once;
5. at Ctrl-C or after ``--duration``: everything it started is stopped
   (also when the reader of stdout goes away: exit 141), and the outputs
   and a one-line summary are printed: records, gaps and missing from the
   hub's device registry, duplicates counted in the outputs (the copies a
   broker restart redelivers are dropped by sequence number, and said).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgestream_hub.errors import EdgeStreamError, StartError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "demo"
DEFAULT_DIR = ".edgestream/demo"
#: a demo folder holds this file, so the next run may clear it (and no other folder)
MARK = ".edgestream-demo"
#: held (flock) by the demo running in the folder, so a second one refuses instead of clearing it
LOCK = ".edgestream-demo.lock"
#: seconds after the start when the config push and the broker restart come, without --duration
EVENTS_AT_S = 30.0
#: how long the broker stays down at its restart
BROKER_DOWN_S = 2.0
CONSOLE_PORT = 8710


@dataclass(frozen=True)
class Board:
    """One virtual board of the demo: its agent config (in examples/demo), heap profile and firmware."""

    device: str
    board: str
    profile: str
    link: str

    @property
    def describe(self) -> str:
        fw = "agent frozen in" if self.profile == "frozen" else ".mpy files"
        return f"{self.device} ({self.board} heap, {fw}, {self.link})"


BOARDS = (Board("press-1", "esp32", "mpy", "mqtt"),
          Board("conveyor-2", "rp2040", "mpy", "serial"),
          Board("cooler-3", "tiny", "frozen", "mqtt"))
#: the board that gets a new config halfway, and the file with it (examples/demo)
PUSHED = ("press-1", "press-1.v2.json")


def _agent(device: str) -> dict[str, Any]:
    """A demo board's agent config without its transport (the link tests and benches add their own)."""
    try:
        cfg = json.loads((EXAMPLE / f"{device}.json").read_text())
    except (OSError, ValueError):
        return {}
    cfg.pop("transport", None)
    return dict(cfg)


#: the press's agent: two sensors (vibration, temperature), four filters, 1 s windows
AGENT = _agent("press-1")


class DemoError(EdgeStreamError):
    """A part of the demo could not start or failed: the message says which and where its log is."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--duration", "--seconds", type=_seconds, default=None, metavar="S",
                   help="run S seconds once the boards are up, then stop (default: until Ctrl-C)")
    p.add_argument("--dir", default=DEFAULT_DIR, metavar="D",
                   help=f"folder of the run: configs, outputs, state, logs (default {DEFAULT_DIR}; cleared first)")
    p.add_argument("--broker", default="auto", choices=("auto", "mosquitto", "embedded"),
                   help="auto: mosquitto when installed, else the embedded pure-Python broker")


def _seconds(text: str) -> float:
    try:
        s = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 10 <= s <= 86400:
        raise argparse.ArgumentTypeError(f"{s:g}: the demo runs 10 to 86400 seconds")
    return s


def _say(text: str) -> None:
    """A progress line: on stderr, so stdout carries only the view (and a closed stdout stops the demo)."""
    try:
        print(f"demo: {text}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


# -- processes --------------------------------------------------------------------------
class Procs:
    """The processes the demo started, each with its log file; stopped in reverse order."""

    def __init__(self, logs: Path) -> None:
        from edgestream_hub.parent_death import die_with_parent

        self._die_with_demo = die_with_parent(signal.SIGTERM)  # each stops itself when the demo dies, however
        self.logs = logs
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start ``edgestream <argv>`` in its own session (Ctrl-C reaches only the demo, which stops it)."""
        log = self.logs / f"{name}.log"
        with open(log, "ab") as out:
            p = subprocess.Popen([sys.executable, "-m", "edgestream_tools.cli", *argv], stdin=subprocess.DEVNULL,
                                 stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                 preexec_fn=self._die_with_demo, env=dict(os.environ if env is None else env,
                                                                       PYTHONUNBUFFERED="1"))
        self.running[name] = p
        return p

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def tail(self, name: str, n: int = 12) -> str:
        try:
            lines = self.log(name).read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return "\n".join("  | " + line for line in lines[-n:])

    def stop(self, name: str, timeout: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; the exit code (None if it was not running)."""
        p = self.running.pop(name, None)
        if p is None:
            return None
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        return p.returncode

    def stop_all(self) -> None:
        for name in reversed(list(self.running)):
            self.stop(name, 10.0)


def _wait(what: str, ready: Any, timeout: float, proc: subprocess.Popen[bytes] | None = None,
          log: str = "") -> Any:
    """Poll ``ready()`` until it returns something true; DemoError when ``proc`` ends or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = ready()
        if got:
            return got
        if proc is not None and proc.poll() is not None:
            raise DemoError(f"{what} exited {proc.returncode}:\n{log}")
        time.sleep(0.1)
    raise DemoError(f"{what}: not ready within {timeout:g} s")


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


# -- the run folder -------------------------------------------------------------------------
def claim(folder: Path) -> int:
    """Make ``folder`` this run's: refuse a file, a folder of something else, or one another demo runs in (it
    holds the lock); returns the lock's descriptor, held until the process ends."""
    from edgestream_hub import pidlock

    if folder.exists() and not folder.is_dir():
        raise DemoError(f"--dir {folder}: is not a folder: choose an empty or new folder")
    try:
        if folder.exists() and any(p.name != LOCK for p in folder.iterdir()) and not (folder / MARK).exists():
            raise DemoError(f"--dir {folder}: not empty and not a demo folder: choose an empty or new folder")
        folder.mkdir(parents=True, exist_ok=True)
        return pidlock.take(folder / LOCK)
    except pidlock.Held as e:
        raise DemoError(f"--dir {folder}: in use by another demo (pid {e.holder}): stop it, or give this one "
                        "another --dir") from None
    except OSError as e:
        raise DemoError(f"--dir {folder}: cannot use it: {e.strerror or e}") from e


def prepare(folder: Path, broker_port: int) -> dict[str, Path]:
    """Clear the demo folder (``claim`` made it this run's) and lay it out: hub.yaml and its table, the agents'
    configs (with the port)."""
    if not EXAMPLE.is_dir():
        raise DemoError(f"the demo's configs are not at {EXAMPLE}: run the demo from a clone of the repository")
    for old in folder.iterdir():
        if old.name == LOCK:
            continue
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        else:
            old.unlink()
    for sub in ("configs", "boards", "logs", "out"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / MARK).write_text("a folder of `edgestream demo`: the next run clears it\n")
    for name in ("hub.yaml", "fleet.csv"):
        shutil.copy(EXAMPLE / name, folder / name)
    paths = {}
    for src in sorted(EXAMPLE.glob("*.json")):
        cfg = json.loads(src.read_text())
        mqtt = (cfg.get("transport") or {}).get("mqtt")
        if mqtt is not None:
            mqtt["port"] = broker_port
        dst = folder / "configs" / src.name
        dst.write_text(json.dumps(cfg, indent=2) + "\n")
        paths[src.stem] = dst
    return paths


# -- the demo -----------------------------------------------------------------------------------
@dataclass
class Run:
    """What happened, for the view and the summary."""

    folder: Path
    broker_kind: str
    broker_port: int
    console: str
    started: float = field(default_factory=time.monotonic)
    duration: float | None = None
    events: list[str] = field(default_factory=list)
    pushed: str | None = None      # "applied v1", "refused ...", "no answer"
    restarts: int = 0
    broker_down_s: float = 0.0
    broker_up: bool = True
    screen: bool = False           # the view redraws a terminal: events show there, not as stderr lines

    def event(self, text: str) -> None:
        self.events.append(f"{self.elapsed():5.0f}s  {text}")
        if not self.screen:
            _say(text)

    def elapsed(self) -> float:
        return time.monotonic() - self.started


def _broker_kind(choice: str) -> str:
    from edgestream_tools import embedded_broker
    from edgestream_tools.broker import find_mosquitto

    if choice in ("auto", "mosquitto"):
        try:
            find_mosquitto()
            return "mosquitto"
        except StartError:
            if choice == "mosquitto":
                raise
    if not embedded_broker.available():
        raise DemoError("no broker: mosquitto is not installed (`sudo apt-get install -y mosquitto`) and neither is "
                        "the embedded one (`pip install 'edgestream[embedded-broker]'`); `make demo` installs one")
    return "embedded"


class _Stop(Exception):
    """Ctrl-C, SIGTERM or SIGHUP: stop the demo (cleanly)."""


def run(args: argparse.Namespace) -> int:
    from edgestream_tools.broker import free_port

    folder = Path(args.dir).resolve()
    kind = _broker_kind(args.broker)
    port = free_port()
    claim(folder)  # the descriptor stays open (the lock held) until the process ends
    configs = prepare(folder, port)
    procs = Procs(folder / "logs")
    api_port = CONSOLE_PORT if _port_free(CONSOLE_PORT) else free_port()
    state = Run(folder, kind, port, f"http://127.0.0.1:{api_port}/", duration=args.duration)

    def on_signal(signum: int, frame: Any) -> None:
        raise _Stop

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGHUP)}
    cable = None
    gone = False
    interrupted = False
    try:
        try:
            _start_broker(procs, state)
            cable = _start_hub(procs, state, api_port)
            _start_boards(procs, state, configs)
            state.started = time.monotonic()
            _live(procs, state, configs)
        except (KeyboardInterrupt, _Stop):
            interrupted = True
            _say("stopping")
        except BrokenPipeError:
            gone = True
        _stop_all(procs, state, cable)
        cable = None
    finally:
        if cable is not None:
            cable.close()
        procs.stop_all()
        for s, h in previous.items():
            signal.signal(s, h)
    ok = _summary(procs, state)
    if gone:
        raise BrokenPipeError  # after the cleanup: `edgestream` exits 141, quietly
    if interrupted and args.duration is not None:
        return 130  # stopped before its time; without --duration, Ctrl-C is how the demo ends
    return 0 if ok else 1


def _start_broker(procs: Procs, state: Run) -> None:
    """``edgestream broker run`` on the run's port and folder (again after a stop: the same sessions)."""
    argv = ["broker", "run", "--port", str(state.broker_port), "--dir", str(state.folder / "broker")]
    if state.broker_kind == "embedded":
        argv.append("--embedded")
    p = procs.start("broker", argv)
    _wait("the broker", lambda: _listening(state.broker_port), 20, p, procs.tail("broker"))
    what = "mosquitto, the project's config" if state.broker_kind == "mosquitto" else "embedded amqtt"
    if not state.screen:
        _say(f"broker: {what}, on 127.0.0.1:{state.broker_port} (edgestream broker run; log {procs.log('broker')})")


def _start_hub(procs: Procs, state: Run, api_port: int) -> Any:
    from edgestream_tools.serial_cable import SerialCable

    board_dir = state.folder / "boards" / "conveyor-2"
    board_dir.mkdir(parents=True, exist_ok=True)
    cable = SerialCable(board_dir / "tty", state.folder / "tty-conveyor-2")
    p = procs.start("hub", ["hub", "run", "-c", str(state.folder / "hub.yaml"),
                            "--set", f"broker.port={state.broker_port}",
                            "--set", f"api.listen=127.0.0.1:{api_port}"])
    from edgestream_tools.demo_view import api_get

    _wait("the hub", lambda: api_get(state.console, "/api/devices") is not None, 60, p, procs.tail("hub"))
    _say(f"hub: {state.folder / 'hub.yaml'} (edgestream hub run; log {procs.log('hub')})")
    _say(f"console: {state.console}")
    return cable


def _vboard_port(procs: Procs, name: str) -> str | None:
    try:
        for line in procs.log(name).read_text(errors="replace").splitlines():
            if line.startswith("vboard: ") and " on " in line:
                return line.rsplit(" on ", 1)[1].strip()
    except OSError:
        pass
    return None


def _start_boards(procs: Procs, state: Run, configs: dict[str, Path]) -> None:
    for b in BOARDS:
        procs.start(f"vboard-{b.device}", ["vboard", "--board", b.board, "--profile", b.profile,
                                           "--dir", str(state.folder / "boards" / b.device)])
    ports = {}
    for b in BOARDS:
        name = f"vboard-{b.device}"
        ports[b.device] = _wait(f"virtual board {b.device}", lambda n=name: _vboard_port(procs, n), 60,
                                procs.running[name], procs.tail(name))
    _say("deploying: " + "; ".join(f"{b.describe} on {ports[b.device]}" for b in BOARDS)
         + " (edgestream agent deploy, through mpremote)")
    deploys = {b.device: procs.start(f"deploy-{b.device}", ["agent", "deploy", "--port", ports[b.device],
                                                             "--config", str(configs[b.device]), "--board", b.board])
               for b in BOARDS}
    deadline = time.monotonic() + 180
    for dev, p in deploys.items():
        try:
            rc = p.wait(max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            rc = None
        procs.running.pop(f"deploy-{dev}", None)
        if rc != 0:
            if rc is None:
                p.kill()
                p.wait(10)
            raise DemoError(f"deploying {dev} failed (exit {rc}); its log {procs.log(f'deploy-{dev}')}:\n"
                            f"{procs.tail(f'deploy-{dev}')}")
        ready = [ln for ln in procs.tail(f"deploy-{dev}", 40).splitlines() if "edgestream: ready" in ln]
        _say(f"{dev}: deployed; {ready[-1].strip(' |') if ready else 'the agent runs'}")


def _live(procs: Procs, state: Run, configs: dict[str, Path]) -> None:
    """The view until the end; halfway, the config push and then the broker restart."""
    from edgestream_tools.demo_view import View

    view = View(state, sys.stdout)
    state.screen = view.tty and os.isatty(2)
    events_at = state.duration / 2 if state.duration is not None else EVENTS_AT_S
    push: subprocess.Popen[bytes] | None = None
    restart_at: float | None = None
    while state.duration is None or state.elapsed() < state.duration:
        now = state.elapsed()
        if push is None and state.pushed is None and now >= events_at:
            device, file = PUSHED
            state.event(f"push-config: {device} gets {file} (edgestream devices push-config)")
            push = procs.start("push-config", ["devices", "push-config", device, str(configs[Path(file).stem]),
                                               "-c", str(state.folder / "hub.yaml"),
                                               "--set", f"broker.port={state.broker_port}", "--timeout", "30"])
        if push is not None and push.poll() is not None:
            procs.running.pop("push-config", None)
            said = procs.tail("push-config", 3).replace("  | ", "").strip().splitlines()
            answer = said[-1] if said else f"exit {push.returncode}"
            state.pushed = answer if push.returncode == 0 else f"not applied (exit {push.returncode}): {answer}"
            state.event(f"push-config: {answer}")
            push = None
            restart_at = state.elapsed() + 1.0
        if restart_at is not None and state.elapsed() >= restart_at:
            restart_at = None
            _restart_broker(procs, state, view)
        for p_name in ("broker", "hub"):
            p = procs.running.get(p_name)
            if p is not None and p.poll() is not None:
                raise DemoError(f"the {p_name} exited {p.returncode}; its log {procs.log(p_name)}:\n"
                                f"{procs.tail(p_name)}")
        view.refresh()
        time.sleep(1.0)
    view.refresh()


def _restart_broker(procs: Procs, state: Run, view: Any) -> None:
    state.event("broker: stopping it, to show nothing is lost (the boards buffer, the hub's session waits)")
    t0 = time.monotonic()
    procs.stop("broker")
    state.broker_up = False
    view.refresh()
    time.sleep(BROKER_DOWN_S)
    _start_broker(procs, state)
    state.broker_up = True
    state.restarts += 1
    state.broker_down_s = time.monotonic() - t0
    state.event(f"broker: up again after {state.broker_down_s:.1f} s")


def _stop_all(procs: Procs, state: Run, cable: Any) -> None:
    """Stop the boards first (no new results), let the hub take what is on its way, then the hub and the broker."""
    for b in BOARDS:
        procs.stop(f"vboard-{b.device}")
    if "hub" in procs.running and "broker" in procs.running:
        time.sleep(2.0)
    for name in [n for n in procs.running if n not in ("hub", "broker")]:
        procs.stop(name)
    code = procs.stop("hub", 30.0)
    if code not in (None, 0):
        _say(f"the hub exited {code} (log {procs.log('hub')})")
    if cable is not None:
        cable.close()
    procs.stop("broker")


# -- the summary -------------------------------------------------------------------------------------
def _registry(state: Run) -> list[dict[str, Any]]:
    """The hub's device registry, read as a user would: ``edgestream devices list --json``."""
    done = subprocess.run([sys.executable, "-m", "edgestream_tools.cli", "devices", "list", "--json",
                           "-c", str(state.folder / "hub.yaml"), "--set", f"broker.port={state.broker_port}"],
                          capture_output=True, timeout=60)
    return [json.loads(line) for line in done.stdout.decode().splitlines() if line.strip()]


def _rows(db: Path, table: str) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            return int(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    except sqlite3.Error:
        return 0


def _repeated(counts: Counter[Any]) -> int:
    return sum(n - 1 for n in counts.values() if n > 1)


def _output_duplicates(out: Path) -> int:
    """Results the outputs hold more than once: the archive by (device, boot, seq), the SQLite tables by the
    window's result id (a redelivered message the hub dropped by its sequence number is not one of them)."""
    archive: Counter[Any] = Counter()
    try:
        with (out / "results.jsonl").open("rb") as f:
            for line in f:
                try:
                    r = json.loads(line)
                except ValueError:
                    continue
                archive[(r.get("device"), r.get("boot"), r.get("seq"))] += 1
    except OSError:
        pass
    repeated = _repeated(archive)
    db = out / "plant.db"
    if db.exists():
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
                for table in ("averages", "running"):
                    ids = Counter(row[0] for row in con.execute(f'SELECT "_id" FROM {table}'))
                    repeated += _repeated(ids)
        except sqlite3.Error:
            pass
    return repeated


def _lines(path: Path) -> int:
    try:
        with path.open("rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


def _summary(procs: Procs, state: Run) -> bool:
    """Print where the outputs are and one line of totals; True when results came, none lost or repeated,
    and a config push that was made was applied."""
    out = state.folder / "out"
    devices = _registry(state) if (state.folder / "state" / "devices.json").exists() else []

    def total(key: str) -> int:
        return sum(int(d.get(key) or 0) for d in devices)

    records, gaps, dropped, missing = (total(k) for k in ("results_received", "gaps", "duplicates", "missing"))
    dups = _output_duplicates(out)
    averages, running = _rows(out / "plant.db", "averages"), _rows(out / "plant.db", "running")
    alerts = _lines(out / "alerts.jsonl")
    _say(f"outputs in {out}: plant.db (tables averages: {averages} rows, running: {running}), "
         f"alerts.jsonl ({alerts}), results.jsonl ({_lines(out / 'results.jsonl')} results as received), "
         f"dead-letters.jsonl ({_lines(out / 'dead-letters.jsonl')})")
    _say(f"device registry {state.folder / 'state' / 'devices.json'} (edgestream devices list -c "
         f"{state.folder / 'hub.yaml'}); logs in {state.folder / 'logs'}")
    pushed = state.pushed or "not reached"
    restart = (f"broker restarted {state.restarts}x (down {state.broker_down_s:.1f} s)" if state.restarts
               else "broker not restarted")
    line = (f"summary: {records} records from {len(devices)} devices, {averages + running + alerts} windows, "
            f"gaps {gaps}, missing {missing}, duplicates {dups}; config push: {pushed}; {restart}")
    if dropped:
        _say(f"redelivered: {dropped} copies of results the hub already had (the broker and the boards resend "
             "what was not acknowledged when the connection went), dropped by their sequence numbers")
    _say(line)
    refused = state.pushed is not None and not state.pushed.endswith(" applied")
    return bool(records) and gaps == 0 and dups == 0 and missing == 0 and not refused

