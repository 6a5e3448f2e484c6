"""Fuzzing the decoders: random bytes and mutated valid messages only ever raise WireError."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from edgestream_shared.decoder import decode
from edgestream_shared.encoder import Encoder
from edgestream_shared.errors import WireError
from edgestream_shared.frame import FrameReader, decode_frame, encode_frame

HOST_ONLY = True  # hypothesis is CPython-only

names = st.from_regex(r"[A-Za-z0-9_.-]{1,12}", fullmatch=True)
numbers = st.one_of(st.none(), st.integers(-(2**40), 2**40), st.floats(allow_nan=False, allow_infinity=False))


@st.composite
def result_messages(draw):
    e = Encoder(draw(names), draw(st.integers(0, 2**31)), size=8192)
    e.begin(b"results")
    for seq in range(draw(st.integers(1, 5))):
        aggs = draw(st.dictionaries(names, numbers, min_size=1, max_size=4))
        start = draw(st.integers(0, 2**40))
        e.add_result(seq, draw(names), draw(names), start, start + draw(st.integers(0, 10**6)),
                     [k.encode() for k in aggs], list(aggs.values()))
    return bytes(e.finish()), aggs


def decode_or_wire_error(data):
    try:
        return decode(data)
    except WireError as e:
        assert e.reason
        return None


@given(st.binary(max_size=300))
def test_random_bytes_raise_only_wire_error(data):
    decode_or_wire_error(data)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
                    max_leaves=20))
def test_random_json_raises_only_wire_error(value):
    decode_or_wire_error(json.dumps(value))


@given(result_messages())
def test_encoded_results_round_trip(msg):
    data, last_aggs = msg
    m = decode(data)
    got = m["items"][-1]["aggs"]
    assert list(got) == list(last_aggs)
    for k, v in last_aggs.items():
        assert got[k] == v or (isinstance(v, float) and abs(got[k] - v) <= 1e-9 * max(1, abs(v)))


@settings(max_examples=300)
@given(result_messages(), st.data())
def test_mutated_messages_raise_only_wire_error(msg, data):
    raw = bytearray(msg[0])
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        i = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if op == "flip" and raw:
            raw[i] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del raw[i:]
        elif op == "insert":
            raw[i:i] = data.draw(st.binary(min_size=1, max_size=4))
        elif raw:
            del raw[i]
    decode_or_wire_error(bytes(raw))


@given(st.lists(st.one_of(st.binary(max_size=40), st.just(b"\n"), st.just(b"$")), max_size=30),
       st.lists(st.binary(min_size=1, max_size=60).filter(lambda b: b"\n" not in b), min_size=1, max_size=5))
def test_frame_reader_keeps_every_good_frame_around_garbage(noise, payloads):
    reader = FrameReader()
    stream = b""
    for i, p in enumerate(payloads):
        stream += b"".join(noise[i::len(payloads)]) + b"\n" + encode_frame(p)
    reader.feed(stream)
    got = []
    for _ in range(10_000):
        try:
            p = reader.next()
        except WireError:
            continue
        if p is None:
            break
        got.append(p)
    assert got == payloads


@given(st.binary(max_size=200))
def test_decode_frame_raises_only_wire_error(line):
    try:
        decode_frame(line)
    except WireError:
        pass
