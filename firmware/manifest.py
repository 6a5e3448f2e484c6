# Freeze the EdgeStream agent into a MicroPython firmware image.
#
#   cd micropython/ports/rp2   # or ports/esp32
#   make BOARD=RPI_PICO FROZEN_MANIFEST=/path/to/edgestream/firmware/manifest.py
#
# Frozen modules run from flash: their bytecode costs no heap, which is what
# leaves a 100 KB heap for the agent's buffers. Relative paths below are
# resolved from this file's folder by MicroPython's manifest tool.
include("$(PORT_DIR)/boards/manifest.py")  # keep the port's own frozen modules
package("edgestream_shared", base_path="../shared")
package("edgestream_agent", base_path="../agent")
