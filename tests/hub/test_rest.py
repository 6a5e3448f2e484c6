"""The REST API over real HTTP: a hub (HubService, as `hub run` runs it) with a real mosquitto and real
MicroPython agents; every endpoint, the token and loopback rules, bad bodies and the limits."""

from __future__ import annotations

import doctest
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from consoletest import LiveHub, agent_config, events
from hubtest import wait_for

from edgestream_hub import live, rest, sqltry, taps
from edgestream_hub.devices import PUBLIC_KEYS
from edgestream_tools.broker import Mosquitto


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = Mosquitto(tmp_path_factory.mktemp("broker")).start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture(scope="module")
def fleet(broker, tmp_path_factory):
    """One hub with two agents (dev1, dev2) for the tests that only read or push configs."""
    h = LiveHub(tmp_path_factory.mktemp("fleet"), broker.port).start()
    try:
        h.start_agent("dev1")
        h.start_agent("dev2")
        h.wait_online("dev1", "dev2")
        yield h
    finally:
        h.close()


@pytest.fixture
def small(mosquitto, tmp_path):
    """A hub of its own with small limits, on a broker of its own (no agents), stopped at the end."""
    made: list[LiveHub] = []

    def make(api: str = "", token: str | None = None) -> LiveHub:
        h = LiveHub(tmp_path, mosquitto.port, api=api, token=token).start()
        made.append(h)
        return h

    try:
        yield make
    finally:
        for h in made:
            h.close()


def test_module_examples():
    for mod in (rest, live, taps, sqltry):
        assert doctest.testmod(mod).failed == 0, mod


# -- the contract ------------------------------------------------------------------------------------------
def test_every_route_served_is_in_the_openapi_document_and_back():
    doc = rest.openapi()
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    served = {(r.method, r.template) for r in rest.ROUTES}
    assert served == documented
    for r in rest.ROUTES:  # each handler exists, each operation says what it answers
        assert callable(getattr(rest._Handler, r.handler)), r
        op = rest.operation(r)
        assert op["summary"] and op["responses"] and any(c.startswith("2") for c in op["responses"])
        for p in op.get("parameters", ()):  # path parameters are the template's
            if p["in"] == "path":
                assert "{" + p["name"] + "}" in r.template

    def refs(node):  # every $ref resolves
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "$ref":
                    rest.resolve({"$ref": v})
                else:
                    refs(v)
        elif isinstance(node, list):
            for v in node:
                refs(v)

    refs(doc)
    assert doc["openapi"].startswith("3.")


def test_the_api_reference_in_the_docs_is_the_documents():
    import re

    text = (Path(__file__).resolve().parents[2] / "docs" / "console.md").read_text()
    rows = re.findall(r"^\| `(GET|PUT|POST)` \| `([^`]+)` \| (.+?) \|$", text, re.M)
    doc = rest.openapi()["paths"]
    assert sorted((m, p, s) for m, p, s in rows) == sorted(
        (m.upper(), p, op["summary"]) for p, ops in doc.items() for m, op in ops.items())


def test_the_served_document_is_the_packaged_one_and_answers_match_it(fleet):
    r = fleet.get("/api/openapi.json")
    assert r.status == 200 and r.json() == rest.openapi()
    # a few answers checked against their documented schemas
    rest.check(rest.openapi()["components"]["schemas"]["DeviceList"], fleet.get("/api/devices").json(), "answer")
    rest.check(rest.openapi()["components"]["schemas"]["Pipelines"], fleet.get("/api/pipelines").json(), "answer")


# -- devices -----------------------------------------------------------------------------------------------
def test_devices_are_listed_with_the_registry_keys(fleet):
    r = fleet.get("/api/devices")
    assert r.status == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["enabled"] is True and body["overflow"] == 0
    devs = {d["device"]: d for d in body["devices"]}
    assert set(devs) == {"dev1", "dev2"}
    for d in devs.values():
        assert list(d) == list(PUBLIC_KEYS)
        assert d["online"] is True and d["link"] == "mqtt" and d["heap_free"] > 20000


