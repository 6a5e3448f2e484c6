"""Strict JSON at the hub's edges: what ``jsonio.loads`` refuses, and that every reader shares it."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from edgestream_hub import jsonio

# with each JSON engine (tests/conftest.py): the results must not depend on it
pytestmark = pytest.mark.usefixtures("json_engine")


@pytest.mark.parametrize("text", [r'{"s": "\ud800"}', r'{"s": "a\uDFFFb"}', r'["ok", {"\udc00": 1}]',
                                  r'{"s": "\ude00\ud83d"}', r'"\ud83d"'])
def test_a_lone_surrogate_escape_is_refused(text):
    with pytest.raises(ValueError, match="unpaired surrogate"):
        jsonio.loads(text)
    with pytest.raises(ValueError, match="unpaired surrogate"):
        jsonio.loads(text.encode(), check_range=False)


@pytest.mark.parametrize("text,value", [(r'{"s": "\ud83d\ude00"}', {"s": "\U0001f600"}),
                                        (r'{"s": "\\ud800"}', {"s": "\\ud800"}),  # an escaped backslash
                                        (r'{"s": "\u00e9"}', {"s": "é"})])
def test_pairs_and_other_escapes_are_kept(text, value):
    assert jsonio.loads(text) == value


def _as_json_reads(s: str) -> str:
    """``s`` as JSON reads it back from ``json.dumps(s)``: a high surrogate followed by a low one is one character."""
    return s.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


def _strings(v):
    if isinstance(v, str):
        yield v
    elif isinstance(v, list):
        for x in v:
            yield from _strings(x)
    elif isinstance(v, dict):
        for k, x in v.items():
            yield k
            yield from _strings(x)


_text = st.text(st.characters(min_codepoint=0xD7FE, max_codepoint=0xE001) | st.sampled_from("a\\u\""), max_size=4)


@settings(max_examples=400, deadline=None)
@given(st.recursive(_text | st.integers(), lambda x: st.lists(x, max_size=3)
                    | st.dictionaries(_text, x, max_size=3), max_leaves=8), st.booleans())
def test_loads_refuses_exactly_the_values_that_hold_a_lone_surrogate(value, ascii_only):
    text = json.dumps(value, ensure_ascii=ascii_only)
    lone = any(0xD800 <= ord(c) <= 0xDFFF for s in _strings(value) for c in _as_json_reads(s))
    if not ascii_only and any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        return  # a raw surrogate in the text: not UTF-8-encodable, so never what a payload holds
    if lone:
        with pytest.raises(ValueError, match="unpaired surrogate"):
            jsonio.loads(text)
    else:
        assert json.dumps(jsonio.loads(text)) == json.dumps(json.loads(text))


def test_sql_inputs_refuse_a_lone_surrogate_like_every_source(tmp_path):
    from edgestream_hub.sql.tables import iter_records

    f = tmp_path / "in.jsonl"
    f.write_text('{"k": "a", "v": 1}\n{"k": "\\ud800", "v": 2}\n{"k": "b", "v": 3}\n')
    bad: list[str] = []
    assert [r["v"] for r in iter_records(f, lambda raw, why: bad.append(why))] == [1, 3]
    (why,) = bad
    assert why.startswith(f"{f}:2: bad JSON: ") and "unpaired surrogate" in why
