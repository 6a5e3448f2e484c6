# micropython-lib style manifest: freeze or install the shared wire protocol.
metadata(version="0.1.0", description="EdgeStream wire protocol (topics, codec, serial framing).")

package("edgestream_shared")