def test_one_device_has_its_health_and_window_results_over_time(fleet):
    def detail():
        return fleet.get("/api/devices/dev1").json()

    assert wait_for(lambda: len(detail()["health"]) >= 2 and len(detail()["results"]) >= 3, 20), detail()
    d = detail()
    assert d["device"]["device"] == "dev1"
    t, heap, lag, online = d["health"][-1]
    assert abs(t - time.time() * 1000) < 60_000 and heap > 20000 and online is True
    pt = d["results"][-1]
    assert pt["sensor"] == "temp" and pt["window"] == "w" and set(pt["values"]) >= {"count", "avg", "max"}
    r = fleet.get("/api/devices/nope")
    assert r.status == 404 and r.json() == {"error": "no device 'nope' in the registry", "path": "/api/devices/nope"}


def test_a_config_push_is_answered_by_the_device(fleet):
    new = agent_config("dev1", fleet.broker_port, window_ms=300)  # no version: desired + 1
    r = fleet.request("PUT", "/api/devices/dev1/config?wait=30", new)
    assert r.status == 200, r
    body = r.json()
    assert body["config_state"] == "applied" and body["version"] == 2 and body["config_reported"] == 2
    assert fleet.saved_agent_config("dev1")["sensors"][0]["windows"][0]["size_ms"] == 300
    assert fleet.devices()["dev1"]["config_state"] == "applied"

    # the agent's validator, with the board's message, before anything is sent
    bad = agent_config("dev1", fleet.broker_port)
    bad["sensors"][0]["period_ms"] = 0
    r = fleet.request("PUT", "/api/devices/dev1/config", bad)
    assert r.status == 422 and "sensors[0].period_ms: must be > 0" in r.json()["error"], r
    assert fleet.devices()["dev1"]["config_desired"] == 2
    # an older version than the desired one
    r = fleet.request("PUT", "/api/devices/dev1/config", {**new, "version": 1})
    assert r.status == 409 and "older than the desired version 2" in r.json()["error"], r
    # not an object: refused by the document's schema
    r = fleet.request("PUT", "/api/devices/dev1/config", [1, 2])
    assert r.status == 400 and r.json()["error"] == "body: expected an object, got an array", r

    # valid on the host, refused by the board (more than its receive buffer holds): the reason comes back
    big = agent_config("dev1", fleet.broker_port)
    big["sensors"] = [{"name": f"s{i}", "period_ms": 1000, "source": {"type": "sim"},
                       "windows": [{"name": "w", "size_ms": 60000, "aggregates": ["count", "avg", "min", "max"]}]}
                      for i in range(20)]
    r = fleet.request("PUT", "/api/devices/dev1/config?wait=30", big)
    assert r.status == 200, r
    body = r.json()
    assert body["config_state"] == "refused" and body["version"] == 3 and "byte limit" in body["last_nack"]
    # pushed again: the answer is the device's answer to this push, not the refusal from before
    r = fleet.request("PUT", "/api/devices/dev1/config", {**big, "version": 3})
    assert r.status == 202 and r.json()["config_state"] == "pending" and r.json()["last_nack"] is None, r
    # without wait: 202 and pending, then applied
    r = fleet.request("PUT", "/api/devices/dev1/config", agent_config("dev1", fleet.broker_port, window_ms=400))
    assert r.status == 202 and r.json()["config_state"] == "pending" and r.json()["version"] == 4, r
    assert wait_for(lambda: fleet.devices()["dev1"]["config_reported"] == 4, 30)
    # back to an older version: only forced
    r = fleet.request("PUT", "/api/devices/dev1/config", {**new, "version": 2})
    assert r.status == 409 and "or force it to go back" in r.json()["error"], r
    r = fleet.request("PUT", "/api/devices/dev1/config?force=yes", {**new, "version": 2})
    assert r.status == 400 and r.json()["error"] == "query: force: expected true or false, got 'yes'", r
    r = fleet.request("PUT", "/api/devices/dev1/config?force=true&wait=30", {**new, "version": 2})
    assert r.status == 200 and r.json()["config_state"] == "applied", r
    assert fleet.saved_agent_config("dev1")["version"] == 2


