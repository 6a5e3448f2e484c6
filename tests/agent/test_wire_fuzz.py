"""wire_in.read against the shared decoder, property-based (hypothesis, CPython).

For any payload, the agent's reader and ``decode_config`` / ``decode``
accept the same config and time messages, and a refusal from either is a
refusal from both; where both refuse for a field of the envelope, the
reasons name the same field.
"""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgestream_agent.wire_in import read
from edgestream_shared.decoder import decode, decode_config
from edgestream_shared.encoder import encode_config, encode_time
from edgestream_shared.errors import WireError

HOST_ONLY = True

GOOD = [encode_config("d1", 2, {"sensors": [{"name": "t"}]}), encode_time(1700000000000, dev="d1")]
scalars = st.none() | st.booleans() | st.integers(-3, 2**45) | st.floats() | st.text(max_size=6)
envelopes = st.fixed_dictionaries(
    {},
    optional={"v": st.sampled_from([1, 2, True, 1.0, "1"]) | scalars,
              "kind": st.sampled_from(["config", "time", "status", "ack", "nope"]) | scalars,
              "dev": st.sampled_from(["d1", "", "a/b", "x" * 65]) | scalars,
              "version": scalars, "config": st.dictionaries(st.text(max_size=3), scalars, max_size=2) | scalars,
              "epoch_ms": scalars, "boot": scalars})


def outcome(fn, payload):
    try:
        return fn(payload)
    except (ValueError, WireError) as e:
        return "refused: " + str(e).split(":")[0]


def same(payload):
    mine = outcome(lambda p: read(p, "config"), payload)
    theirs = outcome(decode_config, payload)
    assert (isinstance(mine, dict)) == (isinstance(theirs, dict)), (payload, mine, theirs)
    if isinstance(mine, dict):
        assert mine == theirs
    mine_any = outcome(read, payload)
    theirs_any = outcome(decode, payload)
    if isinstance(mine_any, dict) or (isinstance(theirs_any, dict) and theirs_any["kind"] in ("config", "time")):
        assert mine_any == theirs_any, (payload, mine_any, theirs_any)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(envelopes)
def test_envelopes_are_accepted_and_refused_like_the_shared_decoder(m):
    same(json.dumps(m).encode())


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(GOOD), st.integers(0, 80), st.binary(min_size=1, max_size=3))
def test_mutated_messages_agree_with_the_shared_decoder(good, pos, patch):
    same(good[:pos] + patch + good[pos + len(patch):])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_are_refused_by_both(data):
    same(data)
