# Serial transport: the same wire messages as MQTT, one shared frame per
# line ($payload*crc32\n, edgestream_shared.frame), for boards on USB CDC or
# a UART without a network (Raspberry Pi Pico). The hub sends config and
# time messages back as frames on the same stream; acks go out as frames.
#
# Ports (transport.serial.port):
#   "stdio"  USB CDC / the REPL stream: sys.stdout.buffer out, sys.stdin.buffer
#            in, read only when select.poll says a byte is ready. Do not print
#            from the application while this transport runs: stray text is
#            garbage to the hub (it is skipped and counted there, nothing more).
#   "uart"   machine.UART(uart, baud, tx=, rx=), read with any()/readinto().
#   a path   a tty device (unix port, e.g. a pty in tests): raw mode with
#            VMIN=0 so reads never wait; writes happen only when poll says
#            the port is writable.
# There are no per-message acks on a serial line: a message counts as sent
# once it was written. Results stay in the offline buffer while the port is
# not writable (host not reading, cable out), and drain in order after.

import select

from edgestream_shared.errors import WireError
from edgestream_shared.frame import MAX_FRAME, FrameReader, encode_frame

_READ = 256  # bytes read per poll at most (keeps one poll short)


class SerialTransport:
    acks = False  # the buffer releases a record as soon as it is written
    qos = 0

    def __init__(self, cfg, on_message=None):
        self.cfg = cfg
        self.on_message = on_message      # on_message(payload bytes)
        self._out = bytearray(MAX_FRAME)
        self._outv = memoryview(self._out)
        self._in = bytearray(_READ)
        self._inv = memoryview(self._in)
        self.reader = FrameReader()
        self.frames_out = 0
        self.frames_in = 0
        self.frame_errors = 0
        self.failures = 0
        self.connects = 0
        self._r = None                    # readable stream (or UART)
        self._w = None
        self._uart = None
        self._poll_in = None
        self._poll_out = None
        self._open()

    def _open(self):
        port = self.cfg["port"]
        if port == "uart":
            from machine import UART
            kw = {"baudrate": self.cfg["baud"]}
            if self.cfg["tx"] is not None:
                kw["tx"] = self.cfg["tx"]
            if self.cfg["rx"] is not None:
                kw["rx"] = self.cfg["rx"]
            self._uart = UART(self.cfg["uart"], **kw)
            self._r = self._w = self._uart
        elif port == "stdio":
            import sys
            self._r = sys.stdin.buffer
            self._w = sys.stdout.buffer
        else:
            f = open(port, "r+b")
            _raw(f)
            self._r = self._w = f
        if self._uart is None:
            self._poll_in = select.poll()
            self._poll_in.register(self._r, select.POLLIN)
            self._poll_out = select.poll()
            self._poll_out.register(self._w, select.POLLOUT)
        self.connects = 1

    def up(self):
        # writable now?
        if self._uart is not None:
            return True
        for _, ev in self._poll_out.poll(0):
            if ev & select.POLLOUT:
                return True
        return False

    def write(self, payload):
        # Frame and write one message. -> True when written.
        try:
            k = encode_frame(payload, self._out)
        except WireError:
            return False  # over the frame limit: the caller counts it
        if not self.up():
            return False
        try:
            self._w.write(self._outv[0:k])
        except OSError:
            self.failures += 1
            return False
        self.frames_out += 1
        return True

    # -- the Link's transport surface --------------------------------------
    def send(self, payload, dup=False):
        # a results message -> 0 when written (nothing to wait for), None: later
        return 0 if self.write(payload) else None

    def control(self, kind, payload):
        return self.write(payload)

    def stats(self, m):
        m["reconnects"] = 0
        m["link_failures"] = self.failures
        m["frame_errors"] = self.frame_errors

    def poll(self):
        # Read what is ready and hand every good frame to on_message.
        n = 0
        try:
            if self._uart is not None:
                if self._uart.any():
                    n = self._uart.readinto(self._in) or 0
            elif self.cfg["port"] == "stdio":
                # stdin: one byte per ready-check (the only portable way)
                while n < _READ and self._ready():
                    b = self._r.read(1)
                    if not b:
                        break
                    self._in[n] = b[0]
                    n += 1
            elif self._ready():
                n = self._r.readinto(self._in) or 0
        except OSError:
            self.failures += 1
            return
        if n:
            self.reader.feed(self._inv[0:n])
        for _ in range(16):  # bounded: a flood waits for the next poll
            try:
                p = self.reader.next()
            except WireError:
                self.frame_errors += 1
                continue
            if p is None:
                break
            self.frames_in += 1
            if self.on_message:
                self.on_message(p)

    def _ready(self):
        for _, ev in self._poll_in.poll(0):
            if ev & select.POLLIN:
                return True
        return False

    def close(self):
        if self._uart is None and self.cfg["port"] not in ("stdio", "uart"):
            try:
                self._r.close()
            except OSError:
                pass


def _raw(f):
    # Raw mode, and reads that return at once with what is there (VMIN=0,
    # VTIME=0), on ports with termios (unix). Boards' UARTs need nothing.
    try:
        import termios
    except ImportError:
        return
    fd = f.fileno()
    try:
        termios.setraw(fd)
        a = termios.tcgetattr(fd)
        cc = a[6]
        cc[5] = 0  # VTIME
        cc[6] = 0  # VMIN
        termios.tcsetattr(fd, termios.TCSANOW, a)
    except (OSError, AttributeError, TypeError):
        pass
