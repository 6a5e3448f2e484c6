# edgestream-agent part: the MQTT link (transport.type "mqtt", TLS when the
# port has ssl), with the core it runs in.
metadata(version="0.1.0", description="EdgeStream agent: the MQTT link.")

add_library("edgestream-agent", "..")
require("core", library="edgestream-agent")
package("edgestream_agent", files=("mqtt.py", "mqtt_tls.py", "mqtt_transport.py"), base_path="..")
