"""The query tree the passes work on: small frozen nodes lowered from sqlglot's tree.

Every node keeps ``pos``, the character offset in the query text it came
from, so any pass can raise a located ``SqlError``. ``pos`` takes no part
in equality: two nodes are equal when they compute the same thing, which is
how GROUP BY keys are matched in SELECT.
"""

from __future__ import annotations

from dataclasses import MISSING, FrozenInstanceError, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterator, Optional, TypeVar

if TYPE_CHECKING:
    from typing_extensions import dataclass_transform
else:  # only type checkers read it (typing has it from Python 3.11)
    def dataclass_transform(**kwargs: Any) -> Callable[[Any], Any]:
        return lambda f: f


def _pos() -> Any:
    return field(default=0, compare=False, repr=False)


class Node:
    """Base of every expression node: one generic ``__init__``, equality, hash and repr for all of them,
    driven by each node's dataclass fields (see ``node``)."""

    pos: int
    # every concrete node is a dataclass: this tells the type checker so (``fields``, ``replace``)
    __dataclass_fields__: ClassVar[dict[str, Any]]
    #: the node's fields in order, those equality and hash read (not ``pos``), those repr shows, and defaults
    _names: ClassVar[tuple[str, ...]] = ()
    _compared: ClassVar[tuple[str, ...]] = ()
    _shown: ClassVar[tuple[str, ...]] = ()
    _defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        names = self._names
        if len(args) > len(names):
            raise TypeError(f"{type(self).__name__}() takes {len(names)} arguments, got {len(args)}")
        for name, value in zip(names, args):
            if name in kwargs:
                raise TypeError(f"{type(self).__name__}() got two values for {name!r}")
            object.__setattr__(self, name, value)
        for name in names[len(args):]:
            if name in kwargs:
                value = kwargs.pop(name)
            elif name in self._defaults:
                value = self._defaults[name]
            else:
                raise TypeError(f"{type(self).__name__}() needs {name!r}")
            object.__setattr__(self, name, value)
        if kwargs:
            raise TypeError(f"{type(self).__name__}() has no field {next(iter(kwargs))!r}")

    def _key(self) -> tuple:
        return tuple(getattr(self, name) for name in self._compared)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"{type(self).__qualname__}({', '.join(f'{n}={getattr(self, n)!r}' for n in self._shown)})"

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def children(self) -> Iterator["Node"]:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, Node):
                yield v
            elif isinstance(v, tuple):
                for item in v:
                    if isinstance(item, Node):
                        yield item
                    elif isinstance(item, tuple):
                        yield from (x for x in item if isinstance(x, Node))

    def walk(self) -> Iterator["Node"]:
        yield self
        for c in self.children():
            yield from c.walk()


N = TypeVar("N", bound=type[Node])


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def node(cls: N) -> N:
    """A frozen dataclass of a node, as ``@dataclass(frozen=True)`` makes it (``fields``, ``replace``, equality
    and hash on every field but ``pos``, ``Name(field=...)`` repr, no assignment), with ``Node``'s methods
    instead of the ones ``dataclass`` writes and compiles for each class: importing the compiler then
    compiles no ~150 methods (about 10 ms of the start of ``hub check`` on a config with SQL)."""
    dataclass(init=False, repr=False, eq=False)(cls)  # fields only: it writes no method
    fs = fields(cls)
    cls._names = tuple(f.name for f in fs)
    cls._compared = tuple(f.name for f in fs if f.compare)
    cls._shown = tuple(f.name for f in fs if f.repr)
    cls._defaults = {f.name: f.default for f in fs if f.default is not MISSING}
    return cls


def transform(node: Node, fn: Callable[[Node], Optional[Node]]) -> Node:
    """Rebuild ``node`` bottom-up; ``fn`` returns a replacement or None to keep a node."""
    changes: dict[str, Any] = {}
    for f in fields(node):
        v = getattr(node, f.name)
        if isinstance(v, Node):
            nv = transform(v, fn)
            if nv is not v:
                changes[f.name] = nv
        elif isinstance(v, tuple) and any(isinstance(x, (Node, tuple)) for x in v):
            nt = tuple(
                transform(x, fn)
                if isinstance(x, Node)
                else tuple(transform(y, fn) if isinstance(y, Node) else y for y in x)
                if isinstance(x, tuple)
                else x
                for x in v
            )
            if nt != v or any(a is not b for a, b in zip(nt, v)):
                changes[f.name] = nt
    if changes:
        node = replace(node, **changes)
    out = fn(node)
    return node if out is None else out


