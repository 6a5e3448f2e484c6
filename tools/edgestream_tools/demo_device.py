# Device half of `edgestream demo` (runs under MicroPython): simulates a
# sensor, aggregates 1 s tumbling windows and writes the results as serial
# frames on stdout, with one burst of line noise to show resynchronisation.
import sys
import math
from edgestream_shared.encoder import Encoder
from edgestream_shared.frame import encode_frame

NAMES = (b"count", b"avg", b"min", b"max")


def main(windows=5, period_ms=100):
    enc = Encoder(b"demo-1", 1)
    out = bytearray(1100)
    seq = 0
    t = 0
    for w in range(windows):
        n = 0
        total = 0.0
        lo = hi = None
        end = (w + 1) * 1000
        while t < end:
            v = 20.0 + 5.0 * math.sin(t / 1000.0)
            n += 1
            total += v
            lo = v if lo is None or v < lo else lo
            hi = v if hi is None or v > hi else hi
            t += period_ms
        enc.begin(b"results")
        enc.add_result(seq, b"temp", b"tumble_1s", end - 1000, end, NAMES,
                       (n, round(total / n, 3), round(lo, 3), round(hi, 3)))
        seq += 1
        k = encode_frame(enc.finish(), out)
        sys.stdout.write(out[:k])
        if w == 2:
            sys.stdout.write(b"\x00\xff line noise\n")


main()