def test_time_is_sent_on_request(fleet):
    r = fleet.request("POST", "/api/devices/dev2/time")
    assert r.status == 200 and r.json() == {"device": "dev2", "sent": True, "link": "mqtt"}, r
    assert fleet.request("POST", "/api/devices/ghost/time").status == 404
    r = fleet.request("POST", "/api/devices/dev2/time", {"x": 1})
    assert r.status == 400 and r.json()["error"] == "this endpoint takes no body"


# -- pipelines ---------------------------------------------------------------------------------------------
def test_pipelines_show_counts_rates_queues_and_dead_letters(fleet):
    # a record the checks pipeline rejects (division by zero) and one it passes
    c = socket.create_connection(("127.0.0.1", fleet.web_port()), 10)
    c.sendall(b'POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 18\r\n'
              b'Connection: close\r\n\r\n[{"v":0},{"v":4}]\n')
    assert b"200" in c.recv(1000)
    c.close()

    def view():
        return fleet.get("/api/pipelines").json()

    assert wait_for(lambda: any(p["rate_in"] > 0 for p in view()["pipelines"] if p["name"] == "raw"), 10), view()
    v = view()
    pipes = {p["name"]: p for p in v["pipelines"]}
    assert set(pipes) == {"raw", "avg", "checks"}
    assert pipes["avg"]["processors"] == [{"label": "avg.sql", "type": "sql"}] and pipes["avg"]["to"] == ["avg_out"]
    assert pipes["raw"]["records_in"] > 0 and pipes["raw"]["queue"] >= 0 and pipes["raw"]["errors"] == 0
    assert wait_for(lambda: {p["name"]: p for p in view()["pipelines"]}["checks"]["dead_letters"] == 1, 10)
    dl = [x for x in view()["dead_letters"] if x["pipeline"] == "checks"]
    assert dl[0]["reason"] == "division by zero" and dl[0]["record"]["v"] == 0 and dl[0]["component"] == "checks.sql"
    srcs = {s["name"]: s for s in v["sources"]}
    assert srcs["devs"]["type"] == "mqtt" and srcs["devs"]["records"] > 0 and srcs["devs"]["rate"] >= 0
    sinks = {s["name"]: s for s in v["sinks"]}
    assert set(sinks) == {"out", "avg_out", "checked", "dlq"} and sinks["out"]["records"] > 0


def test_a_pipeline_has_its_latest_results(fleet):
    assert wait_for(lambda: len(fleet.get("/api/pipelines/avg/results?limit=3").json()["results"]) == 3, 15)
    body = fleet.get("/api/pipelines/avg/results?limit=3").json()
    assert body["pipeline"] == "avg" and body["to"] == ["avg_out"]
    assert {"device", "sensor", "avg", "n"} <= set(body["results"][-1])
    assert len(fleet.get("/api/pipelines/raw/results").json()["results"]) > 3  # default limit 100
    r = fleet.get("/api/pipelines/nope/results")
    assert r.status == 404 and "pipelines: avg, checks, raw" in r.json()["error"]
    for q, msg in (("limit=0", "query: limit: 0 is below the minimum 1"),
                   ("limit=x", "query: limit: expected an integer, got 'x'"),
                   ("limits=3", "query: unknown parameter 'limits' (known: limit)"),
                   ("limit=1&limit=2", "query: limit is given 2 times")):
        r = fleet.get(f"/api/pipelines/avg/results?{q}")
        assert r.status == 400 and r.json()["error"] == msg, (q, r)


# -- events ------------------------------------------------------------------------------------------------
def test_the_event_stream_carries_device_changes_and_results(fleet):
    seen = events(fleet, 15, until=lambda evs: {"devices", "device_results", "results", "pipelines"} <=
                  {n for n, _ in evs})
    names = {n for n, _ in seen}
    assert {"devices", "device_results", "results", "pipelines"} <= names, names
    assert seen[0] == ("comment", "connected")
    dev = next(d for n, d in seen if n == "devices")
    assert {x["device"] for x in dev["devices"]} <= {"dev1", "dev2"}
    res = next(d for n, d in seen if n == "device_results")
    assert set(res) <= {"dev1", "dev2"} and all(p["sensor"] == "temp" for pts in res.values() for p in pts)
    out = next(d for n, d in seen if n == "results")
    assert out["pipeline"] in {"raw", "avg"} and out["count"] >= len(out["records"]) > 0


