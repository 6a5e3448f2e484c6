# Offline buffer: a bounded FIFO of encoded messages (wire "results"
# batches) that fills while the link is down and drains in order when it is
# back.
#
# Memory: one bytearray of `size` bytes, allocated here, used as a ring of
# variable-length records that never wrap (a record that does not fit at the
# end starts again at 0; a 0xFFFF length marks the jump). Each record is
#   len:u16  items:u8  flags:u8  payload[len]
# so a record is always one contiguous memoryview that can be handed to the
# socket as it is. Nothing is copied to send it.
#
# Semantics (what the hub can rely on):
# - push() appends; when the ring is full the OLDEST records are evicted
#   (moved to the spill file when there is one, else dropped) and the
#   results they held are counted in `dropped`.
# - Sending is "peek, mark_sent, ack": records stay in the ring until the
#   transport confirms them (MQTT PUBACK, or the serial write completed), so
#   a lost link loses nothing that was not acknowledged: rewind() makes every
#   unacknowledged record pending again, flagged as a resend (MQTT DUP).
# - A record that was sent but not yet acknowledged when it is evicted may
#   have reached the hub: it is counted in `dropped_unacked`, not `dropped`.
#   `dropped` therefore counts exactly the results that never left the board.
# - Acks arrive in send order (MQTT 3.1.1, 4.6: a server acknowledges QoS 1
#   PUBLISHes in the order it received them).
#
# Spill (optional, boards with a filesystem): evicted records go to two
# segment files of spill_size/2 bytes each instead of being dropped. They
# are older than everything in RAM, so they drain first (one at a time,
# through a small read buffer). When both segments are full the older one
# is deleted and its unsent results are counted in `dropped`. Spilled data
# does not survive a reboot: the files are cleared when the buffer starts.

from edgestream_agent.timebase import const

_HDR = const(4)
_WRAP = const(0xFFFF)
_SENT = const(1)     # flag: sent at least once (resends carry MQTT DUP)
MAX_RECORD = const(0xFFFE)


