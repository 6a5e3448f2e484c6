# Offline buffer: bounded FIFO of encoded messages, oldest dropped and
# counted, peek/mark_sent/ack with resends after rewind, optional spill file.
# Runs under CPython and MicroPython (esp32 heap).
import os

from devtest import MICROPYTHON, alloc_bytes
from edgestream_agent.offline_buffer import OfflineBuffer


def rec(i, n=20):
    # a record whose bytes say which one it is: b"#00012:xxxx..."
    head = b"#%05d:" % i
    return head + b"x" * (n - len(head))


def num(mv):
    return int(bytes(mv[1:6]))


def drain(buf, limit=100000):
    # send and ack everything pending -> list of record numbers, in order
    out = []
    for _ in range(limit):
        mv = buf.peek()
        if mv is None:
            break
        out.append(num(mv))
        buf.mark_sent()
        buf.ack()
    return out


def test_fifo_order_and_counters():
    b = OfflineBuffer(256)
    for i in range(5):
        assert b.push(rec(i), items=2)
    assert b.records == 5 and b.items == 10 and b.pending() == 5
    assert drain(b) == [0, 1, 2, 3, 4]
    assert b.acked == 10 and b.dropped == 0 and b.records == 0


def test_full_ring_drops_the_oldest_and_counts_them():
    b = OfflineBuffer(240)          # 10 records of 20 + 4 bytes
    for i in range(25):
        b.push(rec(i))
    got = drain(b)
    assert got == list(range(15, 25))
    assert b.dropped == 15 and b.pushed == 25 and b.acked == 10
    assert b.dropped + b.acked == b.pushed


def test_variable_sizes_wrap_many_times_against_a_model():
    # Deterministic pseudo-random sizes and interleaving. The model is a list
    # of (number, bytes); each push evicts exactly as many records from its
    # front as the ring counted as dropped, and the next record sent must
    # always be the model's first: order and accounting are both exact.
    b = OfflineBuffer(300)
    model = []
    seed = 7
    nxt = 0
    for step in range(3000):
        seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
        if seed % 3:
            n = 7 + seed % 90
            before = b.dropped
            b.push(rec(nxt, n))
            model.append((nxt, n + 4))
            nxt += 1
            for _ in range(b.dropped - before):
                model.pop(0)
            held = 0
            for x in model:
                held += x[1]
            assert held <= 300
            # a record never wraps, so at most one record's room is wasted
            if b.dropped > before:
                assert held > 300 - 2 * (96 + 4), (step, held)
        else:
            mv = b.peek()
            if model:
                assert mv is not None and num(mv) == model[0][0], (step, model[0])
                b.mark_sent()
                b.ack()
                model.pop(0)
            else:
                assert mv is None
        assert b.records == len(model)
    assert [x[0] for x in model] == drain(b)
    assert b.dropped + b.acked == b.pushed == nxt


def test_unacked_records_are_resent_with_the_dup_flag_after_rewind():
    b = OfflineBuffer(256)
    for i in range(4):
        b.push(rec(i))
    for i in range(3):               # send three, only the first is acked
        assert num(b.peek()) == i and not b.peek_dup
        b.mark_sent()
    assert b.pending() == 1
    b.ack()
    b.rewind()                       # link dropped: 1 and 2 are pending again
    assert b.pending() == 3
    assert num(b.peek()) == 1 and b.peek_dup
    b.mark_sent()
    assert num(b.peek()) == 2 and b.peek_dup
    b.mark_sent()
    assert num(b.peek()) == 3 and not b.peek_dup
    b.mark_sent()
    b.ack()
    b.ack()
    b.ack()
    assert b.resent == 2 and b.acked == 4 and b.records == 0


def test_evicting_a_sent_record_is_counted_apart_and_its_ack_ignored():
    b = OfflineBuffer(120)           # 5 records
    for i in range(5):
        b.push(rec(i))
    b.peek()
    b.mark_sent()                    # 0 is in flight
    b.push(rec(5))                   # evicts 0 (sent, unconfirmed)
    assert b.dropped == 0 and b.dropped_unacked == 1
    assert b.ack() == 0              # the late PUBACK of 0 frees nothing
    assert drain(b) == [1, 2, 3, 4, 5]


def test_too_large_records_are_refused_and_counted():
    b = OfflineBuffer(128, max_record=64)
    assert not b.push(b"x" * 65, items=3)
    assert b.dropped == 3 and b.records == 0
    assert b.push(b"y" * 64)


def test_pushing_a_record_allocates_nothing():
    b = OfflineBuffer(512)
    r = rec(1, 40)

    def cycle():
        b.push(r)
        b._pop()
    got = alloc_bytes(cycle, 500)
    assert got in (None, 0), got


def _tmp(name):
    d = "/tmp" if MICROPYTHON else os.environ.get("TMPDIR", "/tmp")
    return d + "/edgestream-offline-" + name


def test_spill_file_keeps_evicted_records_and_drains_them_first():
    path = _tmp("spill1")
    b = OfflineBuffer(120, spill_path=path, spill_size=1000)
    for i in range(30):
        b.push(rec(i))
    assert b.spilled == 25 and b.dropped == 0 and b.pending() == 30
    assert drain(b) == list(range(30))
    assert b.acked == 30
    for suffix in (".0", ".1"):
        try:
            os.stat(path + suffix)
            exists = True
        except OSError:
            exists = False
        assert not exists, suffix  # read segments are deleted


def test_spill_is_bounded_and_drops_the_oldest_segment():
    path = _tmp("spill2")
    b = OfflineBuffer(120, spill_path=path, spill_size=240)  # 2 x 5 records
    for i in range(40):
        b.push(rec(i))
    got = drain(b)
    # RAM holds the last 5, the spill at most 10 more; the rest was dropped
    assert got == sorted(got) and got[-5:] == list(range(35, 40))
    assert b.dropped == 40 - len(got) and b.dropped > 0
    assert 5 < len(got) <= 15


def test_spilled_record_in_flight_is_resent_after_rewind():
    path = _tmp("spill3")
    b = OfflineBuffer(120, spill_path=path, spill_size=1000)
    for i in range(8):
        b.push(rec(i))                # 0..2 spilled
    assert num(b.peek()) == 0
    b.mark_sent()
    assert b.peek() is None           # spilled records go one at a time
    b.rewind()
    assert num(b.peek()) == 0 and b.peek_dup
    assert drain(b) == list(range(8))
