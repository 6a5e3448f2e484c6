"""Checkpoint files (atomic, checksummed, versioned, incremental, retained), sequence positions and the
queue markers a checkpoint's barrier travels as."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from edgestream_hub import checkpoint
from edgestream_hub.checkpoint import WRITE_DELAY_ENV, CheckpointStore, StateLocked
from edgestream_hub.queues import BoundedQueue, QueueClosed
from edgestream_hub.wire import SeqTracker


def sections(**kw: object) -> dict[str, str]:
    return {name.replace("__", "/"): json.dumps(v) for name, v in kw.items()}


def test_module_examples():
    import doctest

    from edgestream_hub.sql import processor

    for mod in (checkpoint, processor):
        assert doctest.testmod(mod).failed == 0


def test_full_then_deltas_of_what_changed_and_every_nth_full(tmp_path):
    s = CheckpointStore(tmp_path, full_every=3)
    kinds, written = [], []
    for i in range(7):
        w = s.write(sections(pipeline__a={"n": i}, pipeline__b={"n": i // 2}, source__s={"pos": 1}))
        h = s.header(w.n)
        kinds.append(h.kind)
        written.append(h.written)
    assert kinds == ["full", "delta", "delta", "full", "delta", "delta", "full"]
    assert written[1] == ["pipeline/a"] and written[2] == ["pipeline/a", "pipeline/b"]  # b changes every 2nd
    r = CheckpointStore(tmp_path).restore()
    assert r.n == 7 and r.sections == {"pipeline/a": {"n": 6}, "pipeline/b": {"n": 3}, "source/s": {"pos": 1}}


def test_nothing_changed_writes_no_file_and_a_removed_section_is_gone(tmp_path):
    s = CheckpointStore(tmp_path)
    s.write(sections(pipeline__a=1, pipeline__b=2))
    w = s.write(sections(pipeline__a=1, pipeline__b=2))
    assert w.kind == "unchanged" and w.n == 1 and s.numbers() == [1]
    s.write(sections(pipeline__a=1))
    assert CheckpointStore(tmp_path).restore().sections == {"pipeline/a": 1}


def test_retention_keeps_the_newest_and_what_they_build_on(tmp_path):
    s = CheckpointStore(tmp_path, full_every=4, retain=2)
    for i in range(10):
        s.write(sections(pipeline__a=i))
    # fulls are 1, 5 and 9: the newest two (9, 10) need nothing older
    assert s.numbers() == [9, 10]
    for i in range(10, 12):
        s.write(sections(pipeline__a=i))
    assert s.numbers() == [9, 10, 11, 12]  # 11 and 12 are kept, with 9 and 10 they build on
    assert CheckpointStore(tmp_path).restore().sections == {"pipeline/a": 11}


def flip_last_byte(path):
    data = bytearray(path.read_bytes())
    data[-2] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_damaged_checkpoint_is_reported_and_the_one_before_is_used(tmp_path):
    s = CheckpointStore(tmp_path, full_every=10)
    for i in range(3):
        s.write(sections(pipeline__a=i))
    flip_last_byte(s.path(3))
    r = CheckpointStore(tmp_path).restore()
    assert r.n == 2 and r.sections == {"pipeline/a": 1}
    assert r.problems == ["checkpoint-000000000003.ckpt: checksum mismatch (the file was changed or damaged)"]


def test_a_damaged_base_spoils_its_deltas(tmp_path):
    s = CheckpointStore(tmp_path, full_every=3)
    for i in range(5):  # 1 full, 2 3 deltas, 4 full, 5 delta
        s.write(sections(pipeline__a=i))
    flip_last_byte(s.path(4))
    r = CheckpointStore(tmp_path).restore()
    assert r.n == 3 and r.sections == {"pipeline/a": 2}
    assert len(r.problems) == 1 and "checkpoint-000000000004.ckpt: checksum mismatch" in r.problems[0]


@pytest.mark.parametrize("damage, says", [
    (lambda p: p.write_bytes(p.read_bytes()[:-5]), "cut short"),
    (lambda p: p.write_bytes(b"not json\n{}"), "no readable header"),
    (lambda p: p.write_bytes(p.read_bytes().replace(b'"version":2', b'"version":9', 1)),
     "format version 9; this hub reads versions 1, 2 (written by a newer hub?)"),
    (lambda p: p.write_bytes(p.read_bytes().replace(b'"format":"edgestream-checkpoint"', b'"format":"x"', 1)),
     "not an EdgeStream checkpoint"),
    (lambda p: p.unlink(), None),
])
def test_every_kind_of_damage_falls_back_with_a_reason(tmp_path, damage, says):
    s = CheckpointStore(tmp_path, full_every=1)
    s.write(sections(pipeline__a=1))
    s.write(sections(pipeline__a=2))
    damage(s.path(2))
    r = CheckpointStore(tmp_path).restore()
    assert r.n == 1 and r.sections == {"pipeline/a": 1}
    if says is not None:
        assert len(r.problems) == 1 and says in r.problems[0], r.problems


def test_no_usable_checkpoint_restores_nothing_and_says_why(tmp_path):
    s = CheckpointStore(tmp_path)
    s.write(sections(pipeline__a=1))
    flip_last_byte(s.path(1))
    r = CheckpointStore(tmp_path).restore()
    assert r.n is None and r.sections == {} and len(r.problems) == 1


def test_a_kill_while_writing_leaves_the_previous_checkpoint(tmp_path):
    CheckpointStore(tmp_path).write(sections(pipeline__a="before"))
    code = ("import sys; from edgestream_hub.checkpoint import CheckpointStore; "
            f"CheckpointStore({str(tmp_path)!r}).write({{'pipeline/a': '\"' + 'x' * 100000 + '\"'}})")
    p = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, WRITE_DELAY_ENV: "5000"})
    try:
        deadline = time.monotonic() + 20

        def started() -> list[Path]:  # created, and its first half written
            return [f for f in tmp_path.glob(".checkpoint-*.tmp") if f.stat().st_size > 0]

        while not started() and time.monotonic() < deadline:
            time.sleep(0.01)
        tmp = started()
        assert tmp and 0 < tmp[0].stat().st_size < 100000  # half written when the kill lands
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(10)
    s = CheckpointStore(tmp_path)
    assert s.restore().sections == {"pipeline/a": "before"}
    assert s.remove_temp_files() == [tmp[0].name] and not list(tmp_path.glob(".*.tmp"))


def test_a_full_disk_fails_the_write_and_changes_nothing(tmp_path, monkeypatch):
    s = CheckpointStore(tmp_path, full_every=10)
    s.write(sections(pipeline__a=1, pipeline__b=1))

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(checkpoint, "_write_all", full)
        with pytest.raises(OSError, match="No space left"):
            s.write(sections(pipeline__a=2, pipeline__b=1))
    assert s.numbers() == [1] and not list(tmp_path.glob(".*.tmp"))
    s.write(sections(pipeline__a=3, pipeline__b=1))  # still a delta on what is on disk
    assert s.header(2).written == ["pipeline/a"]
    assert CheckpointStore(tmp_path).restore().sections == {"pipeline/a": 3, "pipeline/b": 1}


def test_one_hub_per_state_folder(tmp_path):
    a, b = CheckpointStore(tmp_path), CheckpointStore(tmp_path)
    a.lock()
    with pytest.raises(StateLocked, match=f"in use by another hub \\(pid {os.getpid()}\\)"):
        b.lock()
    a.unlock()
    b.lock()
    b.unlock()


def test_the_per_pipeline_files_of_older_hubs_are_read_when_there_is_no_checkpoint(tmp_path):
    (tmp_path / "p.json").write_text(json.dumps({"pipeline": "p", "at_ms": 1, "processors": {"p.sql": {"x": 1}}}))
    (tmp_path / "devices.json").write_text("{}")
    r = CheckpointStore(tmp_path).restore()
    assert r.legacy and r.sections == {"pipeline/p": {"processors": {"p.sql": {"x": 1}}}}


# -- sequence positions --

ops = st.lists(st.tuples(st.sampled_from(["a", "b"]), st.integers(1, 2), st.integers(0, 300)), max_size=200)


@settings(max_examples=100)
@given(ops, ops)
def test_restored_positions_decide_exactly_as_the_tracker_they_came_from(before, after):
    a = SeqTracker(max_gaps=8)
    for dev, boot, seq in before:
        a.accept(dev, "readings", boot, seq)
    b = SeqTracker(max_gaps=8)
    b.restore(json.loads(json.dumps(a.state())))
    assert b.state() == a.state()
    for dev, boot, seq in after:
        assert b.accept(dev, "readings", boot, seq) == a.accept(dev, "readings", boot, seq)


@pytest.mark.parametrize("bad", [{"x": 1}, [["d", "k", 1, 2, 3, 4]], [["d", "k", 1, 2, 3, 4, [1]]],
                                 [["d", "k", "1", 2, 3, 4, []]]])
def test_positions_that_are_not_positions_are_refused_and_change_nothing(bad):
    t = SeqTracker()
    t.accept("d", "k", 1, 5)
    with pytest.raises(ValueError, match="sequence positions"):
        t.restore(bad)
    assert not t.accept("d", "k", 1, 5)


# -- markers in queues --

def r(*ns: int) -> list[dict]:
    return [{"i": n} for n in ns]


def test_a_marker_waits_behind_the_records_before_it():
    q = BoundedQueue(10)
    q.put(r(1, 2, 3))
    q.put_marker("m")
    q.put(r(4))
    assert q.get(10, 0, 0) == r(1, 2, 3)  # not past the marker
    assert q.take_marker() == "m" and q.take_marker() is None
    assert q.get(10, 0, 0) == r(4)
    assert q.total_in == 4 and len(q) == 0


def test_a_marker_ends_a_linger_and_never_waits_for_room():
    q = BoundedQueue(2)
    q.put(r(1, 2))
    q.put_marker("m")  # the queue is full: a marker goes in anyway
    t0 = time.monotonic()
    assert q.get(10, 5.0, 1.0) == r(1, 2)
    assert time.monotonic() - t0 < 1.0
    q.close()
    assert q.take_marker() == "m" and q.get(10, 0, 0) == []


def test_markers_need_a_queue_that_never_drops_and_a_live_consumer():
    with pytest.raises(ValueError):
        BoundedQueue(2, "drop_oldest").put_marker("m")
    q = BoundedQueue(2)
    q.put_marker("m")
    q.put(r(1))
    assert q.kill() == r(1)
    with pytest.raises(QueueClosed):
        q.put_marker("n")
