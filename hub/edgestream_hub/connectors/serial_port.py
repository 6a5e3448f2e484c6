"""Serial source (pyserial): reads the agent's serial framing from a port, and writes back to it.

Frames (``$<payload>*<crc>\\n``, see docs/wire.md) are read with the shared
``FrameReader``: garbage, a bad checksum or a cut frame is counted and sent
to the dead-letter sink (with the start of the line), and reading
resynchronises at the next newline. Payloads go through ``Ingest`` like the
MQTT source's (``decode: wire``). When the port
goes away (unplugged, EIO) it is closed and reopened with backoff until it
comes back; a port missing at start is waited for the same way.

The port is two-way: ``send(payload)`` frames one wire message with the same
shared framing and writes it (the device registry sends ``config`` and
``time`` this way; the source attaches itself to ``ctx.devices`` when it opens).
"""

from __future__ import annotations

import threading
from typing import Any

from edgestream_hub.components import ComponentContext, PollingSource
from edgestream_hub.registry import component
from edgestream_hub.spec import Field, Spec

Record = dict[str, Any]


class SerialSource(PollingSource):
    def __init__(self, config: dict[str, Any], ctx: ComponentContext) -> None:
        super().__init__(ctx)
        from edgestream_shared.frame import FrameReader

        port = config["port"]
        self.port = port if port.startswith(("/", "socket:", "rfc2217:")) else ctx.resolve(port)
        self.baudrate = config["baudrate"]
        self.poll_s = config["poll_interval"] / 1000
        self.backoff_min_s = config["reopen_min"] / 1000
        self.backoff_max_s = config["reopen_max"] / 1000
        self._reader = FrameReader(config["max_frame"])
        from edgestream_hub.ingest import Ingest  # imported by a source that runs (`hub check` makes none)

        self.ingest = Ingest(ctx, "wire")
        self._ser: Any = None
        self._wait_s = self.backoff_min_s
        self._missing_logged = False
        self._wlock = threading.Lock()  # the port is written from another thread and reopened from this one
        self.opens = 0
        self.frames_out = 0

    def open(self) -> None:
        if self.ctx.devices is not None:
            self.ctx.devices.attach(self.ctx.label, self.send)

    def send(self, payload: bytes) -> bool:
        """Frame one wire message and write it to the port. False when the port is not open or the write
        failed (logged); raises ``WireError`` for a payload over the frame limit."""
        import serial

        from edgestream_shared.frame import encode_frame

        frame = encode_frame(payload)
        with self._wlock:
            ser = self._ser
            if ser is None:
                return False
            try:
                ser.write(frame)
            except (serial.SerialException, OSError) as e:
                self.ctx.log.warning("cannot write to %s: %s", self.port, e)
                return False
            self.frames_out += 1
        return True

    def _open(self) -> bool:
        import serial

        try:
            ser = serial.Serial(self.port, self.baudrate, timeout=0, write_timeout=2)
        except (serial.SerialException, OSError) as e:
            if not self._missing_logged:
                self.ctx.log.warning("cannot open %s (%s); retrying with backoff", self.port, e)
                self._missing_logged = True
            return False
        with self._wlock:
            self._ser = ser
        self._missing_logged = False
        self._wait_s = self.backoff_min_s
        self.opens += 1
        if self.opens > 1:
            self.ctx.count("edgestream_source_reconnects_total")
        self.ctx.log.info("opened %s at %d baud", self.port, self.baudrate)
        return True

    def poll(self) -> tuple[list[Record], float | None]:
        import serial

        if self._ser is None and not self._open():
            wait, self._wait_s = self._wait_s, min(self._wait_s * 2, self.backoff_max_s)
            return [], wait
        try:
            n = self._ser.in_waiting
            data = self._ser.read(max(n, 1) if n else 4096)
        except (serial.SerialException, OSError) as e:
            self.ctx.log.warning("lost %s (%s); reopening", self.port, e)
            self._close_port()
            self._reader = type(self._reader)(self._reader.max_frame)  # a cut frame must not join the next
            return [], self.backoff_min_s
        if not data:
            return [], self.poll_s
        self._reader.feed(data)
        return self._frames(), 0

    def _frames(self) -> list[Record]:
        from edgestream_shared.errors import WireError

        out: list[Record] = []
        where = f"serial {self.port}"
        for _ in range(100_000):
            try:
                payload = self._reader.next()
            except WireError as e:
                self.ingest.reject(getattr(e, "raw", b""), f"{where}: {e}")
                continue
            if payload is None:
                break
            out.extend(self.ingest.payload(payload, where).records)
        return out

    def positions(self) -> Any:
        return self.ingest.positions()

    def restore_positions(self, positions: Any) -> None:
        self.ingest.resume(positions)

    def _close_port(self) -> None:
        with self._wlock:
            ser, self._ser = self._ser, None
        if ser is not None:
            try:
                ser.close()
            except Exception:
                pass

    def close(self) -> None:
        if self.ctx.devices is not None:
            self.ctx.devices.detach(self.ctx.label, self.send)
        self._close_port()
        self.ingest.close()


@component(Spec("serial", "Reads agent serial frames from a port (USB CDC or UART) and decodes wire messages.", [
    Field("port", "str", "Serial device (`/dev/ttyACM0`, `/dev/serial/by-id/...`)."),
    Field("baudrate", "int", "Baud rate (ignored by USB CDC).", default=115200, min=50),
    Field("poll_interval", "duration", "How often the port is read when it was idle.", default="20ms", min=1),
    Field("reopen_min", "duration", "First wait before reopening a missing or unplugged port.", default="100ms"),
    Field("reopen_max", "duration", "Longest wait between reopen attempts.", default="5s"),
    Field("max_frame", "int", "Longest frame line, in bytes.", default=2048, min=16),
], example="sources:\n  board: {serial: {port: /dev/ttyACM0, baudrate: 115200}}"))
def serial_source(config: dict[str, Any], ctx: ComponentContext) -> SerialSource:
    return SerialSource(config, ctx)