@node
class Lit(Node):
    """A constant: a number, string, boolean or NULL (None)."""

    value: Any
    pos: int = _pos()


@node
class Col(Node):
    """An unresolved column: ``a``, ``s.a``, ``a.b[0]``, ``a->b`` as a path of names and indexes."""

    parts: tuple
    pos: int = _pos()


@node
class Field(Node):
    """A resolved field of one source (stream or table alias), then a path inside it."""

    source: str
    path: tuple
    pos: int = _pos()


@node
class Star(Node):
    """``*`` or ``alias.*``: every field of every source, or of one."""

    source: Optional[str] = None
    pos: int = _pos()


@node
class Unary(Node):
    """``-arg`` or ``NOT arg``."""

    op: str  # "neg" | "not"
    arg: Node
    pos: int = _pos()


@node
class Bin(Node):
    """A comparison: ``op`` is one of = != < <= > >=."""

    op: str
    left: Node
    right: Node
    pos: int = _pos()


@node
class Arith(Node):
    """``args[0] ops[0] args[1] ops[1] args[2] ...``, left to right: a chain of operators of one precedence
    (``+ -``, ``* / %`` or ``||``) as one node, so a chain of 1000 terms nests no deeper than one.

    ``a + b`` is ``Arith(("+",), (a, b))``; ``a - b + c`` is ``Arith(("-", "+"), (a, b, c))``.
    """

    ops: tuple
    args: tuple
    pos: int = _pos()


@node
class Logic(Node):
    """``args[0] AND args[1] AND ...`` (``op`` "and") or the same with OR: every argument is computed."""

    op: str
    args: tuple
    pos: int = _pos()


def logic(op: str, args: list, pos: int = 0) -> Node:
    """A Logic node with nested Logic nodes of the same ``op`` spliced in (``a AND (b AND c)``: three terms)."""
    flat: list = []
    for a in args:
        if isinstance(a, Logic) and a.op == op:
            flat.extend(a.args)
        else:
            flat.append(a)
    return Logic(op, tuple(flat), pos)


@node
class Like(Node):
    """``arg [NOT] LIKE|ILIKE|REGEXP pattern``: ``op`` is "like", "ilike" or "regexp"."""

    arg: Node
    pattern: Node
    negate: bool = False
    pos: int = _pos()
    op: str = "like"


@node
class In(Node):
    """``arg [NOT] IN (items...)``."""

    arg: Node
    items: tuple
    negate: bool = False
    pos: int = _pos()


@node
class Between(Node):
    """``arg [NOT] BETWEEN low AND high``."""

    arg: Node
    low: Node
    high: Node
    negate: bool = False
    pos: int = _pos()


@node
class IsNull(Node):
    """``arg IS [NOT] NULL``: never NULL."""

    arg: Node
    negate: bool = False
    pos: int = _pos()


@node
class IsBool(Node):
    """``arg IS [NOT] TRUE|FALSE``: never NULL."""

    arg: Node
    value: bool
    negate: bool = False
    pos: int = _pos()


@node
class IsDistinct(Node):
    """``left IS [NOT] DISTINCT FROM right``: ``=`` / ``!=`` with NULL equal to NULL, never NULL."""

    left: Node
    right: Node
    negate: bool = False
    pos: int = _pos()


#: predicates whose NOT form is the same node with ``negate`` flipped
NEGATABLE = (Like, In, Between, IsNull, IsBool, IsDistinct)


@node
class Case(Node):
    """``CASE [operand] WHEN .. THEN .. [ELSE default] END``."""

    operand: Optional[Node]
    whens: tuple  # ((cond, value), ...)
    default: Optional[Node]
    pos: int = _pos()


