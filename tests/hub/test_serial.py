"""Serial source against a real pty: framing, garbage resync, unplug and replug."""

from __future__ import annotations

import os
import tty

from hubtest import wait_for

from edgestream_shared.encoder import Encoder
from edgestream_shared.frame import encode_frame


class Board:
    """A pty pair behind a stable symlink, like /dev/serial/by-id/... for a USB board."""

    def __init__(self, link):
        self.link = link
        self.master: int | None = None
        self.plug()

    def plug(self):
        m, s = os.openpty()
        tty.setraw(s)
        name = os.ttyname(s)
        os.close(s)  # the hub opens it by name
        self.master = m
        if os.path.lexists(self.link):
            os.unlink(self.link)
        os.symlink(name, self.link)

    def unplug(self):
        assert self.master is not None  # plugged
        os.close(self.master)
        self.master = None
        os.unlink(self.link)

    def write(self, data: bytes):
        assert self.master is not None  # plugged
        os.write(self.master, data)


def frame(dev, boot, seq, value):
    e = Encoder(dev, boot)
    e.begin(b"readings")
    e.add_reading(seq, b"temp", 1000 + seq, value)
    return encode_frame(e.finish())


def test_frames_garbage_unplug_and_replug(hub):
    board = Board(str(hub.tmp / "ttyBOARD"))
    try:
        e = hub.engine("""
hub: {dead_letter: dlq}
sources: {board: {serial: {port: ttyBOARD, poll_interval: 5ms, reopen_min: 20ms, reopen_max: 100ms}}}
sinks: {out: {memory: {}}, dlq: {memory: {}}}
pipelines: {p: {from: board, to: out}}
""")
        src = e.sources["board"].source
        assert wait_for(lambda: src.opens == 1)
        board.write(frame("d1", 1, 0, 20.0) + b"\x00\xffnoise\n" + frame("d1", 1, 1, 21.0)[:-1]
                    + b"*00000000\n" + frame("d1", 1, 2, 22.0))
        good = frame("d1", 1, 3, 23.0)
        board.write(good[:10])  # a frame cut by the unplug
        assert wait_for(lambda: len(hub.out.get("out", [])) == 2)
        board.unplug()
        assert wait_for(lambda: src._ser is None)
        board.plug()
        assert wait_for(lambda: src.opens == 2)
        board.write(frame("d1", 1, 4, 24.0) + frame("d1", 2, 0, 25.0))
        assert wait_for(lambda: len(hub.out["out"]) == 4)
        assert e.stop()
    finally:
        if board.master is not None:
            os.close(board.master)
    assert [(r["boot"], r["seq"], r["value"]) for r in hub.out["out"]] == [
        (1, 0, 20.0), (1, 2, 22.0), (1, 4, 24.0), (2, 0, 25.0)]
    reasons = [d["reason"] for d in hub.out["dlq"]]
    assert any("does not start with '$'" in r for r in reasons) and any("checksum" in r for r in reasons)

    def m(n):
        return e.metrics.value(f"edgestream_source_{n}_total", component="board")

    assert m("decode_errors") == 2 and m("reconnects") == 1 and m("gaps") == 2 and m("reboots") == 1


def test_hostile_payloads_and_bad_lines_between_good_frames(hub, caplog):
    from hubtest import HOSTILE_WIRE, readings

    caplog.set_level("WARNING", "edgestream.hub.source.board")
    board = Board(str(hub.tmp / "ttyBOARD"))
    try:
        e = hub.engine("""
hub: {dead_letter: dlq}
sources: {board: {serial: {port: ttyBOARD, poll_interval: 5ms, max_frame: 16384}}}
sinks: {out: {memory: {}}, dlq: {memory: {}}}
pipelines: {p: {from: board, to: out}}
""")
        src = e.sources["board"].source
        assert wait_for(lambda: src.opens == 1)
        for i, bad in enumerate(HOSTILE_WIRE.values()):
            board.write(encode_frame_big(readings("d1", 1, [i])))
            board.write(encode_frame_big(bad))
        garbage = b"\x00\xff" + b"g" * 3000
        board.write(garbage + b"\n")  # a line that is no frame: its start is kept
        board.write(encode_frame_big(readings("d1", 1, [100])))
        n = len(HOSTILE_WIRE)
        assert wait_for(lambda: len(hub.out.get("out", [])) == n + 1)
        assert wait_for(lambda: len(hub.out.get("dlq", [])) == n + 1)
        assert e.stop()
    finally:
        if board.master is not None:
            os.close(board.master)
    assert [r["seq"] for r in hub.out["out"]] == [*range(n), 100]
    dl = hub.out["dlq"]
    assert [d["record"]["payload"] for d in dl[:n]] == [
        p[:1024].decode("utf-8", "backslashreplace") for p in HOSTILE_WIRE.values()]
    line = dl[n]["record"]
    assert "does not start with '$'" in dl[n]["reason"]
    assert line["bytes"] == len(garbage) and line["payload"] == "\x00\\xff" + "g" * 1022

    def m(n):
        return e.metrics.value(f"edgestream_source_{n}_total", component="board")

    assert m("decode_errors") == n + 1 and m("gaps") == 1
    # the loss is in the log, not only in a counter
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("data loss")] == [
        f"data loss: device d1: {100 - n} records missing in 1 gap (last: boot 1, seq {n - 1} -> 100) "
        "(summarised at most every 10s)"]


def encode_frame_big(payload: bytes) -> bytes:
    """A frame for a payload over the default frame size (the reader here allows 16 KiB)."""
    from edgestream_shared.frame import crc32

    return b"$" + payload + b"*%08x\n" % (crc32(payload) & 0xFFFFFFFF)


def test_a_framing_error_keeps_the_start_of_the_line(hub):
    board = Board(str(hub.tmp / "ttyBOARD"))
    try:
        e = hub.engine("""
hub: {dead_letter: dlq}
sources: {board: {serial: {port: ttyBOARD, poll_interval: 5ms}}}
sinks: {out: {memory: {}}, dlq: {memory: {}}}
pipelines: {p: {from: board, to: out}}
""")
        assert wait_for(lambda: e.sources["board"].source.opens == 1)
        bad = frame("d1", 1, 0, 20.0)[:-10] + b"*00000000\n"
        board.write(bad + frame("d1", 1, 1, 21.0))
        assert wait_for(lambda: len(hub.out.get("out", [])) == 1 and len(hub.out.get("dlq", [])) == 1)
        assert e.stop()
    finally:
        if board.master is not None:
            os.close(board.master)
    (d,) = hub.out["dlq"]
    assert "checksum" in d["reason"] and d["record"]["payload"] == bad[:-1].decode()
    assert d["record"]["bytes"] == len(bad) - 1
