# $(PORT_DIR)/boards/manifest.py for the unix-port board build: what a board
# port's own manifest freezes that the agent uses (asyncio; ESP32 and RP2040
# freeze it too). The unix port's variants/manifest.py would also require
# micropython-lib packages (mip, ssl) that a build without submodules lacks.
include("$(MPY_DIR)/extmod/asyncio")
