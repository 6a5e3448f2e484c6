# Freeze the EdgeStream agent (all of it, with the shared package) into a
# MicroPython firmware image:
#
#   cd micropython/ports/rp2   # or ports/esp32
#   make BOARD=RPI_PICO FROZEN_MANIFEST=/path/to/edgestream/firmware/manifest.py
#
# Frozen modules run from flash: their bytecode and names cost no heap, which
# is what leaves a 100 KB heap for the agent's buffers. A board that needs
# less requires parts instead (agent/manifest.py says how). Relative paths are
# resolved from this file's folder by MicroPython's manifest tool. The unix
# port has no boards/manifest.py: the board build (tools/edgestream_tools/
# boardbuild.py) points $(PORT_DIR) at firmware/unix, whose manifest freezes
# asyncio as a board's firmware does.
include("$(PORT_DIR)/boards/manifest.py")  # keep the port's own frozen modules

add_library("edgestream", "..")  # this repository: require() finds agent/ and shared/ by name
require("agent", library="edgestream")
