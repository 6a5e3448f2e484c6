"""The tests' broker helper: a private mosquitto on a free loopback port."""

from edgestream_tools.broker import Mosquitto, find_mosquitto, free_port

__all__ = ["Mosquitto", "find_mosquitto", "free_port"]
