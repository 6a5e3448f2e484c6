"""HTTP source (ingest endpoint) and sink (webhook) against real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hubtest import wait_for

from edgestream_shared.encoder import Encoder


def post(port, body: bytes, token=None, path="/ingest"):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        with e:
            return e.code, json.loads(e.read())


def test_ingest_endpoint_with_token_and_bad_bodies(hub):
    e = hub.engine("""
hub: {dead_letter: dlq}
sources: {web: {http: {port: 0, token: t0ken, max_body: 1KB}}}
sinks: {out: {memory: {}}, dlq: {memory: {}}}
pipelines: {p: {from: web, to: out}}
""")
    port = e.sources["web"].source.port
    assert post(port, b'{"a":1}') == (401, {"error": "missing or wrong bearer token"})
    assert post(port, b'{"a":1}', "wrong")[0] == 401
    assert post(port, b'{"a":1}', "t0ken") == (200, {"accepted": 1, "rejected": 0})
    assert post(port, b'[{"a":2}, 3, {"a":4}]', "t0ken") == (200, {"accepted": 2, "rejected": 1})
    code, body = post(port, b'{"a":', "t0ken")
    assert code == 400 and body["error"].startswith("not JSON (Expecting")
    assert post(port, b"x" * 2000, "t0ken")[0] == 413
    assert post(port, b"{}", "t0ken", path="/other")[0] == 404
    assert wait_for(lambda: len(hub.out.get("out", [])) == 3 and len(hub.out.get("dlq", [])) == 2)
    assert e.stop()
    assert hub.out["out"] == [{"a": 1}, {"a": 2}, {"a": 4}]
    assert hub.out["dlq"][1]["record"] == {"payload": '{"a":', "bytes": 5, "sha256": "ffb38b22ee3e0ca9"}
    assert e.metrics.value("edgestream_source_decode_errors_total", component="web") == 2


def test_ingest_endpoint_decodes_wire_messages(hub):
    e = hub.engine("""
sources: {web: {http: {port: 0, format: wire}}}
sinks: {out: {memory: {}}}
pipelines: {p: {from: web, to: out}}
""")
    enc = Encoder("d9", 3)
    enc.begin(b"readings")
    enc.add_reading(0, b"temp", 1000, 21.5)
    assert post(e.sources["web"].source.port, bytes(enc.finish())) == (200, {"accepted": 1, "rejected": 0})
    assert wait_for(lambda: len(hub.out.get("out", [])) == 1)
    assert e.stop()
    assert hub.out["out"] == [{"device": "d9", "boot": 3, "seq": 0, "sensor": "temp", "t": 1000, "value": 21.5,
                               "ts": 1000}]


class Hook:
    """A webhook receiver that answers with scripted status codes, then 200."""

    def __init__(self, codes: list[int]) -> None:
        self.codes = codes
        self.batches: list[list] = []
        self.auth: list[str | None] = []
        hook = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.auth.append(self.headers.get("Authorization"))
                code = hook.codes.pop(0) if hook.codes else 200
                if code == 200:
                    hook.batches.append(json.loads(body))
                data = b'{"ok":true}' if code == 200 else b"nope"
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_webhook_batches_retries_5xx_and_dead_letters_4xx(hub):
    hook = Hook([503, 500])
    try:
        hub.scripts["s"] = [{"i": i} for i in range(10)]
        e = hub.engine(f"""
hub: {{dead_letter: dlq}}
sources: {{s: {{script: {{name: s}}}}}}
sinks:
  hook: {{http: {{url: "{hook.url}", token: abc, timeout: 2s}}, batch: {{size: 4, linger: 20ms}},
          retry: {{initial: 10ms, max: 50ms}}}}
  dlq: {{memory: {{}}}}
pipelines: {{p: {{from: s, to: hook}}}}
""")
        assert wait_for(lambda: sum(map(len, hook.batches)) == 10)
        assert [r["i"] for b in hook.batches for r in b] == list(range(10))
        assert all(len(b) <= 4 for b in hook.batches) and hook.auth[0] == "Bearer abc"
        assert e.metrics.value("edgestream_sink_errors_total", component="hook") == 2
        hook.codes[:] = [400]
        hub.scripts["s"].append({"i": 99})
        assert wait_for(lambda: len(hub.out.get("dlq", [])) == 1)
        assert e.stop()
        assert "refused the batch: HTTP 400: nope" in hub.out["dlq"][0]["reason"]
    finally:
        hook.close()


def test_webhook_connection_refused_is_retried_until_the_server_is_back(hub):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    hub.scripts["s"] = [{"i": 1}]
    e = hub.engine(f"""
