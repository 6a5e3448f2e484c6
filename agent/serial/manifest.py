# edgestream-agent part: the serial link (transport.type "serial": USB CDC,
# a UART or a tty), with the core it runs in and the shared frame code.
metadata(version="0.1.0", description="EdgeStream agent: the serial link.")

add_library("edgestream-agent", "..")
add_library("edgestream", "../..")
require("core", library="edgestream-agent")
require("shared", library="edgestream")
package("edgestream_agent", files=("serial_link.py",), base_path="..")
