# Serial framing: round trip, checksum, limits and resynchronisation.
from devtest import raises
from edgestream_shared.errors import WireError
from edgestream_shared.frame import FrameReader, decode_frame, encode_frame

P1 = b'{"v":1,"dev":"d","boot":1,"kind":"status","state":"online"}'
P2 = b'{"v":1,"dev":"d","boot":1,"kind":"status","state":"offline"}'


def drain(reader):
    # -> (payloads, reasons) from everything fed so far
    got, errs = [], []
    for _ in range(1000):
        try:
            p = reader.next()
        except WireError as e:
            errs.append(e.reason)
            continue
        if p is None:
            break
        got.append(p)
    return got, errs


def test_frame_layout_and_round_trip():
    f = encode_frame(b"hello")
    assert f == b"$hello*3610a686\n"
    assert decode_frame(f[:-1]) == b"hello"
    assert decode_frame(f[:-1] + b"\r") == b"hello"


def test_encode_into_a_preallocated_buffer():
    out = bytearray(128)
    n = encode_frame(P1, out)
    assert bytes(out[:n]) == encode_frame(P1)


def test_bad_lines_say_what_is_wrong():
    f = encode_frame(P1)[:-1]
    assert "checksum" in raises(WireError, decode_frame, f.replace(b"online", b"onlinE")).reason
    assert "'$'" in raises(WireError, decode_frame, b"garbage").reason
    assert "trailer" in raises(WireError, decode_frame, f[:20]).reason
    assert "limit" in raises(WireError, decode_frame, b"$" + b"x" * 3000).reason
    raises(WireError, encode_frame, b"x" * 3000)


def test_reader_splits_a_stream_fed_in_pieces():
    r = FrameReader()
    data = encode_frame(P1) + encode_frame(P2)
    for i in range(len(data)):
        r.feed(data[i:i + 1])
    assert drain(r) == ([P1, P2], [])


def test_garbage_between_frames_costs_only_the_garbage():
    r = FrameReader()
    r.feed(encode_frame(P1) + b"\x00\xffnoise\n" + encode_frame(P2))
    got, errs = drain(r)
    assert got == [P1, P2] and len(errs) == 1 and r.errors == 1


def test_a_cut_frame_followed_by_a_good_one_resyncs_on_the_same_line():
    r = FrameReader()
    r.feed(encode_frame(P1)[:25] + encode_frame(P2))
    assert drain(r) == ([P2], [])


def test_a_cut_frame_at_the_end_of_a_line_is_refused():
    r = FrameReader()
    r.feed(encode_frame(P1)[:25] + b"\n" + encode_frame(P2))
    got, errs = drain(r)
    assert got == [P2] and len(errs) == 1


def test_an_over_long_line_is_skipped_to_the_next_newline():
    r = FrameReader(max_frame=100)
    r.feed(b"$" + b"x" * 150)
    got, errs = drain(r)
    assert got == [] and len(errs) == 1
    r.feed(b"y" * 50 + b"\n" + encode_frame(b"ok"))
    assert drain(r) == ([b"ok"], [])


def test_blank_lines_are_ignored():
    r = FrameReader()
    r.feed(b"\n\r\n" + encode_frame(b"ok") + b"\n")
    assert drain(r) == ([b"ok"], [])


def test_a_refused_line_comes_with_its_bytes():
    # the hub keeps the start of a refused line in its dead letter
    r = FrameReader(max_frame=100)
    r.feed(b"\x00\xffnoise\n")
    e = raises(WireError, r.next)
    assert bytes(e.raw) == b"\x00\xffnoise"
    r.feed(b"$" + b"x" * 150)
    e = raises(WireError, r.next)
    assert bytes(e.raw) == b"$" + b"x" * 150
