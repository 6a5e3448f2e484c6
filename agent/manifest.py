# micropython-lib style manifest for the EdgeStream agent.
metadata(version="0.1.0", description="EdgeStream agent: scheduler, sensors, filters, windows.")

require("edgestream-shared")  # resolved by firmware/manifest.py via include()
package("edgestream_agent")
