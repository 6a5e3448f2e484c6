"""EdgeStream hub: the CPython service on the gateway.

Submodules are imported lazily by their users so that a cold start pays only
for what a config needs.
"""

from edgestream_hub.errors import EdgeStreamError

__all__ = ["EdgeStreamError"]
__version__ = "0.1.0"
