"""Parsing and lowering (query text -> ``ir.Query``), here or in a helper process.

Parsing needs sqlglot, ~10 MB of a running hub's memory that serves nothing once its queries are compiled.
Inside ``elsewhere()`` (``HubService`` holds it while it loads a config and builds or reloads its engine)
a query not lowered before is sent to a helper process (``python -m edgestream_hub.sql.lowering``), started
at the first such query and stopped when the block ends, so the hub never imports sqlglot; everywhere else
(``hub check``, ``edgestream sql``, tests) it is lowered in this process. Either way the result is the
same tree and a refused query the same ``SqlError``. Lowered queries are remembered (as pickles, so each
compile gets its own tree) up to ``MEMO_SIZE``: a reload does not lower an unchanged query again.

The helper must run the compiler this process loaded: it first says which (a digest of the files that
make and define the tree), and a helper whose files differ (the package was upgraded under a running hub)
refuses the query with ``SqlError`` asking for a restart, as does parsing here in that case.

If the helper cannot be started, dies, or does not answer within ``ANSWER_TIMEOUT_S`` (a stopped or stuck
helper), it is killed and the queries of that block are lowered here instead (and the log says so once);
the next block tries a helper again.
"""

from __future__ import annotations

import logging
import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from typing import IO, Any, Iterator

from . import ir
from .errors import SqlError

__all__ = ["lowered", "elsewhere", "MEMO_SIZE", "ANSWER_TIMEOUT_S"]

log = logging.getLogger("edgestream.hub.sql")

MEMO_SIZE = 256
#: how long the hub waits for the helper's answer to one query (it loads the parser first); then it parses here
ANSWER_TIMEOUT_S = 30.0
_HEAD = struct.Struct(">I")

#: the files whose code makes or defines the tree a helper hands back
_COMPILER = ("ir.py", "lower.py", "dialect.py", "errors.py", "lowering.py")
CHANGED = ("the hub's SQL compiler changed on disk since the hub started (an upgrade?): restart the hub to "
           "use it")


def _fingerprint() -> bytes | None:
    """A digest of the compiler's files as they are on disk now; None when they cannot be read."""
    import hashlib

    here = os.path.dirname(os.path.abspath(__file__))
    h = hashlib.sha256()
    try:
        for name in _COMPILER:
            with open(os.path.join(here, name), "rb") as f:
                h.update(f.read())
    except OSError:
        return None
    return h.digest()[:16]


_LOADED = _fingerprint()  # read as this module loads, with ir and errors: the compiler this process runs
_lock = threading.RLock()
_memo: dict[str, bytes] = {}  # query text -> pickled ("ok", ir.Query) or ("error", (message, text, offset))
_depth = 0
_helper: "_Helper | None" = None
_helper_failed = False


def lowered(text: str) -> ir.Query:
    """``text`` parsed and lowered (raises ``SqlError``)."""
    with _lock:
        got = _memo.get(text)
        if got is None:
            got = _from_helper(text) if _depth else None
            if got is None:
                got = _lower(text)
            while len(_memo) >= MEMO_SIZE:
                del _memo[next(iter(_memo))]
            _memo[text] = got
    kind, value = pickle.loads(got)
    if kind == "error":
        raise SqlError(*value)
    return value


@contextmanager
def elsewhere(*, start: bool = False) -> Iterator[None]:
    """Meanwhile, on every thread, queries not lowered before are lowered by a helper process; ``start``
    starts it now (it loads the parser while the caller does the rest) rather than at the first query."""
    global _depth, _helper, _helper_failed
    with _lock:
        if not _depth:
            _helper_failed = False  # each load tries a helper again: one that failed before may have been unlucky
        _depth += 1
        if start and _helper is None and not _helper_failed:
            try:
                _helper = _Helper()
            except (OSError, ValueError) as e:
                _helper_failed = True
                log.warning("the SQL parsing helper process cannot start (%s: %s): queries are parsed in the "
                            "hub's process", type(e).__name__, e)
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if not _depth:
                _drop_helper()


def _drop_helper() -> None:
    global _helper
    if _helper is not None:
        _helper.close()
        _helper = None


def _lower(text: str) -> bytes:
    if f"{__package__}.lower" not in sys.modules and _LOADED is not None and _fingerprint() not in (_LOADED, None):
        raise SqlError(CHANGED)  # the parser would come from newer files than the tree this process holds
    from .dialect import parse
    from .lower import lower

    try:
        tree, explain = parse(text)
        out: tuple[str, Any] = ("ok", lower(tree, text, explain))
    except SqlError as e:
        out = ("error", (e.message, e.text, e.offset))
    return pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL)


