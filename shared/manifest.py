# edgestream-shared: the wire protocol's definition (topics, codec, serial
# framing), for the hub and the agent's serial link. micropython-lib style:
# required by name from this repository's library, e.g. in a manifest
#   add_library("edgestream", "/path/to/edgestream")
#   require("shared", library="edgestream")
metadata(version="0.1.0", description="EdgeStream wire protocol: topics, codec, serial framing.")

package("edgestream_shared")
