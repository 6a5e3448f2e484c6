# Spill file of the offline buffer (offline_buffer.py), for boards with a
# filesystem; imported only when transport.spill_bytes > 0.
#
# Two segment files used as a bounded FIFO of records (the same layout as
# the RAM ring: len:u16 items:u8 flags:u8 payload). Writes append to the
# current segment; reads go from the older one, one record at a time through
# a small read buffer (only one spilled record is in flight). When both
# segments are full the older one is deleted and its unsent results are
# counted as dropped by the owning buffer. The files are cleared at start:
# spilled data does not survive a reboot.


class Spill:
    # Two segment files used as a bounded FIFO of records (same layout as
    # the RAM ring). Writes append to the current segment; reads go from the
    # older one. Only one spilled record is in flight at a time.
    def __init__(self, path, size, max_rec):
        import os
        self._os = os
        self.paths = (path + ".0", path + ".1")
        self.seg_size = max(size // 2, max_rec)
        self.rbuf = bytearray(max_rec)
        self.rmv = memoryview(self.rbuf)
        self.fill = [0, 0]      # bytes written per segment
        self.items = [0, 0]     # results per segment (unsent part)
        self.recs = [0, 0]
        self.w = 0              # segment being written
        self.r = 0              # segment being read
        self.roff = 0           # read offset in segment r
        self.records = 0
        self.in_flight = False
        self.peek_items = 0
        self.peek_flags = 0
        self._loaded = -1       # roff of the record in rbuf, -1 = none
        for p in self.paths:
            try:
                os.remove(p)
            except OSError:
                pass

    def unsent(self):
        return self.records - (1 if self.in_flight else 0)

    def write(self, rec, owner):
        # Invariant: r is the segment holding the oldest unread record; when
        # both hold records, r is the one not being written (w).
        n = len(rec)
        w = self.w
        if self.fill[w] + n > self.seg_size:
            o = 1 - w
            if self.recs[o]:
                # both segments full: the older one (o == r) goes, whole
                lost = self.items[o]
                if self.in_flight:
                    owner._skip_acks += 1
                    owner.dropped_unacked += self.peek_items
                    lost -= self.peek_items
                    self.in_flight = False
                owner.dropped += lost
                self.records -= self.recs[o]
                self.r = w
                self.roff = 0
                self._loaded = -1
            self._truncate(o)
            self.fill[o] = self.items[o] = self.recs[o] = 0
            self.w = w = o
        f = open(self.paths[w], "ab")
        try:
            f.write(rec)
        finally:
            f.close()
        if not self.records:
            self.r = w
            self.roff = self.fill[w]
        self.fill[w] += n
        self.items[w] += rec[2]
        self.recs[w] += 1
        self.records += 1

    def _truncate(self, i):
        try:
            self._os.remove(self.paths[i])
        except OSError:
            pass

    def peek(self):
        if self._loaded != self.roff:
            f = open(self.paths[self.r], "rb")
            try:
                f.seek(self.roff)
                f.readinto(self.rmv[0:4])
                n = (self.rbuf[0] << 8) | self.rbuf[1]
                f.readinto(self.rmv[4:4 + n])
            finally:
                f.close()
            self._loaded = self.roff
        n = (self.rbuf[0] << 8) | self.rbuf[1]
        self.peek_items = self.rbuf[2]
        self.peek_flags = self.rbuf[3]
        return self.rmv[4:4 + n]

    def mark_sent(self):
        # remember the resend flag for the loaded record (RAM copy only)
        if self._loaded == self.roff:
            self.rbuf[3] |= 1

    def pop(self):
        r = self.r
        n = (self.rbuf[0] << 8) | self.rbuf[1]
        items = self.rbuf[2]
        self.in_flight = False
        self.roff += 4 + n
        self.items[r] -= items
        self.recs[r] -= 1
        self.records -= 1
        if not self.recs[r]:
            # segment fully read: delete it; the rest (if any) is in the other
            self.fill[r] = 0
            self._truncate(r)
            self.roff = 0
            self._loaded = -1
            if self.records:
                self.r = 1 - r
        return items
