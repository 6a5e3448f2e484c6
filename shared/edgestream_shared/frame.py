# Serial framing for boards on USB CDC or a UART.
#
# One frame per line:   $<payload>*<crc32 of payload, 8 lowercase hex>\n
#
# The payload is a wire message (JSON, which never contains a raw newline).
# A reader resynchronises at every newline: garbage, a line with a bad CRC, a
# line over the length limit or a line cut short by an unplug is refused with
# WireError (its `raw` holds the refused line) and the next line is read
# normally. When a cut frame runs into the next one ("$abc$payload*crc"), the
# reader finds the good frame after the last '$' that gives a valid CRC, so
# the cut costs only the cut frame.

from edgestream_shared.errors import WireError

MAX_FRAME = 2048  # bytes per line, "$", "*crc" and "\n" included

try:
    from binascii import crc32
except ImportError:  # ports built without binascii.crc32
    def crc32(data, crc=0):
        crc ^= 0xFFFFFFFF
        for b in data:
            crc ^= b
            for _ in range(8):
                crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
        return crc ^ 0xFFFFFFFF

_HEX = b"0123456789abcdef"


def encode_frame(payload, out=None):
    # payload (bytes-like) -> frame bytes. With `out` (a bytearray at least
    # len(payload) + 11 long) the frame is written there and its length
    # returned, allocation-free for a preallocated device buffer.
    n = len(payload)
    if n + 11 > MAX_FRAME:
        raise WireError("frame: payload of %d bytes is over the %d byte frame limit" % (n, MAX_FRAME))
    if out is None:
        out = bytearray(n + 11)
        ret = True
    else:
        ret = False
    c = crc32(payload) & 0xFFFFFFFF
    out[0] = 36  # '$'
    out[1:n + 1] = payload
    out[n + 1] = 42  # '*'
    for i in range(8):
        out[n + 9 - i] = _HEX[c & 15]
        c >>= 4
    out[n + 10] = 10  # '\n'
    return bytes(out) if ret else n + 11


def _hexval(line, start):
    v = 0
    for i in range(start, start + 8):
        c = line[i]
        if 48 <= c <= 57:
            v = (v << 4) | (c - 48)
        elif 97 <= c <= 102:
            v = (v << 4) | (c - 87)
        else:
            return -1
    return v


def _check(line, start):
    # Is line[start:] (ending before any '\n') "$payload*crc"? -> payload or None
    n = len(line)
    if n - start < 10 or line[start] != 36 or line[n - 9] != 42:
        return None
    want = _hexval(line, n - 8)
    payload = line[start + 1:n - 9]
    if want < 0 or (crc32(payload) & 0xFFFFFFFF) != want:
        return None
    return payload


def decode_frame(line, max_frame=MAX_FRAME):
    # One line (without its "\n"; a trailing "\r" is allowed) -> payload
    # bytes. Raises WireError naming what was wrong.
    line = bytes(line)
    if line.endswith(b"\r"):
        line = line[:-1]
    if len(line) > max_frame:
        raise WireError("frame: line of %d bytes is over the %d byte limit" % (len(line), max_frame))
    p = _check(line, 0)
    if p is not None:
        return p
    # resync: a good frame may follow garbage or a cut frame on this line
    i = line.find(b"$", 1)
    while i > 0:
        p = _check(line, i)
        if p is not None:
            return p
        i = line.find(b"$", i + 1)
    if not line:
        raise WireError("frame: empty line")
    if line[0] != 36:
        raise WireError("frame: line does not start with '$' (garbage or a cut frame)")
    if len(line) < 10 or line[len(line) - 9] != 42:
        raise WireError("frame: no '*crc' trailer (cut frame?)")
    raise WireError("frame: checksum mismatch")


class FrameReader:
    # Incremental reader for a byte stream: feed() what the port gave,
    # then call next() until it returns None.
    #
    #   r = FrameReader()
    #   r.feed(port.read(n))
    #   while True:
    #       try:
    #           payload = r.next()
    #       except WireError as e:
    #           count(e); continue
    #       if payload is None:
    #           break

    def __init__(self, max_frame=MAX_FRAME):
        self.max_frame = max_frame
        self._buf = bytearray()
        self._pos = 0           # start of the unread part of _buf
        self._skipping = False  # inside an over-long line, dropping until "\n"
        self.errors = 0         # bad lines seen (each also raised once)

    def feed(self, data):
        if data:
            if self._pos:
                # drop what was read (MicroPython bytearrays cannot del a slice)
                self._buf = self._buf[self._pos:]
                self._pos = 0
            self._buf.extend(data)

    def next(self):
        buf = self._buf
        while True:
            pos = self._pos
            i = buf.find(b"\n", pos)
            if i < 0:
                if len(buf) - pos > self.max_frame:
                    # no newline within the limit: drop what we have and
                    # skip to the next newline
                    old = buf
                    self._buf = buf = bytearray()
                    self._pos = 0
                    if not self._skipping:
                        self._skipping = True
                        self.errors += 1
                        e = WireError("frame: line over the %d byte limit" % self.max_frame)
                        e.raw = old[pos:]  # the start of the line, for a dead letter
                        raise e
                return None
            line = bytes(buf[pos:i])
            self._pos = i + 1
            if self._skipping:
                self._skipping = False
                continue  # the tail of an over-long line
            if not line or line == b"\r":
                continue  # blank lines are keep-alives, not errors
            try:
                return decode_frame(line, self.max_frame)
            except WireError as e:
                self.errors += 1
                e.raw = line  # the refused line, for a dead letter
                raise
