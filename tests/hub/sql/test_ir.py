"""The query tree's nodes behave as the frozen dataclasses they are declared as (``ir.node`` gives them one
generic set of methods instead of per-class generated ones): the same constructor, equality and hash on
every field but ``pos``, repr, ``replace`` and refusal of assignment."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from edgestream_hub.sql import ir

NODES = [c for _, c in inspect.getmembers(ir, inspect.isclass) if issubclass(c, ir.Node) and c is not ir.Node]


def _reference(cls: type) -> type:
    """The same class made by ``dataclass(frozen=True)`` itself."""
    fs = [(f.name, object, dataclasses.field(default=f.default, compare=f.compare, repr=f.repr))
          if f.default is not dataclasses.MISSING else (f.name, object, dataclasses.field(compare=f.compare,
                                                                                           repr=f.repr))
          for f in dataclasses.fields(cls)]
    return dataclasses.make_dataclass(cls.__name__, fs, frozen=True)


def test_every_node_is_made_by_node():
    assert len(NODES) > 20 and all(c._names == tuple(f.name for f in dataclasses.fields(c)) for c in NODES)


@pytest.mark.parametrize("cls", NODES, ids=lambda c: c.__name__)
def test_a_node_behaves_as_its_frozen_dataclass(cls):
    ref = _reference(cls)
    required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
    args = [ir.Lit(i) for i, _ in enumerate(required)]
    a, b = cls(*args), ref(*args)
    assert repr(a) == repr(b).replace(ref.__qualname__, cls.__qualname__, 1)
    assert a == cls(*args, pos=7) and hash(a) == hash(cls(*args, pos=7)) and a.pos == b.pos == 0
    assert a != object() and (not required or a != cls(*args[:-1], ir.Lit(99)))
    names = cls._names
    kw = {n: getattr(a, n) for n in names}
    assert cls(**kw) == a and [getattr(dataclasses.replace(a, pos=3), n) for n in names] == \
        [getattr(a, n) if n != "pos" else 3 for n in names]
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.pos = 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        del a.pos
    for bad_args, bad_kw in (([*args, *([None] * (len(names) - len(args) + 1))], {}),  # too many
                             (args, {"nope": 1}),  # no such field
                             (args[:1], {names[0]: 1}) if args else ([], {"nope": 1})):  # twice
        with pytest.raises(TypeError):
            cls(*bad_args, **bad_kw)
        with pytest.raises(TypeError):
            ref(*bad_args, **bad_kw)
    if required:
        with pytest.raises(TypeError):
            cls(*args[:-1])