sources: {{s: {{script: {{name: s}}}}}}
sinks: {{hook: {{http: {{url: "http://127.0.0.1:{port}/hook", timeout: 1s}}, retry: {{initial: 20ms, max: 100ms}}}}}}
pipelines: {{p: {{from: s, to: hook}}}}
""")
    assert wait_for(lambda: e.metrics.value("edgestream_sink_errors_total", component="hook") >= 2)
    hook = Hook([])
    hook.server.server_close()
    server = ThreadingHTTPServer(("127.0.0.1", port), hook.server.RequestHandlerClass)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        assert wait_for(lambda: hook.batches == [[{"i": 1}]])
        assert e.stop()
    finally:
        server.shutdown()
        server.server_close()


# -- no body stops the endpoint; every refusal is counted --

def refusals(e, code):
    return e.metrics.value("edgestream_source_http_refusals_total", component="web", code=str(code))


def test_hostile_bodies_get_400_and_the_endpoint_goes_on(hub):
    from hubtest import HOSTILE_JSON

    e = hub.engine("""
hub: {dead_letter: dlq}
sources: {web: {http: {port: 0}}}
sinks: {out: {memory: {}}, dlq: {memory: {}}}
pipelines: {p: {from: web, to: out}}
""")
    port = e.sources["web"].source.port
    for code in ("400", "401", "408", "413", "503"):  # they exist from the start
        assert e.metrics.registry.get_sample_value("edgestream_source_http_refusals_total",
                                                   {"component": "web", "code": code}) == 0
    answers = []
    for i, bad in enumerate(HOSTILE_JSON.values()):
        assert post(port, json.dumps({"i": i}).encode()) == (200, {"accepted": 1, "rejected": 0})
        answers.append(post(port, bad))
    assert post(port, b'{"i": 100}') == (200, {"accepted": 1, "rejected": 0})
    assert [code for code, _ in answers] == [400] * len(HOSTILE_JSON)
    errors = dict(zip(HOSTILE_JSON, (body["error"] for _, body in answers)))
    assert "nested too deeply" in errors["deep arrays"] and "NaN is not a JSON number" in errors["NaN"]
    assert "1e999 is out of range" in errors["float out of range"]
    assert wait_for(lambda: len(hub.out.get("out", [])) == len(HOSTILE_JSON) + 1)
    assert wait_for(lambda: len(hub.out.get("dlq", [])) == len(HOSTILE_JSON))
    assert e.stop()
    assert [r["i"] for r in hub.out["out"]] == [*range(len(HOSTILE_JSON)), 100]
    assert e.metrics.value("edgestream_source_decode_errors_total", component="web") == len(HOSTILE_JSON)
    assert refusals(e, 400) == len(HOSTILE_JSON)


def test_refusals_are_counted_by_code(hub):
    e = hub.engine("""
sources: {web: {http: {port: 0, token: t0ken, max_body: 100B}}}
sinks: {out: {memory: {}}}
pipelines: {p: {from: web, to: out}}
""")
    port = e.sources["web"].source.port
    assert post(port, b"{}")[0] == 401
    assert post(port, b"{}", "bad")[0] == 401
    assert post(port, b"x" * 200, "t0ken")[0] == 413
    assert post(port, b'{"a": NaN}', "t0ken")[0] == 400
    assert post(port, b"{}", "t0ken", path="/nope")[0] == 404
    assert e.stop()
    assert (refusals(e, 401), refusals(e, 413), refusals(e, 400), refusals(e, 404), refusals(e, 503)) == (2, 1, 1, 1, 0)


def test_the_wire_format_exports_the_sequence_counters(hub):
    from hubtest import readings

    e = hub.engine("""
sources: {web: {http: {port: 0, format: wire}}}
sinks: {out: {memory: {}}}
pipelines: {p: {from: web, to: out}}
""")
    port = e.sources["web"].source.port
    for seqs in ([0, 1], [4], [4], [2]):
        assert post(port, readings("d1", 1, seqs))[0] == 200
    post(port, readings("d1", 2, [0]))
    assert wait_for(lambda: len(hub.out.get("out", [])) == 5)
    assert e.stop()

    def m(n):
        return e.metrics.value(f"edgestream_source_{n}_total", component="web")

    assert (m("gaps"), m("missing_records"), m("duplicates"), m("gap_fills"), m("reboots")) == (1, 2, 1, 1, 1)


# -- stalled clients cannot pin the endpoint or the stop --

def stalled(port, body_sent=b'{"a": 1', length=100):
    """A client that sends its headers and part of the body, then waits."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % length + body_sent)
    return s


def answer(s):
    """The status code the server sent before closing, or None if it closed without one."""
    data = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return int(data.split()[1]) if data.startswith(b"HTTP/1.1 ") else None