class OfflineBuffer:
    def __init__(self, size=8192, spill_path=None, spill_size=0, max_record=2048):
        if size < 64:
            raise ValueError("offline buffer size must be >= 64 bytes")
        self.size = size
        self._buf = bytearray(size)
        self._mv = memoryview(self._buf)
        self._head = 0          # where the next record is written
        self._tail = 0          # oldest record
        self._send = 0          # next record to send
        self.records = 0        # records in RAM
        self.items = 0          # results in RAM
        self._n_sent = 0        # records from the tail that are sent, not acked
        self._skip_acks = 0     # acks still due for evicted sent records
        # counters (health metrics)
        self.pushed = 0         # results accepted
        self.acked = 0          # results confirmed sent
        self.dropped = 0        # results dropped without ever being sent
        self.dropped_unacked = 0  # results evicted while sent but unconfirmed
        self.resent = 0         # records sent again after a reconnect
        self.spilled = 0        # results moved to the spill file
        self.max_record = min(max_record, MAX_RECORD, size - _HDR)
        self.peek_dup = False   # set by peek(): the record was sent before
        self.peek_items = 0
        self._spill = None
        if spill_path and spill_size:
            from edgestream_agent.spill import Spill  # only boards that spill load it
            self._spill = Spill(spill_path, spill_size, self.max_record + _HDR)

    # -- writing ---------------------------------------------------------
    def push(self, data, items=1):
        # Append one encoded message holding `items` results. Returns False
        # (and counts the results as dropped) only for a record larger than
        # the whole buffer or max_record.
        n = len(data)
        need = n + _HDR
        if n > self.max_record or items > 255:
            self.dropped += items
            return False
        while not self._fits(need):
            self._evict()
        h = self._head
        if self.records and h >= self._tail and self.size - h < need:
            # jump to the start; mark it unless there is no room for a header
            if self.size - h >= _HDR:
                self._buf[h] = 0xFF
                self._buf[h + 1] = 0xFF
            if self._send == h:
                self._send = 0
            h = 0
        elif not self.records:
            h = self._tail = self._send = 0
        b = self._buf
        b[h] = n >> 8
        b[h + 1] = n & 0xFF
        b[h + 2] = items
        b[h + 3] = 0
        b[h + _HDR:h + need] = data
        self._head = h + need
        self.records += 1
        self.items += items
        self.pushed += items
        return True

    def _fits(self, need):
        if not self.records:
            return need <= self.size
        h, t = self._head, self._tail
        if h > t:
            return self.size - h >= need or t >= need
        return t - h >= need  # wrapped (or exactly full when h == t)

    def _at(self, p):
        # position of the record at p, following a wrap
        if self.size - p < _HDR or (self._buf[p] == 0xFF and self._buf[p + 1] == 0xFF):
            return 0
        return p

    def _len(self, p):
        return (self._buf[p] << 8) | self._buf[p + 1]

    def _pop(self):
        # remove the tail record -> its items
        t = self._at(self._tail)
        items = self._buf[t + 2]
        nxt = t + _HDR + self._len(t)
        self.records -= 1
        self.items -= items
        if self.records:
            self._tail = self._at(nxt) if nxt < self.size else 0
        else:
            self._head = self._tail = self._send = 0
        return items

    def _evict(self):
        # make room: the oldest record goes to the spill file or is dropped
        t = self._at(self._tail)
        was_sent = self._n_sent > 0
        n = self._len(t)
        if was_sent:
            self._n_sent -= 1
            self._skip_acks += 1
            items = self._pop()
            self.dropped_unacked += items
            return
        if self._send == t or self._send == self._tail:
            self._send = -1  # recomputed below
        if self._spill is not None:
            self._spill.write(self._mv[t:t + _HDR + n], self)
            items = self._pop()
            self.spilled += items
        else:
            items = self._pop()
            self.dropped += items
        if self._send == -1:
            self._send = self._tail

    # -- sending ----------------------------------------------------------
    def pending(self):
        # records waiting to be sent (spill + RAM, not counting in-flight ones)
        s = self._spill.unsent() if self._spill is not None else 0
        return s + self.records - self._n_sent

    def peek(self):
        # Next record to send -> memoryview of its payload, or None. Sets
        # peek_dup / peek_items. Call mark_sent() once it was handed over.
        sp = self._spill
        if sp is not None and sp.records:
            if sp.in_flight:
                return None  # spilled records go one at a time
            mv = sp.peek()
            if mv is not None:
                self.peek_dup = sp.peek_flags & _SENT != 0
                self.peek_items = sp.peek_items
                return mv
        if self._n_sent >= self.records:
            return None
        p = self._at(self._send)
        self._send = p
        n = self._len(p)
        self.peek_dup = self._buf[p + 3] & _SENT != 0
        self.peek_items = self._buf[p + 2]
        return self._mv[p + _HDR:p + _HDR + n]

    def mark_sent(self):
        sp = self._spill
        if sp is not None and sp.records and not sp.in_flight:
            sp.in_flight = True
            if self.peek_dup:
                self.resent += 1
            return
        p = self._send
        if self.peek_dup:
            self.resent += 1
        self._buf[p + 3] |= _SENT
        self._n_sent += 1
        nxt = p + _HDR + self._len(p)
        self._send = self._at(nxt) if nxt < self.size else 0

    def ack(self):
        # The oldest sent record was confirmed: release it. -> results freed
        if self._skip_acks:
            self._skip_acks -= 1
            return 0
        sp = self._spill
        if sp is not None and sp.in_flight:
            items = sp.pop()
            self.acked += items
            return items
        if not self._n_sent:
            return 0
        self._n_sent -= 1
        items = self._pop()
        self.acked += items
        return items

    def rewind(self):
        # The link dropped: every sent but unacknowledged record is pending
        # again (its flag marks it as a resend). Acks still due will not come.
        self._skip_acks = 0
        self._n_sent = 0
        self._send = self._tail
        if self._spill is not None and self._spill.in_flight:
            self._spill.in_flight = False
            self._spill.mark_sent()

    def clear(self):
        self.records = self.items = self._n_sent = self._skip_acks = 0
        self._head = self._tail = self._send = 0
