"""HTTP source (ingest endpoint) and sink (webhook) against real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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
    assert code == 400 and body["error"].startswith("body is not JSON")
    assert post(port, b"x" * 2000, "t0ken")[0] == 413
    assert post(port, b"{}", "t0ken", path="/other")[0] == 404
    assert wait_for(lambda: len(hub.out.get("out", [])) == 3 and len(hub.out.get("dlq", [])) == 2)
    assert e.stop()
    assert hub.out["out"] == [{"a": 1}, {"a": 2}, {"a": 4}]
    assert hub.out["dlq"][1]["record"] == '{"a":'
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