def test_a_client_that_stalls_mid_body_gets_408_after_the_read_timeout(hub):
    e = hub.engine("""
sources: {web: {http: {port: 0, read_timeout: 300ms}}}
sinks: {out: {memory: {}}}
pipelines: {p: {from: web, to: out}}
""")
    port = e.sources["web"].source.port
    s = stalled(port)
    t = None
    try:
        t0 = time.monotonic()
        assert answer(s) == 408
        assert time.monotonic() - t0 < 5
        # a trickle that sends a byte at a time within each read's timeout is cut by the body's total deadline
        t = stalled(port, b"", 100)
        t0 = time.monotonic()
        try:
            for _ in range(40):  # 2 s of one byte every 50 ms
                time.sleep(0.05)
                t.sendall(b" ")
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered and closed
        assert answer(t) == 408 and time.monotonic() - t0 < 2
    finally:
        for c in (s, t):
            if c is not None:
                c.close()
    assert post(port, b'{"a": 2}') == (200, {"accepted": 1, "rejected": 0})
    assert e.stop()
    assert refusals(e, 408) == 2 and hub.out["out"] == [{"a": 2}]


def test_a_stop_does_not_wait_for_a_stalled_client(hub):
    e = hub.engine("""
sources: {web: {http: {port: 0}}}
sinks: {out: {memory: {}}}
pipelines: {p: {from: web, to: out}}
""")
    port = e.sources["web"].source.port
    clients = [stalled(port) for _ in range(3)]
    idle = socket.create_connection(("127.0.0.1", port), timeout=10)  # connected, sends nothing
    try:
        assert post(port, b'{"a": 1}') == (200, {"accepted": 1, "rejected": 0})
        t0 = time.monotonic()
        assert e.stop(2.0)
        assert time.monotonic() - t0 < 2.0  # the read timeout is 10s: the stop did not wait for it
        assert [answer(c) for c in clients] == [503] * 3  # told the hub is stopping
        assert answer(idle) is None
    finally:
        for c in [*clients, idle]:
            c.close()
    assert hub.out["out"] == [{"a": 1}]


def test_connections_over_the_limit_are_answered_503_at_once(hub):
    e = hub.engine("""
sources: {web: {http: {port: 0, max_connections: 3}}}
sinks: {out: {memory: {}}}
pipelines: {p: {from: web, to: out}}
""")
    port = e.sources["web"].source.port
    clients = [stalled(port) for _ in range(3)]
    try:
        assert wait_for(lambda: e.sources["web"].source.connections() == 3)
        extra = socket.create_connection(("127.0.0.1", port), timeout=5)
        t0 = time.monotonic()
        assert answer(extra) in (503, None) and time.monotonic() - t0 < 2  # refused at once, not queued
        extra.close()
        full = stalled(port, b'{"a": 1}', 8)  # a whole request: the answer is there before the close
        assert answer(full) in (503, None)
        full.close()
        assert refusals(e, 503) == 2
        clients.pop().close()  # a slot frees up
        assert wait_for(lambda: e.sources["web"].source.connections() == 2)
        assert post(port, b'{"a": 2}') == (200, {"accepted": 1, "rejected": 0})
    finally:
        for c in clients:
            c.close()
    assert e.stop(2.0)
    assert hub.out["out"] == [{"a": 2}]


def test_the_webhook_writes_non_finite_numbers_as_null(hub):
    hook = Hook([])
    try:
        hub.scripts["s"] = [{"v": float("nan")}, {"v": {"w": float("inf")}}, {"v": 1}]
        e = hub.engine(f"""
sources: {{s: {{script: {{name: s}}}}}}
sinks: {{hook: {{http: {{url: "{hook.url}"}}, batch: {{size: 10, linger: 50ms}}}}}}
pipelines: {{p: {{from: s, to: hook}}}}
""")
        assert wait_for(lambda: sum(map(len, hook.batches)) == 3)
        assert e.stop()
    finally:
        hook.close()
    assert [r for b in hook.batches for r in b] == [{"v": None}, {"v": {"w": None}}, {"v": 1}]
    assert e.metrics.value("edgestream_sink_nonfinite_values_total", component="hook") == 2


