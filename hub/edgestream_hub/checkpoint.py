"""Checkpoint files: the hub's durable state on disk, atomic, checksummed, versioned and incremental.

A checkpoint holds named *sections* taken at one consistent cut of the hub
(``edgestream_hub.checkpointer`` takes it): ``pipeline/<name>`` (its
processors' snapshots) and ``source/<name>`` (its sequence positions). Each
is one file ``checkpoint-<n>.ckpt`` in the state folder, numbered upwards:

- line 1, the header: a JSON object with ``format`` (``edgestream-checkpoint``),
  ``version``, ``n``, ``kind`` (``full`` or ``delta``), ``base`` (the full
  checkpoint a delta builds on), ``at_ms`` (wall clock), ``names`` (every section
  of the checkpoint), ``written`` (the sections this file holds), ``bytes``
  and ``sha256`` of the body;
- the body: one JSON object, section name -> section.

A *delta* holds only the sections whose JSON changed since the checkpoint
before it; a *full* one holds them all, and every ``full_every``-th write (and
the first one after a start) is full. Checkpoint ``n`` is therefore restored
from its base and every delta after it up to ``n``, each of which must be
present and valid.

Writes are atomic: a temp file, fsync, rename, fsync of the folder, so a crash
at any point leaves the previous checkpoint usable (a temp file left behind is
removed at the next start). ``restore()`` takes the newest checkpoint whose
whole chain is valid and reports every file it had to skip (a checksum that
does not match, a cut file, a version this hub cannot read). ``retain``
checkpoints are kept (with the files they depend on); older ones are deleted.

A running hub holds ``LOCK`` in the folder (``fcntl.flock``), so two hubs never
share one state folder and ``edgestream state reset`` never runs under a live
hub.

    >>> import tempfile
    >>> store = CheckpointStore(tempfile.mkdtemp())
    >>> store.write({"pipeline/p": '{"processors":{}}'}).kind
    'full'
    >>> store.restore().sections
    {'pipeline/p': {'processors': {}}}
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from edgestream_hub.errors import EdgeStreamError

FORMAT = "edgestream-checkpoint"
#: the layout of checkpoint files this hub writes and reads
VERSION = 1
#: the state folder when ``state.dir`` is not set, relative to the config file's folder
DEFAULT_DIR = ".edgestream/state"
#: a test hook: milliseconds to sleep in the middle of writing a checkpoint (so a kill can land there)
WRITE_DELAY_ENV = "EDGESTREAM_TEST_CHECKPOINT_WRITE_DELAY_MS"
_NAME = re.compile(r"^checkpoint-([0-9]{12})\.ckpt$")
_MAX_HEADER = 1 << 20


class CheckpointError(EdgeStreamError):
    """A checkpoint that cannot be used or written; the message names the file and what is wrong."""


class CorruptCheckpoint(CheckpointError):
    """A checkpoint file that is unreadable, cut, fails its checksum, or has a format this hub cannot read."""


class StateLocked(CheckpointError):
    """The state folder is held by a running hub."""


@dataclass
class Header:
    """What line 1 of a checkpoint file says about it."""

    n: int
    kind: str
    base: int
    at_ms: int
    names: list[str]
    written: list[str]
    body_bytes: int
    sha256: str
    version: int = VERSION

    def line(self) -> bytes:
        return json.dumps({"format": FORMAT, "version": self.version, "n": self.n, "kind": self.kind,
                           "base": self.base, "at_ms": self.at_ms, "names": self.names, "written": self.written,
                           "bytes": self.body_bytes, "sha256": self.sha256}, separators=(",", ":")).encode() + b"\n"


@dataclass
class Restored:
    """The newest usable checkpoint: its number, time, sections, the files it was built from, and the
    files that had to be skipped (each with why)."""

    n: int | None = None
    at_ms: int | None = None
    sections: dict[str, Any] = field(default_factory=dict)
    chain: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    legacy: bool = False  # read from the per-pipeline files older hubs wrote


@dataclass
class Written:
    """One checkpoint written: its number, kind (``unchanged``: nothing changed since the last one, which
    stands for it and no file was written), file and size."""

    n: int
    kind: str
    path: Path
    size: int
    at_ms: int


def state_dir(state: dict[str, Any], base_dir: str) -> Path | None:
    """The folder checkpoints go to for a config's ``state`` section (None when ``enabled: false``)."""
    if not state.get("enabled", True):
        return None
    d = Path(state.get("dir") or DEFAULT_DIR).expanduser()
    return d if d.is_absolute() else Path(base_dir) / d


def file_name(n: int) -> str:
    return f"checkpoint-{n:012d}.ckpt"