@node
class Cast(Node):
    """``CAST(arg AS to)``; with ``safe`` (``TRY_CAST``) a value that cannot be converted gives NULL."""

    arg: Node
    to: str  # int | float | string | bool
    pos: int = _pos()
    safe: bool = False


@node
class Call(Node):
    """A scalar function or a user-defined function."""

    name: str
    args: tuple
    pos: int = _pos()


@node
class Agg(Node):
    """An aggregate call: ``count(*)`` (``star``), ``sum(DISTINCT x)``, ``percentile(x, 0.9)``."""

    name: str
    args: tuple  # the value argument first, then constant parameters
    distinct: bool = False
    star: bool = False
    pos: int = _pos()


@node
class Analytic(Node):
    """lag/latest/changed_col/had_changed: state per call site and partition key."""

    name: str
    args: tuple
    partition: tuple = ()
    pos: int = _pos()


@node
class WinFn(Node):
    """``window_start()`` or ``window_end()`` (``TUMBLE_END(...)``): a bound of a result row's window."""

    which: str  # "start" | "end"
    pos: int = _pos()


@node
class KeyRef(Node):
    """The ``index``-th GROUP BY key of the group a result row belongs to."""

    index: int
    pos: int = _pos()


@node
class AggRef(Node):
    """The value of the ``index``-th aggregate of the plan for a result row's group."""

    index: int
    pos: int = _pos()


@node
class OutRef(Node):
    """ORDER BY naming an output column."""

    index: int
    pos: int = _pos()


AGGREGATES = {
    "count": (1, 1),
    "sum": (1, 1),
    "avg": (1, 1),
    "min": (1, 1),
    "max": (1, 1),
    "stddev": (1, 1),
    "stddevs": (1, 1),
    "var": (1, 1),
    "vars": (1, 1),
    "first_value": (1, 1),
    "last_value": (1, 1),
    "collect": (1, 1),
    "median": (1, 1),
    "percentile": (2, 2),
}
ANALYTIC = {"lag": (1, 3), "latest": (1, 2), "changed_col": (2, 2), "had_changed": (2, 99)}


@dataclass
class WindowSpec:
    kind: str  # tumbling | hopping | sliding | session | count
    size: int = 0  # ms, or records for count windows
    hop: int = 0  # ms, or records for count windows
    timeout: int = 0  # session: ms
    time_field: Optional[str] = None  # TUMBLE(col, ...) names the event-time field
    pos: int = 0

    def describe(self) -> str:
        if self.kind == "tumbling":
            return f"tumbling size={self.size}ms"
        if self.kind == "hopping":
            gaps = f" (gaps: a record in [j*{self.hop} + {self.size}, (j+1)*{self.hop}) is in no window)" \
                if self.hop > self.size else ""
            return f"hopping size={self.size}ms hop={self.hop}ms{gaps}"
        if self.kind == "sliding":
            return f"sliding size={self.size}ms"
        if self.kind == "session":
            return f"session max_duration={self.size}ms timeout={self.timeout}ms"
        return f"count n={self.size} every={self.hop}"


@dataclass
class Source:
    name: str
    alias: str
    kind: str = "stream"  # stream | table
    join: str = "from"  # from | inner | left
    on: Optional[Node] = None
    pos: int = 0


@dataclass
class SelectItem:
    name: str
    expr: Node
    pos: int = 0
    star: bool = False


