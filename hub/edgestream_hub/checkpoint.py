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

Inside a section, state can be large (a SQL processor's 10,000 open windows),
so a section given as a ``Section`` (``section(value)``) is kept by *entry*:
each snapshot map (``{"__m": [[key, value], ...]}``, how ``sql.state.encode``
writes a dict) reached through plain JSON objects is split into its entries,
and maps among those values too, three maps deep (a SQL processor's state ->
``W`` -> a window's groups, each group one entry). Such a section is
written as ``{"__keyed": "full", "head": ..., "set": {map: [[key, value], ...]}}``
(``head`` the section with each split map replaced by ``{"__split": map}``), and
in a delta as ``{"__keyed": "delta", "head": ..., "set": ..., "del": {map:
[key, ...]}, "gone": [map, ...]}``: only the entries added or changed since the
checkpoint before, and the keys removed. Restoring applies them in order (the
keys removed go first, a changed entry keeps its place, a new one goes last; an
entry removed and added again since is written as both, so it goes last as in
the map snapshotted) and gives the section exactly as a full snapshot would,
its maps' order included.

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
from typing import Any, BinaryIO, Mapping

from edgestream_hub.config import STATE_DIR
from edgestream_hub.errors import EdgeStreamError

FORMAT = "edgestream-checkpoint"
#: the layout of checkpoint files this hub writes; 2: sections kept by entry (``__keyed``)
VERSION = 2
#: the layouts it reads (version 1 files hold only whole sections, which version 2 reads alike)
READS = (1, 2)
#: the state folder when ``state.dir`` is not set, relative to the config file's folder
DEFAULT_DIR = STATE_DIR
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
        self._hashes: dict[str, Kept] | None = None  # section -> what it held, as last written
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
        if h.get("version") not in READS:
            raise CorruptCheckpoint(f"{where}: format version {h.get('version')!r}; this hub reads versions "
                                    f"{', '.join(map(str, READS))} (written by a newer hub?)")
        try:
            hd = Header(int(h["n"]), str(h["kind"]), int(h["base"]), int(h["at_ms"]), [str(x) for x in h["names"]],
                        [str(x) for x in h["written"]], int(h["bytes"]), str(h["sha256"]), int(h["version"]))
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
        for h, part in files:
            for name, value in part.items():
                try:
                    sections[name] = _apply(sections.get(name), value)
                except CorruptCheckpoint as e:
                    raise CorruptCheckpoint(f"{file_name(h.n)}: section {name}: {e}") from None
        last = files[-1][0]
        missing = [s for s in last.names if s not in sections]
        if missing:
            raise CorruptCheckpoint(f"{file_name(n)}: sections {missing} are in no file of its chain")
        whole = {}
        for s in last.names:
            try:
                whole[s] = _whole(sections[s])
            except CorruptCheckpoint as e:
                raise CorruptCheckpoint(f"{file_name(n)}: section {s}: {e}") from None
        return Restored(n, last.at_ms, whole, [h.n for h, _ in files])

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
    def write(self, sections: Mapping[str, str | Section], *, at_ms: int | None = None, full: bool = False) -> Written:
        """Write the checkpoint of ``sections`` (name -> JSON text, or a ``Section`` kept by entry): a delta
        of what changed since the last write of this store, or a full one (``full``, the first write, every
        ``full_every``-th); nothing when nothing changed. Atomic; raises OSError (nothing changes then: the
        next write retries from the last good one)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if not self._next:
            self._next = max(self.numbers(), default=0) + 1
        n = self._next
        secs = {name: s if isinstance(s, Section) else Section(s) for name, s in sections.items()}
        hashes = {name: s.kept() for name, s in secs.items()}
        delta = not full and self._hashes is not None and self._since_full + 1 < self.full_every
        texts: dict[str, str] = {}
        if delta:
            assert self._hashes is not None
            for name in sorted(secs):
                text = secs[name].text(self._hashes.get(name), hashes[name])
                if text is not None:
                    texts[name] = text
            base = self._base
            if not texts and set(self._hashes) == set(hashes):  # the last one holds exactly this: no file
                return Written(n - 1, "unchanged", self.path(n - 1), 0,
                               int(time.time() * 1000) if at_ms is None else at_ms)
        else:
            texts, base = {name: secs[name].text(None, hashes[name]) or "" for name in sorted(secs)}, n
        written = sorted(texts)
        body = ("{" + ",".join(f"{json.dumps(s)}:{texts[s]}" for s in written) + "}").encode()
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
        from edgestream_hub import pidlock

        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            self._lock_fd = pidlock.take(self.dir / "LOCK")
        except pidlock.Held as e:
            raise StateLocked(f"state folder {self.dir} is in use by another hub (pid {e.holder}); each hub needs its "
                              "own state.dir") from None

    def unlock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)  # closing releases the flock


#: how deep plain JSON objects are searched for maps to keep by entry (pipeline/processors/<label>/state/<map>)
_SPLIT_DEPTH = 6
#: how many maps deep entries are kept apart (a SQL snapshot's state -> W -> window -> group)
_MAP_LEVELS = 3
_KEYED = "__keyed"
_SPLIT = "__split"


class Entries:
    """A snapshot map handed over unencoded: ``mapping`` (the live dict, read on the thread that owns it) and
    ``encode`` (a key or value to JSON-able, ``sql.state.encode``). A ``Section`` encodes it entry by entry,
    so a fleet's window state never stands in memory twice, once encoded whole (~1 KB a group: ~12 MB for
    10,000 windows); anywhere else it is written as ``encode(mapping)``, the snapshot map it stands for."""

    __slots__ = ("mapping", "encode")

    def __init__(self, mapping: dict, encode: Any) -> None:
        self.mapping, self.encode = mapping, encode


def _unsplit(v: Any) -> Any:
    """``json``'s fallback: ``Entries`` where they are not split are the map they stand for."""
    if type(v) is Entries:
        return v.encode(v.mapping)
    raise TypeError(f"Object of type {type(v).__name__} is not JSON serializable")


_dumps = json.JSONEncoder(separators=(",", ":"), default=_unsplit).encode  # one encoder, not one a call


def _is_map(v: Any) -> bool:
    return type(v) is dict and len(v) == 1 and type(v.get("__m")) is list


@dataclass
class Kept:
    """What a section held when last written, to compare the next one with: its head's digest, and per split
    map each key's value text, in order (compared as they are: cheaper than hashing each, and not much larger
    than a digest object per entry)."""

    head: bytes
    maps: dict[str, dict[str, str]]


class Section:
    """A section to write, its snapshot maps kept by entry (see the module doc). Built on the thread that
    owns the state (it reads the value once, into text); a text ``value`` is a section kept whole."""

    def __init__(self, value: Any) -> None:
        #: split map -> key text -> value text (read-only once built: ``kept()`` hands these very dicts on)
        self.maps: dict[str, dict[str, str]] = {}
        self.head = value if isinstance(value, str) else _dumps(self._split(value, [], 0))

    def _split(self, v: Any, path: list[str], depth: int) -> Any:
        if _is_map(v):
            return self._entries(v, _dumps(path), _MAP_LEVELS)
        if type(v) is Entries:
            return self._raw_entries(v.mapping, v.encode, _dumps(path), _MAP_LEVELS)
        if type(v) is dict and depth < _SPLIT_DEPTH and _SPLIT not in v and _KEYED not in v \
                and not any(isinstance(k, str) and k.startswith("__") for k in v):
            return {k: self._split(x, [*path, k], depth + 1) for k, x in v.items()}
        return v

    def _entries(self, m: dict, mid: str, levels: int) -> dict:
        out: dict[str, str] = {}
        for pair in m["__m"]:
            k, x = pair
            kt = _dumps(k)
            if levels > 1 and _is_map(x):
                x = self._entries(x, f"{mid}|{kt}", levels - 1)
            out[kt] = _dumps(x)
        if len(out) != len(m["__m"]):  # keys that repeat: not a dict's snapshot, keep it whole
            return m
        self.maps[mid] = out
        return {_SPLIT: mid}

    def _raw_entries(self, m: dict, encode: Any, mid: str, levels: int) -> Any:
        """``_entries`` of ``encode(m)``, encoding one entry at a time (the same texts, the same maps)."""
        out: dict[str, str] = {}
        for k, x in m.items():
            kt = _dumps(encode(k))
            if levels > 1 and isinstance(x, dict):  # encode makes every dict a snapshot map
                out[kt] = _dumps(self._raw_entries(x, encode, f"{mid}|{kt}", levels - 1))
            else:
                out[kt] = _dumps(encode(x))
        if len(out) != len(m):  # two keys with one text: keep it whole, as _entries does
            return encode(m)
        self.maps[mid] = out
        return {_SPLIT: mid}

    def kept(self) -> Kept:
        return Kept(hashlib.sha256(self.head.encode()).digest(), self.maps)  # shared, not copied: one set of texts

    def text(self, before: Kept | None, now: Kept) -> str | None:
        """Its JSON in a checkpoint: whole (``before`` None), only what changed since ``before``, or None when
        nothing did."""
        if not self.maps:
            return None if before is not None and not before.maps and before.head == now.head else self.head
        if before is None or not before.maps:
            return self._keyed("full", {mid: list(es) for mid, es in self.maps.items()}, {}, [])
        sets: dict[str, list[str]] = {}
        dels: dict[str, list[str]] = {}
        for mid, new in now.maps.items():
            old = before.maps.get(mid)
            if old is None:
                sets[mid] = list(new)
                continue
            order = list(new)
            i, removed = 0, []
            for k in old:  # keys kept in place are in the same order in both; the others moved to the end
                if k not in new:
                    removed.append(k)
                elif i < len(order) and order[i] == k:
                    i += 1
                else:
                    removed.append(k)  # removed and added again since: written as removed, then added last
            changed = [k for k in order[:i] if old[k] != new[k]] + order[i:]
            if changed:
                sets[mid] = changed
            if removed:
                dels[mid] = removed
        vanished = [mid for mid in before.maps if mid not in now.maps]
        if not sets and not dels and not vanished and before.head == now.head:
            return None
        return self._keyed("delta", sets, dels, vanished)

    def _keyed(self, kind: str, sets: dict[str, list[str]], dels: dict[str, list[str]], gone: list[str]) -> str:
        parts = [f'"{_KEYED}":"{kind}","head":{self.head}']
        maps = self.maps
        parts.append('"set":{' + ",".join(
            _dumps(mid) + ":[" + ",".join(f"[{k},{maps[mid][k]}]" for k in keys) + "]"
            for mid, keys in sets.items()) + "}")
        if kind == "delta":
            parts.append('"del":{' + ",".join(_dumps(mid) + ":[" + ",".join(keys) + "]"
                                             for mid, keys in dels.items()) + "}")
            parts.append('"gone":' + _dumps(gone))
        return "{" + ",".join(parts) + "}"


@dataclass
class _Keyed:
    """A section kept by entry while a chain is applied: its head and each split map's entries, in order."""

    head: Any
    maps: dict[str, dict[str, list[Any]]]


def section(value: Any) -> Section:
    """``value`` (a JSON-able section, read now) ready to write by entry."""
    return Section(value)


def _apply(before: Any, part: Any) -> Any:
    """A section after one file of a chain: ``part`` whole, or its entries applied to ``before``."""
    if not (isinstance(part, dict) and _KEYED in part):
        return part
    kind = part[_KEYED]
    try:
        if kind == "full":
            keyed = _Keyed(part["head"], {})
        elif kind == "delta" and isinstance(before, _Keyed):  # owned by the chain being applied: changed in place
            keyed = _Keyed(part["head"], before.maps)
            for mid in part["gone"]:
                keyed.maps.pop(mid, None)
            for mid, keys in part["del"].items():
                es = keyed.maps[mid]
                for k in keys:
                    del es[_dumps(k)]
        else:
            raise CorruptCheckpoint(f"a {kind!r} part of entries with no whole section before it to apply to")
        for mid, pairs in part["set"].items():
            es = keyed.maps.setdefault(mid, {})
            for k, v in pairs:
                es[_dumps(k)] = [k, v]
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CorruptCheckpoint(f"garbled entries ({type(e).__name__}: {e})") from None
    return keyed


def _whole(value: Any) -> Any:
    """A section as a full snapshot of it would be: entries put back into their maps."""
    if not isinstance(value, _Keyed):
        return value
    maps = value.maps

    def build(mid: str) -> dict:
        if mid not in maps:
            raise CorruptCheckpoint(f"the entries of map {mid} are in no file of its chain")
        return {"__m": [[k, build(v[_SPLIT]) if _is_split(v) else v] for k, v in maps[mid].values()]}

    def put(v: Any) -> Any:
        if type(v) is dict:
            return build(v[_SPLIT]) if _is_split(v) else {k: put(x) for k, x in v.items()}
        return v

    return put(value.head)


def _is_split(v: Any) -> bool:
    return type(v) is dict and len(v) == 1 and isinstance(v.get(_SPLIT), str)


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
