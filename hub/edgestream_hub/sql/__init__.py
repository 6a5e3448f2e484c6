"""Streaming SQL for the hub: compile once, run windowed queries incrementally.

``SqlProcessor`` is the hub processor (registered as ``sql``);
``compile_query`` runs the passes (see ``optimizer.PASSES``) and returns
the plan; ``explain`` prints it; ``SqlError`` is every compile error.
Submodules load on first use, so importing the package stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["SqlProcessor", "SqlError", "SqlRuntimeError", "compile_query", "explain", "Catalog", "load_table"]

_LAZY = {
    "SqlProcessor": "processor",
    "SqlError": "errors",
    "SqlRuntimeError": "errors",
    "compile_query": "optimizer",
    "explain": "plan",
    "Catalog": "catalog",
    "load_table": "tables",
}


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{mod}"), name)
