"""Bad input at the link's boundaries never escapes as anything but a refusal.

Property-based (hypothesis, CPython): random and mutated config payloads,
time messages, transport sections and raw MQTT packets from the network.
Also the non-blocking SNTP exchange against a real UDP server on loopback.
"""

import json
import socket
import struct
import threading
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgestream_agent.clock import Clock
from edgestream_agent.config import ConfigError
from edgestream_agent.config import validate_transport as validate_link
from edgestream_agent.config import validate as full_validate
from edgestream_agent.mqtt import UP, MQTTClient
from edgestream_agent.link import Link
from edgestream_agent.wire_in import read, time_reference
from edgestream_shared.decoder import decode, decode_config
from edgestream_shared.errors import WireError
from edgestream_shared.encoder import encode_config

HOST_ONLY = True

GOOD = encode_config("d1", 2, {"device": "d1", "sensors": [{"name": "t", "period_ms": 100,
                                                              "windows": [{"name": "w", "size_ms": 1000}]}]})
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=20)


def handle(payload):
    # through the link, as a message from the hub: always exactly one ack, a
    # valid wire message, carrying the message's version whenever the shared
    # decoder can read one
    lk = Link({"device": "d1", "version": 1, "transport": None}, 1, validate=full_validate)
    lk._rx(payload, "config")
    assert len(lk._ctrl) == 1
    m = decode(lk._ctrl[0][1])
    assert m["kind"] == "ack" and (m["ok"] or m["error"])
    try:
        version = decode_config(payload)["version"]
    except WireError:
        version = None
    if version is not None:
        assert m["version"] == version, (m, version)
    return m["ok"]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_are_refused(data):
    assert handle(data) is False


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(GOOD) - 1), st.binary(min_size=1, max_size=4))
def test_mutated_configs_are_applied_or_refused_never_crash(pos, patch):
    handle(GOOD[:pos] + patch + GOOD[pos + len(patch):])


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_json_as_config_is_applied_or_refused(value):
    payload = json.dumps({"v": 1, "dev": "d1", "kind": "config", "version": 5, "config": value}).encode()
    handle(payload)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_transport_section_validates_or_names_the_path(value):
    try:
        validate_link(value)
    except ConfigError as e:
        assert str(e).startswith("transport"), str(e)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=80) | json_values.map(lambda v: json.dumps(v).encode()))
def test_time_messages_apply_or_raise_value_error(data):
    c = Clock(now=lambda: 0)
    try:
        time_reference(c, read(data, "time"), "d1")
    except ValueError:
        assert not c.synced()


def test_a_publish_whose_topic_overruns_the_packet_drops_the_link():
    c = MQTTClient("x", "127.0.0.1", 1, rx_size=256)
    c._sock = _NullSock()
    c._write = c._sock.send
    c.state = UP
    data = bytes([0x32, 4, 0xFF, 0xFF, 0, 1])
    c._rx[0:6] = data
    c._rx_n = 6
    try:
        c._parse(0)
    except OSError as e:
        assert "malformed PUBLISH" in str(e)
    else:
        raise AssertionError("accepted a malformed PUBLISH")


class _NullSock:
    """Stands in for the socket in a parser-only test: sends vanish."""

    def send(self, b):
        return len(b)

    def close(self):
        pass


@settings(max_examples=500, deadline=None)
@given(st.binary(min_size=1, max_size=600))
def test_any_bytes_from_the_broker_are_parsed_or_drop_the_link(data):
    # The receive path of the client: bytes land in its buffer and are
    # parsed; whatever they are, the outcome is a handled packet or an
    # OSError that poll() turns into a reconnect - never another exception.
    c = MQTTClient("x", "127.0.0.1", 1, rx_size=256)
    got = []
    c.set_callback(lambda t, m: got.append((t, m)))
    c._sock = _NullSock()
    c._write = c._sock.send
    c.state = UP
    try:
        n = min(len(data), 256)
        c._rx[0:n] = data[:n]
        c._rx_n = n
        c._parse(0)
    except OSError:
        pass


def test_sntp_exchange_with_a_real_udp_server():
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))
    srv.settimeout(3)
    epoch = 1_700_000_000.25

    def serve():
        try:
            req, addr = srv.recvfrom(48)
            assert req[0] & 7 == 3  # client mode
            secs = int(epoch) + 2208988800
            frac = int((epoch % 1) * 2**32)
            reply = bytes([0x1C]) + bytes(39) + struct.pack("!II", secs, frac)
            srv.sendto(reply, addr)
        except OSError:
            pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    c = Clock({"host": "127.0.0.1", "port": srv.getsockname()[1], "every_ms": 60000, "timeout_ms": 2000},
              now=lambda: 1000)
    deadline = time.monotonic() + 5
    while not c.synced() and time.monotonic() < deadline:
        c.poll()  # never blocks: the first call sends, later ones look for the reply
        time.sleep(0.005)
    t.join(2)
    srv.close()
    assert c.synced() and c.source == 1 and c.ntp_failures == 0
    # epoch 1_700_000_000_250 ms at device time 1000, within the loopback round trip
    assert abs(c.epoch(1000) - 1_700_000_000_250) < 50


def test_sntp_timeout_is_counted_and_retried_later():
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))  # bound, never answers
    c = Clock({"host": "127.0.0.1", "port": srv.getsockname()[1], "every_ms": 60000, "timeout_ms": 50})
    deadline = time.monotonic() + 3
    while c.ntp_failures == 0 and time.monotonic() < deadline:
        c.poll()
        time.sleep(0.005)
    srv.close()
    assert c.ntp_failures == 1 and not c.synced()