@dataclass
class Query:
    """A lowered query and what each pass adds to it."""

    text: str
    select: list
    sources: list
    where: Optional[Node] = None
    group: list = field(default_factory=list)
    window: Optional[WindowSpec] = None
    having: Optional[Node] = None
    order: list = field(default_factory=list)  # (expr, descending)
    limit: Optional[int] = None
    explain: bool = False
    # filled by later passes
    filters: dict = field(default_factory=dict)  # alias -> [predicates on that source alone]
    join_keys: dict = field(default_factory=dict)  # alias -> [(probe expr, table/build expr)]
    join_residual: dict = field(default_factory=dict)  # alias -> [predicates checked at join]
    post_filters: list = field(default_factory=list)  # predicates over several sources
    used_fields: dict = field(default_factory=dict)  # alias -> set of top-level fields or None (all)
    schemas: dict = field(default_factory=dict)  # alias -> set of columns when known
    notes: list = field(default_factory=list)  # what the passes did, for EXPLAIN

    def source(self, alias: str) -> Source:
        for s in self.sources:
            if s.alias == alias:
                return s
        raise KeyError(alias)

    @property
    def streams(self) -> list:
        return [s for s in self.sources if s.kind == "stream"]

    @property
    def tables(self) -> list:
        return [s for s in self.sources if s.kind == "table"]

    def expressions(self) -> Iterator[Node]:
        for item in self.select:
            yield item.expr
        for n in (self.where, self.having):
            if n is not None:
                yield n
        yield from self.group
        for e, _ in self.order:
            yield e
        for s in self.sources:
            if s.on is not None:
                yield s.on


def sql_text(n: Node) -> str:
    """A compact, readable rendering of a node for EXPLAIN."""
    if isinstance(n, Lit):
        return repr(n.value) if not isinstance(n.value, bool) and n.value is not None else str(n.value).upper()
    if isinstance(n, Field):
        return n.source + "".join(f".{p}" if isinstance(p, str) else f"[{p}]" for p in n.path)
    if isinstance(n, Bin):
        return f"({sql_text(n.left)} {n.op} {sql_text(n.right)})"
    if isinstance(n, Arith):
        return "(" + sql_text(n.args[0]) + "".join(f" {op} {sql_text(a)}" for op, a in zip(n.ops, n.args[1:])) + ")"
    if isinstance(n, Logic):
        return "(" + f" {n.op.upper()} ".join(sql_text(a) for a in n.args) + ")"
    if isinstance(n, Unary):
        return f"-{sql_text(n.arg)}" if n.op == "neg" else f"NOT {sql_text(n.arg)}"
    if isinstance(n, (Call, Analytic)):
        return f"{n.name}({', '.join(sql_text(a) for a in n.args)})"
    if isinstance(n, Agg):
        inner = "*" if n.star else ", ".join(sql_text(a) for a in n.args)
        return f"{n.name}({'DISTINCT ' if n.distinct else ''}{inner})"
    if isinstance(n, KeyRef):
        return f"key[{n.index}]"
    if isinstance(n, AggRef):
        return f"agg[{n.index}]"
    if isinstance(n, OutRef):
        return f"out[{n.index}]"
    if isinstance(n, WinFn):
        return f"window_{n.which}()"
    if isinstance(n, IsNull):
        return f"({sql_text(n.arg)} IS {'NOT ' if n.negate else ''}NULL)"
    if isinstance(n, In):
        return f"({sql_text(n.arg)} {'NOT ' if n.negate else ''}IN ({', '.join(sql_text(x) for x in n.items)}))"
    if isinstance(n, Between):
        return f"({sql_text(n.arg)} {'NOT ' if n.negate else ''}BETWEEN {sql_text(n.low)} AND {sql_text(n.high)})"
    if isinstance(n, Like):
        return f"({sql_text(n.arg)} {'NOT ' if n.negate else ''}{n.op.upper()} {sql_text(n.pattern)})"
    if isinstance(n, IsBool):
        return f"({sql_text(n.arg)} IS {'NOT ' if n.negate else ''}{str(n.value).upper()})"
    if isinstance(n, IsDistinct):
        return f"({sql_text(n.left)} IS {'NOT ' if n.negate else ''}DISTINCT FROM {sql_text(n.right)})"
    if isinstance(n, Cast):
        return f"CAST({sql_text(n.arg)} AS {n.to.upper()})"
    if isinstance(n, Case):
        parts = " ".join(f"WHEN {sql_text(c)} THEN {sql_text(v)}" for c, v in n.whens)
        op = f" {sql_text(n.operand)}" if n.operand is not None else ""
        dflt = f" ELSE {sql_text(n.default)}" if n.default is not None else ""
        return f"CASE{op} {parts}{dflt} END"
    if isinstance(n, Star):
        return f"{n.source}.*" if n.source else "*"
    return type(n).__name__
