# edgestream-agent: the whole agent, its core and both links. Like
# micropython-lib's aioble, this manifest only requires its parts, each a
# folder here with its own manifest.py; a board that needs less requires
# only what its agent.json uses:
#   add_library("edgestream-agent", "/path/to/edgestream/agent")
#   require("mqtt", library="edgestream-agent")    # the core + the MQTT link
#   require("serial", library="edgestream-agent")  # the core + the serial link (+ shared)
# or everything:
#   add_library("edgestream", "/path/to/edgestream")
#   require("agent", library="edgestream")
# Relative paths are resolved from this file's folder.
metadata(version="0.1.0", description="EdgeStream agent: sensors, filters, windows, MQTT and serial links.")

add_library("edgestream-agent", ".")  # require() finds the parts by folder name
require("core", library="edgestream-agent")
require("mqtt", library="edgestream-agent")
require("serial", library="edgestream-agent")