class CheckpointStore:
    """The checkpoint files of one state folder; see the module doc."""

    def __init__(self, folder: str | os.PathLike[str], *, full_every: int = 10, retain: int = 3) -> None:
        self.dir = Path(folder)
        self.full_every = max(1, full_every)
        self.retain = max(1, retain)
        self._hashes: dict[str, str] | None = None  # section -> sha256 of its JSON, as last written
        self._base = 0
        self._since_full = 0
        self._next = 0
        self._lock_fd: int | None = None
        delay = os.environ.get(WRITE_DELAY_ENV)
        self.write_delay_s = int(delay) / 1000 if delay and delay.isdigit() else 0.0

    # -- listing and reading --
    def numbers(self) -> list[int]:
        """Checkpoint numbers present, ascending."""
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        return sorted(int(m.group(1)) for m in map(_NAME.match, names) if m)

    def path(self, n: int) -> Path:
        return self.dir / file_name(n)

    def header(self, n: int) -> Header:
        """Line 1 of checkpoint ``n`` (body not checked). Raises CorruptCheckpoint."""
        with self._open(n) as f:
            return self._header(f, n)

    def read(self, n: int) -> tuple[Header, dict[str, Any]]:
        """Checkpoint ``n``'s header and sections, checksum verified. Raises CorruptCheckpoint."""
        with self._open(n) as f:
            h = self._header(f, n)
            body = f.read(h.body_bytes + 1)
        where = file_name(n)
        if len(body) != h.body_bytes:
            raise CorruptCheckpoint(f"{where}: cut short ({len(body)} of {h.body_bytes} body bytes)")
        if hashlib.sha256(body).hexdigest() != h.sha256:
            raise CorruptCheckpoint(f"{where}: checksum mismatch (the file was changed or damaged)")
        try:
            sections = json.loads(body)
        except ValueError as e:
            raise CorruptCheckpoint(f"{where}: body is not JSON: {e}") from None
        if not isinstance(sections, dict) or set(sections) != set(h.written):
            raise CorruptCheckpoint(f"{where}: body does not hold the sections its header lists")
        return h, sections

    def _open(self, n: int) -> BinaryIO:
        try:
            return open(self.path(n), "rb")
        except OSError as e:
            raise CorruptCheckpoint(f"{file_name(n)}: cannot read: {e.strerror or e}") from None

    @staticmethod
    def _header(f: BinaryIO, n: int) -> Header:
        where = file_name(n)
        line = f.readline(_MAX_HEADER)
        try:
            h = json.loads(line)
        except ValueError:
            raise CorruptCheckpoint(f"{where}: no readable header") from None
        if not isinstance(h, dict) or h.get("format") != FORMAT:
            raise CorruptCheckpoint(f"{where}: not an EdgeStream checkpoint")
        if h.get("version") != VERSION:
            raise CorruptCheckpoint(f"{where}: format version {h.get('version')!r}; this hub reads version {VERSION}")
        try:
            hd = Header(int(h["n"]), str(h["kind"]), int(h["base"]), int(h["at_ms"]), [str(x) for x in h["names"]],
                        [str(x) for x in h["written"]], int(h["bytes"]), str(h["sha256"]))
        except (KeyError, TypeError, ValueError) as e:
            raise CorruptCheckpoint(f"{where}: header lacks or garbles {e}") from None
        if hd.n != n or hd.kind not in ("full", "delta") or hd.base > n or (hd.kind == "full") != (hd.base == n):
            raise CorruptCheckpoint(f"{where}: header does not fit its file (n {hd.n}, {hd.kind}, base {hd.base})")
        return hd

    def chain(self, n: int, cache: dict[int, Any] | None = None) -> list[tuple[Header, dict[str, Any]]]:
        """The files checkpoint ``n`` is restored from, base first. Raises CorruptCheckpoint naming the first
        bad or missing one."""
        cache = {} if cache is None else cache
        out = []
        k = n
        while True:
            if k not in cache:
                try:
                    cache[k] = self.read(k)
                except CorruptCheckpoint as e:
                    cache[k] = e
            got = cache[k]
            if isinstance(got, CorruptCheckpoint):
                raise got
            out.append(got)
            h = got[0]
            if h.kind == "full":
                break
            if k - 1 < h.base:
                raise CorruptCheckpoint(f"{file_name(n)}: its base {file_name(h.base)} is missing")
            k -= 1
            if k not in cache and not self.path(k).exists():
                raise CorruptCheckpoint(f"{file_name(n)}: {file_name(k)}, which it builds on, is missing")
        out.reverse()
        base = out[0][0].n
        for h, _ in out[1:]:
            if h.base != base:
                raise CorruptCheckpoint(f"{file_name(h.n)}: builds on {file_name(h.base)}, not on {file_name(base)}")
        return out

    def assemble(self, n: int, cache: dict[int, Any] | None = None) -> Restored:
        """Checkpoint ``n`` as a whole (its chain applied). Raises CorruptCheckpoint."""
        files = self.chain(n, cache)
        sections: dict[str, Any] = {}
        for _, part in files:
            sections.update(part)
        last = files[-1][0]
        missing = [s for s in last.names if s not in sections]
        if missing:
            raise CorruptCheckpoint(f"{file_name(n)}: sections {missing} are in no file of its chain")
        return Restored(n, last.at_ms, {s: sections[s] for s in last.names}, [h.n for h, _ in files])

    def restore(self) -> Restored:
        """The newest checkpoint whose chain is valid; ``problems`` says which newer files were skipped and why.
        With no checkpoint at all, the per-pipeline files of older hubs (``<pipeline>.json``) are read."""
        problems: list[str] = []
        cache: dict[int, Any] = {}
        numbers = self.numbers()
        for n in reversed(numbers):
            try:
                r = self.assemble(n, cache)
            except CorruptCheckpoint as e:
                if str(e) not in problems:
                    problems.append(str(e))
                continue
            r.problems = problems
            return r
        if not numbers:
            return self._legacy()
        return Restored(problems=problems)

    def _legacy(self) -> Restored:
        sections = {}
        try:
            files = sorted(self.dir.glob("*.json"))
        except OSError:
            files = []
        for f in files:
            try:
                data = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(data, dict) and isinstance(data.get("pipeline"), str) and \
                    isinstance(data.get("processors"), dict) and f.stem == data["pipeline"]:
                sections[f"pipeline/{data['pipeline']}"] = {"processors": data["processors"]}
        return Restored(sections=sections, legacy=bool(sections))

    # -- writing --
    def write(self, sections: dict[str, str], *, at_ms: int | None = None, full: bool = False) -> Written:
        """Write the checkpoint of ``sections`` (name -> JSON text): a delta of what changed since the last
        write of this store, or a full one (``full``, the first write, every ``full_every``-th); nothing
        when nothing changed. Atomic; raises OSError (nothing changes then: the next write retries from
        the last good one)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if not self._next:
            self._next = max(self.numbers(), default=0) + 1
        n = self._next
        hashes = {name: hashlib.sha256(text.encode()).hexdigest() for name, text in sections.items()}
        delta = not full and self._hashes is not None and self._since_full + 1 < self.full_every
        if delta:
            assert self._hashes is not None
            written = [s for s in sorted(sections) if self._hashes.get(s) != hashes[s]]
            base = self._base
            if not written and set(self._hashes) == set(hashes):  # the last one holds exactly this: no file
                return Written(n - 1, "unchanged", self.path(n - 1), 0,
                               int(time.time() * 1000) if at_ms is None else at_ms)
        else:
            written, base = sorted(sections), n
        body = ("{" + ",".join(f"{json.dumps(s)}:{sections[s]}" for s in written) + "}").encode()
        at = int(time.time() * 1000) if at_ms is None else at_ms
        h = Header(n, "delta" if delta else "full", base, at, sorted(sections), written, len(body),
                   hashlib.sha256(body).hexdigest())
        path = self.path(n)
        self._atomic_write(path, h.line(), body)
        self._next = n + 1
        self._hashes = hashes
        self._base = base
        self._since_full = self._since_full + 1 if delta else 0
        self.prune()
        return Written(n, h.kind, path, len(h.line()) + len(body), at)

    def _atomic_write(self, path: Path, head: bytes, body: bytes) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            try:
                _write_all(fd, head)
                half = len(body) // 2
                _write_all(fd, body[:half])
                if self.write_delay_s:
                    time.sleep(self.write_delay_s)  # the test hook: a kill lands with the file half written
                _write_all(fd, body[half:])
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        _fsync_dir(self.dir)

    def prune(self) -> list[int]:
        """Delete checkpoints older than the newest ``retain`` and what they build on; returns those deleted."""
        numbers = self.numbers()
        if len(numbers) <= self.retain:
            return []
        oldest_kept = numbers[-self.retain]
        try:
            keep_from = min(oldest_kept, self.header(oldest_kept).base)
        except CorruptCheckpoint:
            keep_from = oldest_kept
        gone = []
        for n in numbers:
            if n >= keep_from:
                break
            try:
                self.path(n).unlink()
                gone.append(n)
            except OSError:
                pass
        return gone

    def remove_temp_files(self) -> list[str]:
        """Delete temp files a crash left behind while writing; returns their names."""
        gone: list[str] = []
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return gone
        for name in names:
            if name.startswith(".checkpoint-") and name.endswith(".ckpt.tmp"):
                try:
                    os.unlink(self.dir / name)
                    gone.append(name)
                except OSError:
                    pass
        return gone

    # -- the lock a running hub holds --
    def lock(self) -> None:
        """Take ``LOCK`` (create the folder if need be). Raises StateLocked if another process holds it."""
        import fcntl

        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / "LOCK"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 64).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise StateLocked(f"state folder {self.dir} is in use by another hub (pid {holder}); each hub needs its "
                              "own state.dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def unlock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)  # closing releases the flock


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