def test_a_dead_letter_reason_that_quotes_a_huge_value_is_cut(hub):
    e = hub.engine("""
hub: {dead_letter: dlq}
sources: {web: {http: {port: 0, format: wire}}}
sinks: {out: {memory: {}}, dlq: {memory: {}}}
pipelines: {p: {from: web, to: out}}
""")
    key = "k" * 60_000
    body = json.dumps({"v": 1, "kind": "status", "dev": "d1", "boot": 1, "state": "online", key: 1}).encode()
    code, answer_ = post(e.sources["web"].source.port, body)
    assert wait_for(lambda: len(hub.out.get("dlq", [])) == 1)
    assert e.stop()
    assert code == 400 and answer_["error"].startswith("message: unknown key 'kkkk")
    reason = hub.out["dlq"][0]["reason"]
    assert reason.startswith("http: message: unknown key 'kkkk") and reason.endswith("(reason cut: 60029 characters)")
    assert len(reason) < 1100 and len(answer_["error"]) < 1100


def test_trickling_clients_cannot_hold_every_slot(hub):
    """Clients sending a request head one byte at a time (each within the read timeout) are cut once the
    head has taken read_timeout, so a good request gets a slot instead of a 503."""
    from hubtest import trickle

    e = hub.engine("""
sources: {web: {http: {port: 0, read_timeout: 1s, max_connections: 2}}}
sinks: {out: {memory: {}}}
pipelines: {p: {from: web, to: out}}
""")
    port = e.sources["web"].source.port
    head = b"POST /ingest HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    took: list = []
    slow = [threading.Thread(target=lambda: took.append(trickle(port, head, 0.2, 8))) for _ in range(2)]
    for t in slow:
        t.start()
    assert wait_for(lambda: e.sources["web"].source.connections() == 2)
    assert wait_for(lambda: e.sources["web"].source.connections() < 2, timeout=3)  # cut after ~1 s
    assert post(port, b'{"a": 1}') == (200, {"accepted": 1, "rejected": 0})
    for t in slow:
        t.join(10)
    assert [d[:12] for _, d in took] == [b"HTTP/1.1 408"] * 2 and all(s < 3 for s, _ in took)
    assert e.stop()
    assert refusals(e, 408) == 2 and refusals(e, 503) == 0


def raw(port, request: bytes) -> tuple[int | None, bytes]:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(request)
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        return (int(data.split()[1]) if data.startswith(b"HTTP/1.1 ") else None), data
    finally:
        s.close()


@pytest.mark.parametrize("headers,code,says", [
    (b"Content-Length: -1\r\n", 400, b"Content-Length"),
    (b"Content-Length: +2\r\n", 400, b"Content-Length"),
    (b"Content-Length: \xd9\xa2\r\n", 400, b"Content-Length"),  # an Arabic-Indic 2
    (b"Content-Length: 2\r\nContent-Length: 2\r\n", 400, b"more than one Content-Length"),
    (b"Content-Length: 2\r\nContent-Length: 20\r\n", 400, b"more than one Content-Length"),
    (b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n", 400, b"Transfer-Encoding"),
    (b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n", 400, b"Transfer-Encoding"),
    (b"Transfer-Encoding: chunked\r\n", 411, b"Content-Length"),
    (b"", 411, b"Content-Length"),
    (b"X: " + b"a" * 70000 + b"\r\nContent-Length: 2\r\n", 431, b""),
    (b"".join(b"X%d: y\r\n" % i for i in range(150)) + b"Content-Length: 2\r\n", 431, b""),
])
def test_bad_framing_is_refused_and_counted(hub, headers, code, says):
    e = hub.engine("""
sources: {web: {http: {port: 0}}}
sinks: {out: {memory: {}}}
pipelines: {p: {from: web, to: out}}
""")
    port = e.sources["web"].source.port
    got, data = raw(port, b"POST /ingest HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n{}")
    assert got == code, data
    assert says in data
    assert post(port, b'{"a": 1}')[0] == 200  # and the next request is served
    assert e.stop()
    assert refusals(e, code) == 1 and hub.out["out"] == [{"a": 1}]


def test_a_client_that_hangs_up_before_the_answer_is_no_server_error(caplog):
    # a scraper that timed out (the supervisor scraping a stalled worker, Prometheus) closes its end: routine
    import logging
    from http.server import BaseHTTPRequestHandler

    from edgestream_hub.httpserver import BoundedHTTPServer

    log = logging.getLogger("edgestream.test.http")
    server = BoundedHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler, max_connections=2, read_timeout_s=1.0,
                               log=log, name="t")
    try:
        for gone in (BrokenPipeError(32, "Broken pipe"), ConnectionResetError(104, "Connection reset by peer")):
            try:
                raise gone
            except ConnectionError:
                server.handle_error(None, ("127.0.0.1", 5000))
        try:
            raise ValueError("a bug")
        except ValueError:
            server.handle_error(None, ("127.0.0.1", 5000))
    finally:
        server.server_close()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == ["http: request from 127.0.0.1 failed: ValueError: a bug"], errors
    assert "http: 127.0.0.1 hung up before the answer was sent (BrokenPipeError)" in caplog.text
