"""What the passes know besides the query: tables (and their columns) and user functions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional


@dataclass
class Catalog:
    """Names a query may use beyond its streams.

    ``tables`` maps a table name to its column names (None when not known
    yet); ``functions`` maps a user-defined function name to its callable.
    """

    tables: dict[str, Optional[set]] = field(default_factory=dict)
    functions: dict[str, Callable[..., Any]] = field(default_factory=dict)
    time_field: str = "ts"
