# A module that runs out of heap while it loads (test_loading.py): it has
# built something big by the time its last line fails.
KEPT = bytearray(16384)
raise MemoryError("out of heap while loading")
