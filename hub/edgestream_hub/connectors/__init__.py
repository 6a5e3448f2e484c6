"""Built-in connectors. Each module imports its library (paho, pyserial) only when a
component is built, so validating a config never pays for them."""