def test_an_idle_event_stream_gets_heartbeats_and_dead_letters(small):
    h = small()
    seen = events(h, 5, until=lambda evs: evs.count(("comment", "heartbeat")) >= 2)
    assert seen.count(("comment", "heartbeat")) >= 2, seen
    with socket.create_connection(("127.0.0.1", h.web_port()), 10) as c:
        c.sendall(b'POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 8\r\n'
                  b'Connection: close\r\n\r\n{"v": 0}')
        c.recv(1000)
    seen = events(h, 10, until=lambda evs: any(n == "dead_letters" for n, _ in evs))
    dl = next(d for n, d in seen if n == "dead_letters")
    assert dl["count"] == 1 and dl["entries"][0]["reason"] == "division by zero"


# -- config ------------------------------------------------------------------------------------------------
def test_config_check_gives_the_errors_hub_check_gives(fleet):
    good = fleet.path.read_text()
    r = fleet.request("POST", "/api/config/check", good, ctype="application/yaml")
    assert r.status == 200 and r.json() == {"ok": True, "sources": 2, "pipelines": 3, "sinks": 4}, r
    bad = good.replace("TUMBLINGWINDOW(ss, 1)", "TUMBLINGWINDOW(ss, 1) HAVING").replace("port: 0", "port: -1")
    r = fleet.request("POST", "/api/config/check", bad, ctype="text/plain")
    assert r.status == 422, r
    body = r.json()
    assert body["error"].startswith(f"{fleet.path}: 2 config errors:") and body["path"] == "/api/config/check"
    assert {i["path"] for i in body["issues"]} == {"sources.web.http.port", "pipelines.avg.processors[0].sql.query"}
    r = fleet.request("POST", "/api/config/check", b"\xff\xfe", ctype="application/yaml")
    assert r.status == 400 and r.json()["error"] == "body: not UTF-8 (byte 0)"


