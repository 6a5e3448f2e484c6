"""Wire protocol throughput: encode on the device, frame, read and decode on the hub.

Prints messages/s under CPython and under MicroPython (esp32 heap) and the
device-side allocation per batch, measured in one run on the same data.
"""

import time

from bench.report import figure
from edgestream_shared.decoder import decode
from edgestream_shared.encoder import Encoder
from edgestream_shared.frame import FrameReader, encode_frame
from edgestream_tools import micropython as mp

SECTION = "Wire protocol"
RUNS = 3

NAMES = (b"count", b"avg", b"min", b"max")
DEVICE = r"""
import time, gc
from edgestream_shared.encoder import Encoder
from edgestream_shared.frame import encode_frame
e = Encoder(b"dev-1", 42)
out = bytearray(1100)
vals = [10, 21.5, 3, 40]
N = 2000
gc.collect()
a0 = gc.mem_alloc()
t0 = time.ticks_us()
for i in range(N):
    e.begin(b"results")
    for j in range(4):
        e.add_result(i * 4 + j, b"temp", b"w10s", 0, 10000, (b"count", b"avg", b"min", b"max"), vals)
    encode_frame(e.finish(), out)
dt = time.ticks_diff(time.ticks_us(), t0)
print(N * 1000000 // dt, (gc.mem_alloc() - a0) // N)
"""


def once(n: int) -> tuple[float, float]:
    """(encode+frame, read+decode) messages/s of one CPython pass over ``n`` 4-result messages."""
    e = Encoder(b"dev-1", 42)
    t0 = time.perf_counter()
    frames = []
    for i in range(n):
        e.begin(b"results")
        for j in range(4):
            e.add_result(i * 4 + j, b"temp", b"w10s", 0, 10000, NAMES, (10, 21.5, 3, 40))
        frames.append(encode_frame(e.finish()))
    t1 = time.perf_counter()
    r = FrameReader()
    r.feed(b"".join(frames))
    got = 0
    while (p := r.next()) is not None:
        got += len(decode(p)["items"])
    t2 = time.perf_counter()
    assert got == 4 * n
    return n / (t1 - t0), n / (t2 - t1)


def main() -> None:
    runs = [once(20_000) for _ in range(RUNS)]
    figure(SECTION, "CPython encode+frame, 4-result messages", [r[0] for r in runs], "messages/s")
    figure(SECTION, "CPython read+decode, 4-result messages", [r[1] for r in runs], "messages/s")
    device = [mp.run_code(DEVICE, board="esp32").split() for _ in range(RUNS)]
    figure(SECTION, "MicroPython (esp32 heap) encode+frame, 4-result messages", [int(r) for r, _ in device],
           "messages/s")
    figure(SECTION, "MicroPython bytes allocated per 4-result message (worst run)", max(int(a) for _, a in device),
           "B")