def _from_helper(text: str) -> bytes | None:
    """The helper's answer, or None when there is no helper to ask (the caller lowers it here)."""
    global _helper, _helper_failed
    if _helper_failed:
        return None
    try:
        if _helper is None:
            _helper = _Helper()
        return _helper.ask(text)
    except _Changed:
        _drop_helper()
        raise SqlError(CHANGED) from None
    except (OSError, EOFError, ValueError, struct.error, TimeoutError) as e:
        _helper_failed = True
        _drop_helper()
        log.warning("the SQL parsing helper process failed (%s: %s): queries are parsed in the hub's process",
                    type(e).__name__, e)
        return None


def _send(out: IO[bytes], data: bytes) -> None:
    out.write(_HEAD.pack(len(data)) + data)
    out.flush()


def _receive(inp: IO[bytes]) -> bytes:
    head = inp.read(_HEAD.size)
    if len(head) < _HEAD.size:
        raise EOFError("the helper process ended")
    (n,) = _HEAD.unpack(head)
    data = inp.read(n)
    if len(data) < n:
        raise EOFError("the helper process ended mid-answer")
    return data


def _wait_for(fd: int, write: bool, deadline: float) -> None:
    left = deadline - time.monotonic()
    ready = select.select([], [fd], [], max(left, 0)) if write else select.select([fd], [], [], max(left, 0))
    if not any(ready):
        raise TimeoutError(f"the helper process did not answer within {ANSWER_TIMEOUT_S:g} s")


def _write_by(fd: int, data: bytes, deadline: float) -> None:
    view = memoryview(data)
    while view:
        _wait_for(fd, True, deadline)
        view = view[os.write(fd, view[:select.PIPE_BUF]):]  # up to PIPE_BUF bytes fit once it is writable


def _frame_by(fd: int, deadline: float) -> bytes:
    (n,) = _HEAD.unpack(_read_by(fd, _HEAD.size, deadline))
    return _read_by(fd, n, deadline)


def _read_by(fd: int, n: int, deadline: float) -> bytes:
    parts: list[bytes] = []
    while n:
        _wait_for(fd, False, deadline)
        got = os.read(fd, n)
        if not got:
            raise EOFError("the helper process ended")
        parts.append(got)
        n -= len(got)
    return b"".join(parts)


class _Changed(Exception):
    """The helper runs other compiler files than this process."""


class _Helper:
    """The helper process: frames of a 4-byte length and the UTF-8 query in, the pickled answer out; its
    first frame out is the digest of its compiler files (empty when it cannot read them)."""

    hello: bytes | None = None

    def __init__(self) -> None:
        # a session of its own: a Ctrl-C meant for the hub does not print its traceback (it ends at the
        # end of its input, when the hub closes it or dies)
        self.proc = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, close_fds=True, start_new_session=True)

    def ask(self, text: str) -> bytes:
        """Its answer; ``TimeoutError`` when it has not taken the query and answered within
        ``ANSWER_TIMEOUT_S`` (a stopped helper never reads nor answers: no blocking read or write on it)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        deadline = time.monotonic() + ANSWER_TIMEOUT_S
        data = text.encode("utf-8", "surrogatepass")
        _write_by(self.proc.stdin.fileno(), _HEAD.pack(len(data)) + data, deadline)
        out = self.proc.stdout.fileno()
        if self.hello is None:
            self.hello = _frame_by(out, deadline)
            if self.hello and _LOADED is not None and self.hello != _LOADED:
                raise _Changed()
        return _frame_by(out, deadline)

    def close(self) -> None:
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()  # its end of input: it exits
            self.proc.wait(1)  # still loading the parser if it was never asked: no need to wait for that
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            if self.proc.stdout is not None:
                self.proc.stdout.close()


def _serve() -> None:
    """The helper's side: lower each query read from stdin until it closes."""
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing printed may garble the answers
    _send(out, _LOADED or b"")
    from . import dialect, lower  # noqa: F401 - loaded before the first query comes
    while True:
        try:
            data = _receive(inp)
        except EOFError:
            return
        _send(out, _lower(data.decode("utf-8", "surrogatepass")))


if __name__ == "__main__":
    try:
        _serve()
    except (BrokenPipeError, KeyboardInterrupt):
        pass
    os._exit(0)  # no interpreter teardown: the hub waits for this process to end