def test_config_check_errors_match_hub_check_byte_for_byte(small, tmp_path):
    h = small()
    bad = h.path.read_text().replace("port: 0", "port: 70000")
    r = h.request("POST", "/api/config/check", bad, ctype="application/yaml")
    h.path.write_text(bad)  # what `hub check` sees: the same text at the same path
    cli = subprocess.run([sys.executable, "-m", "edgestream_tools.cli", "hub", "check", "-c", str(h.path)],
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode == 2 and r.status == 422
    assert cli.stderr.strip() == f"edgestream hub check: {r.json()['error']}"


def test_reload_applies_or_refuses_the_file(small):
    h = small()
    r = h.request("POST", "/api/reload")
    assert r.status == 200 and r.json() == {"ok": True, "restarted": {}}, r
    text = h.path.read_text()
    h.path.write_text(text.replace("raw: {from: devs, to: out}", "raw: {from: devs, to: [out, avg_out]}"))
    r = h.request("POST", "/api/reload")
    assert r.status == 200 and r.json()["restarted"] == {"pipelines": ["raw"]}, r
    h.path.write_text(text.replace("port: 0", "port: nope"))
    r = h.request("POST", "/api/reload")
    assert r.status == 422 and "sources.web.http.port" in r.json()["error"], r
    assert h.svc.reloads == {"ok": 2, "refused": 1, "failed": 0}
    assert h.get("/api/pipelines").status == 200  # the running config goes on


# -- SQL ---------------------------------------------------------------------------------------------------
def test_sql_explain_and_located_errors(fleet):
    r = fleet.request("POST", "/api/sql/explain", {"query": "SELECT device, count(*) AS n FROM s GROUP BY device, "
                                                            "TUMBLINGWINDOW(ss, 10)"})
    assert r.status == 200 and "window: tumbling size=10000ms" in r.json()["plan"] and r.json()["streams"] == ["s"]
    r = fleet.request("POST", "/api/sql/explain", {"query": "SELECT x\nFROM s WHERE foo(x) > 1"})
    assert r.status == 422, r
    body = r.json()
    assert (body["line"], body["column"]) == (2, 14) and "unknown function 'foo'" in body["error"]
    assert body["excerpt"] == "FROM s WHERE foo(x) > 1\n             ^" and body["path"] == "/api/sql/explain"
    for bad, msg in (({}, "body: missing required key 'query'"), ({"query": 1}, "body.query: expected a string, "
                     "got a number"), ({"query": ""}, "body.query: must not be empty"),
                     ({"query": "SELECT 1 FROM s", "x": 1}, "body: unknown key 'x' (known: lateness_ms, query, "
                                                            "time_field)")):
        r = fleet.request("POST", "/api/sql/explain", bad)
        assert r.status == 400 and r.json()["error"] == msg, (bad, r)


def test_sql_test_runs_on_given_records_and_on_what_a_source_saw(fleet):
    q = "SELECT k, count(*) AS n, sum(v) AS total FROM s GROUP BY k, TUMBLINGWINDOW(ss, 1)"
    recs = [{"k": "a", "v": 1, "ts": 100}, {"k": "b", "v": 2, "ts": 200}, {"k": "a", "v": 3, "ts": 1500},
            {"k": "a", "v": "x", "ts": 1600}]
    r = fleet.request("POST", "/api/sql/run", {"query": q, "records": recs})
    assert r.status == 200, r
    body = r.json()
    assert body["rows"] == [{"k": "a", "n": 1, "total": 1}, {"k": "b", "n": 1, "total": 2},
                            {"k": "a", "n": 2, "total": 3}] or body["rows_total"] == 3, body
    assert body["columns"] == ["k", "n", "total"] and body["records_in"] == 4 and body["timed_out"] is False
    # the last records the agents' source saw: real device results
    r = fleet.request("POST", "/api/sql/run", {"query": "SELECT device, sensor, count(*) AS n FROM s GROUP BY "
                                                        "device, sensor", "source": "devs", "last": 50})
    assert r.status == 200, r
    body = r.json()
    assert body["records_in"] == 50 and {x["device"] for x in body["rows"]} <= {"dev1", "dev2"}
    assert sum(x["n"] for x in body["rows"]) == 50
    # bounded and checked
    r = fleet.request("POST", "/api/sql/run", {"query": "SELECT k FROM s", "records": recs, "source": "devs"})
    assert r.status == 400 and r.json()["error"] == "body: give exactly one of records, streams or source (with last)"
    r = fleet.request("POST", "/api/sql/run", {"query": "SELECT k FROM s", "source": "nope"})
    assert r.status == 404 and r.json()["error"] == "no source 'nope' (sources: devs, web)"
    join = "SELECT a.k, count(*) AS n FROM a JOIN b ON a.k = b.k GROUP BY a.k, TUMBLINGWINDOW(ss, 1)"
    r = fleet.request("POST", "/api/sql/run", {"query": join, "records": recs})
    assert r.status == 422 and "give the records of each by name in `streams`" in r.json()["error"], r
    r = fleet.request("POST", "/api/sql/run", {"query": join, "streams": {"a": [{"k": 1, "ts": 10}, {"k": 2, "ts": 20}],
                                                                          "b": [{"k": 1, "ts": 15}]}})
    assert r.status == 200 and r.json()["rows"] == [{"k": 1, "n": 1}] and r.json()["streams"] == ["a", "b"], r
    r = fleet.request("POST", "/api/sql/run", {"query": join, "streams": {"a": []}})
    assert r.status == 422 and r.json()["error"] == "the query reads a, b; records were given for a (missing: b)"
    r = fleet.request("POST", "/api/sql/run", {"query": "EXPLAIN SELECT k FROM s", "records": recs})
    assert r.status == 422 and "/api/sql/explain" in r.json()["error"]


def test_sql_runs_are_bounded_in_records_rows_and_time(small):
    h = small(api=", sql_max_records: 20000, sql_max_rows: 10, sql_timeout: 10ms, max_body: 4MiB")
    recs = [{"k": i % 50, "ts": i} for i in range(20000)]
    r = h.request("POST", "/api/sql/run", {"query": "SELECT k FROM s", "records": recs + [{"k": 1}]})
    assert r.status == 413 and r.json()["error"] == "body.records: 20001 records is over api.sql_max_records (20000)"
    r = h.request("POST", "/api/sql/run", {"query": "SELECT k FROM s", "records": recs[:100]})
    body = r.json()
    assert r.status == 200 and len(body["rows"]) == 10 and body["rows_total"] == 100 and body["truncated"] is True
    # a slow query meets the time bound: it answers with what it has
    heavy = "SELECT k, count(DISTINCT ts) AS n, max(ts) AS m FROM s GROUP BY k, SLIDINGWINDOW(ss, 100)"
    r = h.request("POST", "/api/sql/run", {"query": heavy, "records": recs})
    body = r.json()
    assert r.status == 200 and body["timed_out"] is True and body["records_in"] < 20000, body


# -- limits and bad requests -------------------------------------------------------------------------------
def raw_request(h: LiveHub, data: bytes, timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", h.port), timeout) as c:
        c.sendall(data)
        out = b""
        while True:
            chunk = c.recv(65536)
            if not chunk:
                return out
            out += chunk


def test_bad_requests_get_located_errors_and_status_codes(small):
    h = small(api=", max_body: 1KiB")
    cases = [
        ("GET", "/nowhere", None, None, 404, "no such endpoint: /nowhere (the routes are listed in /api/openapi.json)"),
        ("DELETE", "/api/devices", None, None, 405, "DELETE is not allowed on /api/devices (allowed: GET)"),
        ("POST", "/api/sql/explain", "{", "application/json", 400, "body: not JSON: Expecting property name enclosed "
                                                                    "in double quotes: line 1 column 2 (char 1)"),
        ("POST", "/api/sql/explain", '{"query": "x"}', "text/plain", 415, "Content-Type text/plain: send "
                                                                          "application/json"),
        ("POST", "/api/sql/explain", {"query": "x" * 2000}, "application/json", 413, "body of 2013 bytes is over the "
                                                                                     "1024 byte limit (api.max_body)"),
        ("GET", "/console/../hub.yaml", None, None, 404, "no such endpoint: /console/../hub.yaml (the routes are "
                                                         "listed in /api/openapi.json)"),
        ("GET", "/console/secret.py", None, None, 404, "no console file 'secret.py'"),
        ("GET", "/api/devices/x", None, None, 409, "the device registry is off: hub.yaml has no devices section "
                                                   "(docs/hub.md, Devices)"),
    ]
    h.path.write_text(h.path.read_text().replace("devices: {connection: default, missing_after: 1s}\n", ""))
    assert h.request("POST", "/api/reload").status == 200
    for method, path, body, ctype, status, msg in cases:
        r = h.request(method, path, body, ctype=ctype)
        assert (r.status, r.json()) == (status, {"error": msg, "path": path.split("?")[0]}), (method, path, r)
    r = h.request("POST", "/api/sql/explain", None, headers={"Content-Type": "application/json"})
    assert r.status == 400 and r.json()["error"] == "body: empty: send application/json"
    answer = raw_request(h, b"POST /api/sql/explain HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                            b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 411") and answer.endswith(b'{"error":"Content-Length required",'
                                                                  b'"path":"/api/sql/explain"}')
    for framing, code, why in ((b"Content-Length: 14\r\nContent-Length: 14\r\n", 400,
                                b"more than one Content-Length"),
                               (b"Transfer-Encoding: chunked\r\n", 411, b"Transfer-Encoding is not supported"),
                               (b"Content-Length: +14\r\n", 400, b"is not a number of bytes")):
        got = raw_request(h, b"POST /api/sql/explain HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                             b"application/json\r\n" + framing + b"\r\n" + b'{"query": "x"}')
        assert got.startswith(b"HTTP/1.1 %d" % code) and why in got, got
    assert h.get("/api/devices").json() == {"enabled": False, "devices": [], "overflow": 0}
    m = h.svc.engine.metrics
    assert m.value("edgestream_api_requests_total", code="404") >= 3
    assert m.value("edgestream_api_requests_total", code="413") == 1


def test_slow_bodies_time_out_and_connections_are_bounded(small):
    h = small(api=", read_timeout: 1s, max_connections: 3")
    with socket.create_connection(("127.0.0.1", h.port), 10) as c:  # half a body, then nothing
        c.sendall(b"POST /api/sql/explain HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100\r\n\r\n{\"query\"")
        t0 = time.monotonic()
        answer = b""
        while chunk := c.recv(4096):
            answer += chunk
        assert b"408" in answer.split(b"\r\n")[0] and b"the body did not arrive within 1s" in answer
        assert time.monotonic() - t0 < 5
    idle = [socket.create_connection(("127.0.0.1", h.port), 10) for _ in range(3)]
    try:
        assert wait_for(lambda: h.svc.api.server.connections() == 3, 5)
        answer = raw_request(h, b"GET /api/devices HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 503") and b"too many connections (max 3)" in answer
    finally:
        for c in idle:
            c.close()
    assert wait_for(lambda: h.svc.api.server.connections() == 0, 5)
    assert h.get("/api/devices").status == 200
    assert h.svc.engine.metrics.value("edgestream_api_requests_total", code="503") == 1
    # a stop is bounded whatever a stalled client does
    stalled = socket.create_connection(("127.0.0.1", h.port), 10)
    stalled.sendall(b"GET /api/devi")
    try:
        t0 = time.monotonic()
        h.svc.api.stop()
        assert time.monotonic() - t0 < 3
    finally:
        stalled.close()


# -- token, loopback, TLS ----------------------------------------------------------------------------------
def test_hub_check_refuses_a_reachable_api_without_a_token(tmp_path):
    from consoletest import hub_yaml

    p = tmp_path / "hub.yaml"
    p.write_text(hub_yaml(1883).replace('listen: "127.0.0.1:0"', 'listen: "0.0.0.0:0"'))
    r = subprocess.run([sys.executable, "-m", "edgestream_tools.cli", "hub", "check", "-c", str(p)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "api.listen: line" in r.stderr and "api.listen '0.0.0.0:0' is reachable from other machines: set a token" \
        in r.stderr, r.stderr
    p.write_text(hub_yaml(1883).replace('listen: "127.0.0.1:0"', 'listen: "0.0.0.0:0", token: s3cret'))
    r = subprocess.run([sys.executable, "-m", "edgestream_tools.cli", "hub", "check", "-c", str(p)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_a_token_guards_every_api_route_but_not_the_console(small):
    h = small(api=', token: "s3cret"', token="s3cret")
    h.path.write_text(h.path.read_text().replace('listen: "127.0.0.1:0"', 'listen: "0.0.0.0:0"'))
    assert h.request("POST", "/api/reload").status == 200  # the server moves to 0.0.0.0 with its token
    assert wait_for(lambda: h.svc.api is not None and h.svc.api.url.startswith("http://0.0.0.0"), 10)
    for route in rest.ROUTES:
        if not route.template.startswith("/api/"):
            continue
        path = route.template.replace("{id}", "dev1").replace("{name}", "raw")
        for tok in (None, "wrong", "s3cret "):
            r = h.request(route.method, path, token=tok)
            assert r.status == 401 and r.headers["www-authenticate"] == "Bearer", (route, tok, r)
            assert r.json()["error"] == "missing or wrong bearer token (Authorization: Bearer <api.token>)"
    assert h.get("/api/devices").status == 200
    assert h.get("/", token=None).status == 200 and h.get("/console/app.js", token=None).status == 200
    # with a token any Host is fine (the token is the guard)
    assert h.get("/api/devices", headers={"Host": "gateway.local:8710"}).status == 200


def test_without_a_token_only_loopback_hosts_are_answered(small):
    h = small()
    assert h.get("/api/devices", headers={"Host": f"localhost:{h.port}"}).status == 200
    assert h.get("/api/devices", headers={"Host": f"[::1]:{h.port}"}).status == 200
    r = h.get("/api/devices", headers={"Host": "evil.example"})
    assert r.status == 403 and "Host 'evil.example' is not a loopback name" in r.json()["error"]
    assert h.get("/", headers={"Host": "evil.example:80"}).status == 403


def test_tls_with_a_certificate_and_key(small, tmp_path):
    if subprocess.run(["sh", "-c", "command -v openssl"], capture_output=True).returncode:
        pytest.skip("openssl is not installed: it makes the test's certificate")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp_path / "hub.key"),
                    "-out", str(tmp_path / "hub.crt"), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=60)
    h = small(api=", tls: {cert_file: hub.crt, key_file: hub.key}")
    assert h.url.startswith("https://127.0.0.1:")
    r = h.get("/api/pipelines")
    assert r.status == 200 and {p["name"] for p in r.json()["pipelines"]} == {"raw", "avg", "checks"}
    # plain HTTP to it gets no answer, and does not stall the server
    assert raw_request(h, b"GET /api/devices HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", timeout=5)[:4] != b"HTTP"
    assert h.get("/api/devices").status == 200


# -- the event stream's bounds -----------------------------------------------------------------------------
def test_a_client_that_stops_reading_is_dropped_with_a_final_event(small):
    h = small(api=", event_queue: 2, read_timeout: 10s")
    c = socket.socket()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.settimeout(30)
    c.connect(("127.0.0.1", h.port))
    c.sendall(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert wait_for(lambda: len(h.svc.api.bus) == 1, 5)
    big = [{"v": 1, "pad": "x" * 2_000} for _ in range(20)]  # ~40 KB per results event
    web = h.web_port()
    for _ in range(40):  # the client reads nothing meanwhile: the server's small buffer fills, then the queue
        with socket.create_connection(("127.0.0.1", web), 10) as w:
            body = json.dumps(big).encode()
            w.sendall(b"POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
                      + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
            w.recv(1000)
        if h.svc.api.bus.dropped:
            break
        time.sleep(0.3)
    assert wait_for(lambda: h.svc.api.bus.dropped == 1, 10)
    data = b""
    while b"event: close" not in data:  # now it reads: what was in flight, then the final event
        chunk = c.recv(1 << 20)
        assert chunk, data[-300:]
        data += chunk
    tail = data[data.index(b"event: close"):]
    assert b'"reason":"too slow: 2 events were waiting (api.event_queue); reconnect"' in tail
    c.close()


def test_event_streams_end_with_a_final_event_when_the_hub_stops(small):
    h = small()
    import threading

    got: list = []
    t = threading.Thread(target=lambda: got.extend(events(h, 20)))
    t.start()
    assert wait_for(lambda: len(h.svc.api.bus) == 1, 5)
    t0 = time.monotonic()
    h.svc.stop_requested.set()
    t.join(15)
    assert not t.is_alive() and time.monotonic() - t0 < 12
    assert got[-1] == ("close", {"reason": "the hub is stopping"}), got[-3:]


def test_an_api_that_cannot_listen_stops_the_start(mosquitto, tmp_path):
    from edgestream_hub.errors import StartError

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        h = LiveHub(tmp_path, mosquitto.port, api="")
        h.path.write_text(h.path.read_text().replace('listen: "127.0.0.1:0"', f'listen: "127.0.0.1:{port}"'))
        with pytest.raises(StartError) as e:
            h.start()
        assert str(e.value) == f"api: cannot listen on 127.0.0.1:{port}: Address already in use"
        assert h.svc.engine is not None and h.svc.engine._running is False  # what had started was stopped
    finally:
        taken.close()


def test_engine_taps_cost_nothing_without_an_api(hub):
    e = hub.engine("""
sources: {s: {script: {name: s}}}
sinks: {out: {memory: {}}}
pipelines: {p: {from: s, to: out}}
""")
    hub.scripts["s"].extend({"v": i} for i in range(10))
    assert wait_for(lambda: len(hub.out["out"]) == 10, 10)
    assert e.taps is None and e.config.api is None


def test_the_default_config_is_found_or_both_places_are_named(tmp_path, monkeypatch):
    from edgestream_hub.config import DEFAULT_CONFIGS, find_config
    from edgestream_hub.errors import ConfigError

    if Path(DEFAULT_CONFIGS[0]).exists():
        pytest.skip(f"{DEFAULT_CONFIGS[0]} exists on this machine")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as e:
        find_config(None)
    assert str(e.value) == ("no config file given and none found at /etc/edgestream/hub.yaml or ./hub.yaml: give one "
                            "with -c PATH")
    (tmp_path / "hub.yaml").write_text("x: 1")
    assert find_config(None) == "./hub.yaml" and find_config("a.yaml") == "a.yaml"
