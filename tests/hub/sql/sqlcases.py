"""Reader of the ``cases/*.sqltest`` fixture files shared by the SQL tests.

A file holds cases separated by ``===``. Each case has ``name:``,
``query:``, optional ``options:`` (JSON: processor keyword arguments),
``tables:`` (JSON: name -> list of rows), ``input:`` (JSON lines until the
next key), ``expected:`` (JSON lines) and optional ``late:``/``dead:``
counts. Lines starting with ``#`` are comments.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

CASES = Path(__file__).parent / "cases"


def load_cases() -> list[dict]:
    out = []
    for path in sorted(CASES.glob("*.sqltest")):
        for n, block in enumerate(path.read_text().split("\n===\n")):
            case: dict = {"file": path.stem, "options": {}, "tables": {}, "input": [], "expected": [],
                          "late": 0, "dead": 0}
            key = None
            for line in block.split("\n"):
                if not line.strip() or line.startswith("#"):
                    continue
                head, sep, rest = line.partition(":")
                if sep and head in ("name", "query", "options", "tables", "input", "expected", "late", "dead"):
                    key = head
                    rest = rest.strip()
                    if head in ("name", "query"):
                        case[head] = rest
                    elif head in ("options", "tables"):
                        case[head] = json.loads(rest)
                    elif head in ("late", "dead"):
                        case[head] = int(rest)
                    continue
                if key in ("input", "expected"):
                    case[key].append(json.loads(line))
                elif key == "query":
                    case["query"] += "\n" + line
                else:
                    raise ValueError(f"{path}:{n}: unexpected line {line!r}")
            case["id"] = f"{path.stem}: {case.get('name', n)}"
            out.append(case)
    return out


def same(a, b) -> bool:
    """Equal rows; floats within 1e-9 relative; key order matters."""
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
            return a == b
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b and type(a) is type(b) or (a == b and {type(a), type(b)} <= {int, float})
