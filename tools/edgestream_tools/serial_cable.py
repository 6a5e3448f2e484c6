"""A serial cable between a virtual board and the hub: two ptys joined by a thread.

A board's UART and a gateway's USB-serial adapter are two ends of a wire; on
one machine they are two ptys whose master sides this cable joins, byte for
byte, both ways. Each end gets a stable name (a symlink, as
``/dev/serial/by-id/...`` gives a USB adapter): the board's in its folder
(the agent's ``"serial": {"port": "tty"}``), the hub's beside its config
(the serial source's ``port``). The ptys are raw (no echo, no CR/LF
translation) and stay open while the cable is, so either side may close and
reopen its end (the hub's serial source does after a hiccup).
"""

from __future__ import annotations

import os
import select
import threading
import tty
from pathlib import Path


class SerialCable:
    """Two raw ptys joined by a thread; ``board_end`` and ``hub_end`` are their paths."""

    def __init__(self, board_link: Path, hub_link: Path) -> None:
        self._board_master, board_slave = os.openpty()
        self._hub_master, hub_slave = os.openpty()
        for fd in (board_slave, hub_slave):
            tty.setraw(fd)
        for fd in (self._board_master, self._hub_master):
            os.set_blocking(fd, False)  # a side that stopped reading never stalls the other direction
        self._slaves = (board_slave, hub_slave)  # held open: the ptys survive an end being reopened
        self.board_end = os.ttyname(board_slave)
        self.hub_end = os.ttyname(hub_slave)
        self.links = (Path(board_link), Path(hub_link))
        for link, target in zip(self.links, (self.board_end, self.hub_end)):
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(target)
        self.bytes_to_hub = 0
        self.bytes_to_board = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, name="serial-cable", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        ends = {self._board_master: self._hub_master, self._hub_master: self._board_master}
        while not self._stop.is_set():
            ready, _, _ = select.select(list(ends), [], [], 0.1)
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                    os.write(ends[fd], data)
                except OSError:  # nothing to read after all, or a full end nobody reads: the bytes are dropped
                    continue
                if fd == self._board_master:
                    self.bytes_to_hub += len(data)
                else:
                    self.bytes_to_board += len(data)

    def close(self) -> None:
        """Stop the pump, close the ptys and remove the links."""
        self._stop.set()
        self._thread.join(2)
        for fd in (self._board_master, self._hub_master, *self._slaves):
            try:
                os.close(fd)
            except OSError:
                pass
        for link in self.links:
            if link.is_symlink():
                link.unlink()
