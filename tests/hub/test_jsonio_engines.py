"""jsonio's two engines (the stdlib reference and orjson) read and write exactly the same.

Each property compares the two engines on the same input: values read (types included: an integer is not
a float) or the refusal's message, and text written with its count of non-finite numbers.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import math
import random
import struct
import uuid
from collections import OrderedDict, namedtuple
from typing import Any

import orjson  # noqa: F401  # the test extra installs it: a missing one fails, it is not skipped
import pytest
from hypothesis import given, settings, strategies as st

from edgestream_hub import jsonio


@pytest.fixture(autouse=True)
def _restore_engine():
    before = jsonio.backend()
    yield
    jsonio.use(before)


def _tagged(v: Any) -> list[Any]:
    """``v`` as a flat list of typed tokens (1 and 1.0 and True differ, -0.0 and 0.0 differ); iterative, as
    ``v`` may be deep."""
    out: list[Any] = []
    stack = [v]
    while stack:
        x = stack.pop()
        if isinstance(x, dict):
            out.append(("dict", list(x)))
            stack.extend(reversed(list(x.values())))
        elif isinstance(x, list):
            out.append(("list", len(x)))
            stack.extend(reversed(x))
        elif isinstance(x, float):
            out.append(("float", x.hex()))
        else:
            out.append((type(x).__name__, x))
    return out


def _read(engine: str, fn: Any, *args: Any) -> Any:
    jsonio.use(engine)
    try:
        return ("ok", _tagged(fn(*args)))
    except ValueError as e:
        return ("refused", str(e))


def _same_reading(data: Any, check_range: bool = True) -> Any:
    std = _read("std", jsonio.loads, data, check_range)
    assert _read("orjson", jsonio.loads, data, check_range) == std, data
    return std


def _written(engine: str, v: Any) -> Any:
    jsonio.use(engine)
    try:
        return ("ok", jsonio.dumps(v))
    except (TypeError, ValueError, RecursionError) as e:
        return ("refused", type(e).__name__, str(e))


def _same_writing(v: Any) -> Any:
    std = _written("std", v)
    assert _written("orjson", v) == std, v
    return std


# -- reading --

READ_CASES = [
    b'{"a": 1, "b": [1.5, -0.0, 0, -0, 1E5, 1e-400, true, null, "x"]}',
    b"NaN", b"[Infinity]", b"-Infinity", b"[1e999]", b"-1e999", b"1.7976931348623157e309", b"[1e308]",
    b"18446744073709551615", b"18446744073709551616", b"-9223372036854775808", b"-9223372036854775809",
    b"9223372036854775808", b"1234567890123456789012345678901234567890", b"0.1234567890123456789",
    b"1" * 5000,  # past int's digit limit
    b'"\\ud800"', b'"\\ud83d\\ude00"', b'"\\udc00\\ud800"', b'{"\\udfff": 1}', b'"\\\\ud800"',
    b'\xef\xbb\xbf{"a": 1}', b"\xef\xbb\xbf", b'"\xff"', b'"\xed\xa0\x80"', b"\xc3", b'"\xc3\xa9"',
    b'{"a": 1, "a": 2}', b"", b" ", b"[1,]", b"01", b"1.", b"[1] x", b'"\x01"', b'"\\u0000"', b" \t\r\n[1] \n",
    b"\x0c[1]", b"[1\x00]", b'{"a" 1}', b"{'a': 1}", b"tru", b"nul", b"[-]", b"1e", b"[.5]", b"+1",
]


@pytest.mark.parametrize("data", READ_CASES)
def test_a_text_reads_the_same_with_both_engines(data):
    for check_range in (True, False):
        _same_reading(data, check_range)
        _same_reading(bytearray(data), check_range)
        _same_reading(memoryview(data), check_range)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        _same_reading(text, check_range)


@pytest.mark.parametrize("depth", [1, 10, 500, 899, 900, 950, 990, 1000, 1023, 1024, 1025, 1100, 5000])
def test_deep_nesting_reads_the_same(depth):
    for open_, close in ((b"[", b"]"), (b'{"a":', b"}")):
        _same_reading(open_ * depth + b"1" + close * depth)
        _same_reading(memoryview(open_ * depth + b"1" + close * depth))
    line = b"[" * depth + b"]" * depth
    for engine in ("std", "orjson"):
        jsonio.use(engine)
        assert [_outcome(v) for v in jsonio.loads_lines([line, line])] == [_outcome(_maybe(line))] * 2


def _maybe(data: bytes) -> Any:
    try:
        return jsonio.loads(data)
    except ValueError as e:
        return e


def _outcome(v: Any) -> Any:
    return ("refused", str(v)) if isinstance(v, ValueError) else ("ok", _tagged(v))


def test_a_string_with_a_lone_surrogate_reads_the_same():
    for text in ('"\ud800"', '{"\udc00": 1}', '"a\ud83d"'):
        _same_reading(text)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda x: st.lists(x, max_size=4) | st.dictionaries(st.text(max_size=4), x, max_size=4), max_leaves=12)


@settings(max_examples=400)
@given(_json_values, st.booleans())
def test_any_json_value_reads_the_same(value, ascii_only):
    text = json.dumps(value, ensure_ascii=ascii_only)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:  # a raw lone surrogate: the str form only
        _same_reading(text)
        return
    assert _same_reading(data)[0] == "ok" or "surrogate" in _same_reading(data)[1]


@settings(max_examples=400)
@given(_json_values, st.integers(min_value=0, max_value=200), st.binary(max_size=3))
def test_a_damaged_text_reads_or_is_refused_the_same(value, at, patch):
    data = json.dumps(value).encode("utf-8", "surrogatepass")
    at = min(at, len(data))
    _same_reading(data[:at] + patch + data[at + len(patch):])


def test_loads_lines_reads_each_line_as_loads_does():
    lines = [c for c in READ_CASES if b"\n" not in c] + [b'{"ok": 1}', b"[" * 950 + b"]" * 950]
    for engine in ("std", "orjson"):
        jsonio.use(engine)
        got = jsonio.loads_lines(lines)
        jsonio.use("std")
        assert [_outcome(g) for g in got] == [_outcome(_maybe(x)) for x in lines]


# -- writing --

class Color(enum.Enum):
    RED = 1


class Level(enum.IntEnum):
    LOW = 1


class Name(str, enum.Enum):
    A = "a"


class MyInt(int):
    pass


class MyStr(str):
    pass


class MyFloat(float):
    pass


class MyDict(dict):
    pass


@dataclasses.dataclass
class Point:
    x: int


Pair = namedtuple("Pair", "a b")

WRITE_CASES: list[Any] = [
    {"device": "d", "seq": 1, "avg": 21.5, "ok": True, "none": None, "s": "é漢😀\x00\x1f\x7f\u2028\"\\/"},
    [1e16, 1e15, 1e-4, 1e-5, 9.99e-05, 1e-7, 2.5e-9, 5e-324, -1.5e-5, 1.7976931348623157e308, -0.0, 0.0],
    {"nan": math.nan, "inf": math.inf, "ninf": -math.inf, "deep": [[{"x": math.nan}]], "null": None},
    {"s": "0.00001 and 1e-05 as text", "t": "greenhouse-3", "u": "de-1"},
    2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**400,
    {1: "int key"}, {None: 1}, {1.5: 2}, {True: 1}, {MyStr("k"): 1},
    uuid.UUID(int=7), Color.RED, Level.LOW, Name.A, MyInt(3), MyStr("x"), MyFloat(1.5), MyDict(a=1),
    OrderedDict(a=1), Point(1), datetime.datetime(2024, 1, 2, 3, 4, 5), datetime.date(2024, 1, 2),
    Pair(1, 2), (1, 2), {1, 2}, frozenset(), b"bytes\xff", bytearray(b"ba"), object(),
    "\ud800", {"\udc00": 1}, ["a\ud83dz"], [[[[[[[[[[1]]]]]]]]]], [1] * 3,
]


def _nest(depth: int) -> Any:
    v: Any = 1
    for _ in range(depth):
        v = [v]
    return v


@pytest.mark.parametrize("value", WRITE_CASES + [_nest(d) for d in (100, 254, 255, 256, 600)], ids=repr)
def test_a_value_is_written_the_same_with_both_engines(value):
    _same_writing(value)
    _same_writing({"v": value})
    _same_writing([value, {"k": value}])


def test_every_float_is_written_as_python_writes_it():
    rnd = random.Random(5)
    values = [struct.unpack("d", struct.pack("Q", rnd.getrandbits(64)))[0] for _ in range(20000)]
    values += [rnd.uniform(-1e-3, 1e-3) for _ in range(5000)] + [float(f"1e{e}") for e in range(-330, 310)]
    values += [float(f"{m}e{e}") for m in (1, 1.5, 9.999) for e in range(-12, 20)]
    for v in values:
        _same_writing(v)
    _same_writing(values)


@settings(max_examples=300)
@given(st.recursive(st.none() | st.booleans() | st.integers(min_value=-(2**66), max_value=2**66) | st.floats()
                    | st.text(max_size=6),
                    lambda x: st.lists(x, max_size=4) | st.tuples(x, x)
                    | st.dictionaries(st.text(max_size=4), x, max_size=4), max_leaves=12))
def test_any_value_is_written_the_same(value):
    _same_writing(value)


# -- JSON lines --

def _lines(engine: str, records: list[Any]) -> Any:
    jsonio.use(engine)
    return jsonio.dump_lines(records)


def _reference_lines(records: list[Any]) -> tuple[bytes, int]:
    jsonio.use("std")
    parts = [jsonio.dumps(r) for r in records]
    return "".join(t + "\n" for t, _ in parts).encode("utf-8"), sum(n for _, n in parts)


@pytest.mark.parametrize("records", [
    [{"a": 1}], [{"a": 1}, {"b": 2.5}, {}], [{}, {}, {}],
    [{"a": [{"b": 1}, {"c": 2}]}, {"d": 1}],  # "},{" inside a record
    [{"s": "x},{y"}, {"t": 1}],  # and inside a string
    [{"v": math.nan}, {"v": [math.inf]}, {"v": None}],
    [{"v": 1e-5}, {"v": 1}], [{"v": 2**64}], [{1: 2}], [{"v": uuid.UUID(int=1)}], [{"v": Color.RED}],
    [{"v": "\ud800"}], [[1]], [1, 2], ["x"], [{"v": _nest(300)}],
])
def test_json_lines_are_the_reference_lines_or_none(records):
    assert _lines("std", records) is None
    got = _lines("orjson", records)
    if got is not None:
        assert got == _reference_lines(records)


_RECORD_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**66), max_value=2**66) | st.floats()
    | st.text(max_size=6) | st.sampled_from([Color.RED, uuid.UUID(int=7), datetime.date(2024, 1, 2), b"x"]),
    lambda x: st.lists(x, max_size=3) | st.tuples(x, x) | st.dictionaries(st.text(max_size=4), x, max_size=3),
    max_leaves=8)


@settings(max_examples=300)
@given(st.lists(st.dictionaries(st.text(max_size=4), _RECORD_VALUES, max_size=5), min_size=1, max_size=6))
def test_any_records_are_the_reference_lines_or_none(records):
    got = _lines("orjson", records)
    if got is not None:
        assert got == _reference_lines(records)


def test_plain_records_take_the_fast_path():
    records = [{"device": f"dev-{i}", "seq": i, "avg": i / 7, "n": None, "ok": i % 2 == 0} for i in range(500)]
    got = _lines("orjson", records)
    assert got is not None and got == _reference_lines(records)
    assert _lines("orjson", [{"x": math.inf}, *records]) == _reference_lines([{"x": math.inf}, *records])


def test_the_engine_follows_the_environment(monkeypatch):
    monkeypatch.setenv("EDGESTREAM_JSON", "std")
    jsonio._chosen = False
    assert jsonio.backend() == "std"
    monkeypatch.setenv("EDGESTREAM_JSON", "orjson")
    jsonio._chosen = False
    assert jsonio.backend() == "orjson"
    with pytest.raises(ValueError, match="EDGESTREAM_JSON: expected std, orjson or auto"):
        jsonio.use("fast")
