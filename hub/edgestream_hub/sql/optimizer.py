"""The passes, in the order they run, and ``compile_query`` which runs them.

Each pass is ``fn(query, catalog) -> query`` in a module of its own:

1. ``lower``     sqlglot tree -> ``ir.Query`` (spellings, windows out of GROUP BY; ``lowering`` runs the
                 parser and it, here or in a helper process)
2. ``resolve``   which source each column comes from; output-name references
3. ``validate``  refuse what cannot run, with line, column and caret
4. ``fold``      constant sub-expressions computed once
5. ``pushdown``  WHERE/ON split to the earliest stage; hash-join keys
6. ``prune``     fields each source must carry past the first stage
"""

from __future__ import annotations

from typing import Callable

from . import ir
from .catalog import Catalog
from .fold import fold
from .lowering import lowered
from .plan import Plan, build
from .prune import prune
from .pushdown import pushdown
from .resolve import resolve
from .validate import validate

Pass = Callable[[ir.Query, Catalog], ir.Query]

#: the passes after lowering, in order
PASSES: tuple[Pass, ...] = (resolve, validate, fold, pushdown, prune)


def compile_query(text: str, catalog: Catalog | None = None) -> Plan:
    """Parse ``text``, run every pass, and return the plan (raises SqlError)."""
    catalog = catalog or Catalog()
    q = lowered(text)
    for p in PASSES:
        q = p(q, catalog)
    return build(q)
