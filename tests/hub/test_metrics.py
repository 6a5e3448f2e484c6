"""Prometheus metrics scraped over HTTP: every series from the start, state gauges, process metrics."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from hubtest import PAUSE, closed_within, trickle, wait_for
from prometheus_client.parser import text_string_to_metric_families

from edgestream_hub.metrics import LABELS, METRICS, RELOAD_RESULTS, scope
from edgestream_hub.processors import Passthrough
from edgestream_hub.registry import component
from edgestream_hub.spec import Spec

CONFIG = """
hub: {dead_letter: dlq}
sources:
  s: {script: {name: s}}
  t: {script: {name: t}, label: tee}
sinks:
  out: {memory: {}}
  dlq: {memory: {}}
pipelines:
  p:
    from: s
    processors: [{keys: {}}, {filter: {field: v, gt: 0}, label: positive}]
    to: out
  q: {from: t, to: out}
metrics: {listen: "127.0.0.1:0"}
"""


class DistinctKeys(Passthrough):
    """A stateful test processor: remembers every ``k`` it saw and says how much it holds."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def process(self, records, now_ms):
        self.seen.update(str(r.get("k")) for r in records)
        return records

    def state_stats(self) -> dict[str, int]:
        return {"live_states": len(self.seen), "held_bytes": sum(len(k) for k in self.seen)}


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics over HTTP, parsed: {(sample name, sorted labels): value}."""
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def engine(hub):
    hub.registry.register("processor", "keys", component(Spec("keys", "Distinct keys.", []))(
        lambda cfg, ctx: DistinctKeys()))
    hub.scripts["s"] = [PAUSE, {"k": "abc", "v": 1}, {"k": "de", "v": "cold"}, {"k": "abc", "v": 2}]
    hub.scripts["t"] = [PAUSE]
    return hub.engine(CONFIG)


def expected_series() -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    """Every documented metric, for each component that reports it, as the sample names a scrape has."""
    who = {"source": ["s", "tee"], "pipeline": ["p", "q"], "processor": ["p.keys", "positive"],
           "stateful": ["p.keys"], "sink": ["out", "dlq"]}
    out: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for name, _, _ in METRICS:
        if name == "edgestream_hub_config_reloads_total":
            out |= {(name, (("result", r),)) for r in RELOAD_RESULTS}
        for kind in scope(name):
            out |= {(name, (("component", c),)) for c in who[kind]}
    return out


def test_every_documented_series_is_there_at_zero_before_any_record(hub):
    e = engine(hub)
    got = scrape(e.metrics_url)
    want = expected_series()
    missing = sorted(want - set(got))
    assert not missing, missing
    assert {k: got[k] for k in want if got[k] != 0} == {}
    # every documented family has a series for every component that reports it, and nothing is left out
    # (those labelled by a code, HTTP refusals and API answers, are made by their source or the API)
    assert {n for n, _, _ in METRICS if "code" not in LABELS.get(n, ["component"])} == {n for n, _ in want}


def test_the_standard_process_metrics_are_exported(hub):
    got = scrape(engine(hub).metrics_url)
    names = {n for n, _ in got}
    assert {"process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds",
            "python_info"} <= names
    assert got[("process_resident_memory_bytes", ())] > 1_000_000


def test_processor_state_gauges_follow_state_stats(hub):
    e = engine(hub)
    hub.resume["s"].set()
    assert wait_for(lambda: len(hub.out.get("out", [])) == 2)
    key_live = ("edgestream_processor_live_states", (("component", "p.keys"),))
    key_bytes = ("edgestream_processor_state_bytes", (("component", "p.keys"),))
    assert wait_for(lambda: scrape(e.metrics_url)[key_live] == 2, 5)  # refreshed about once a second
    got = scrape(e.metrics_url)
    assert got[key_bytes] == len("abc") + len("de")
    assert ("edgestream_processor_live_states", (("component", "positive"),)) not in got  # filter has no state
    assert got[("edgestream_hub_dead_letters_total", (("component", "positive"),))] == 1
    assert got[("edgestream_pipeline_records_in_total", (("component", "p"),))] == 3


def test_components_added_by_a_reload_have_their_series_at_zero(hub):
    e = engine(hub)
    hub.scripts["u"] = [PAUSE]
    e.reload(hub.config(CONFIG.replace("sinks:", "  u: {script: {name: u}}\nsinks:", 1)
                        .replace("  dlq: {memory: {}}", "  dlq: {memory: {}}\n  more: {memory: {}}")
                        .replace("metrics:", "  r: {from: u, processors: [{keys: {}}], to: more}\nmetrics:")))
    got = scrape(e.metrics_url)
    for series in [("edgestream_source_records_total", "u"), ("edgestream_source_decode_errors_total", "u"),
                   ("edgestream_pipeline_errors_total", "r"), ("edgestream_hub_late_records_total", "r.keys"),
                   ("edgestream_processor_live_states", "r.keys"), ("edgestream_sink_errors_total", "more"),
                   ("edgestream_hub_dead_letters_total", "more")]:
        assert got.get((series[0], (("component", series[1]),))) == 0, series


def test_the_lookup_table_wrapper_keeps_state_stats_when_its_processor_has_it():
    from edgestream_hub.processors import RefreshingSql

    keys = DistinctKeys()
    keys.process([{"k": "x"}], 0)
    assert RefreshingSql(keys, 1000, None).state_stats() == {"live_states": 1, "held_bytes": 1}
    assert not hasattr(RefreshingSql(Passthrough(), 1000, None), "state_stats")


# -- the endpoint under slow and greedy clients ---------------------------------------------------------
def serving(hub, extra: str = ""):
    """A hub with only a /metrics endpoint (and the port it listens on)."""
    hub.scripts["s"] = [PAUSE]
    e = hub.engine(f"""
sources: {{s: {{script: {{name: s}}}}}}
sinks: {{out: {{memory: {{}}}}}}
pipelines: {{p: {{from: s, to: out}}}}
metrics: {{listen: "127.0.0.1:0"{extra}}}
""")
    return e, urlsplit(e.metrics_url).port


def test_a_stalled_scraper_is_cut_after_the_read_timeout_and_others_are_served(hub):
    e, port = serving(hub, ", read_timeout: 300ms")
    silent = socket.create_connection(("127.0.0.1", port), timeout=10)  # connects, sends nothing
    partial = socket.create_connection(("127.0.0.1", port), timeout=10)
    partial.sendall(b"GET /metr")  # half a request line, then nothing
    try:
        assert "edgestream_source_records_total" in str(scrape(e.metrics_url))  # served meanwhile
        t0 = time.monotonic()
        assert closed_within(silent, 5)[0] and closed_within(partial, 5)[0]
        assert time.monotonic() - t0 < 3
        assert wait_for(lambda: e._metrics_server.connections() == 0)
    finally:
        silent.close()
        partial.close()
    assert e.stop(2.0)


def test_scrapers_over_the_limit_are_answered_503_at_once(hub):
    e, port = serving(hub, ", max_connections: 2")
    held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
    try:
        assert wait_for(lambda: e._metrics_server.connections() == 2)
        t0 = time.monotonic()
        try:
            urllib.request.urlopen(e.metrics_url, timeout=5)
            raise AssertionError("a third connection was served")
        except urllib.error.HTTPError as err:
            assert err.code == 503 and err.headers["Retry-After"] == "1"
        except urllib.error.URLError:  # closed before the request was written: refused all the same
            pass
        assert time.monotonic() - t0 < 2  # refused at once, not queued behind the held connections
        held.pop().close()  # a slot frees up
        assert wait_for(lambda: e._metrics_server.connections() == 1)
        assert scrape(e.metrics_url)
    finally:
        for s in held:
            s.close()
    assert e.stop(2.0)


def test_a_stalled_scraper_does_not_hold_the_hub_stop(hub):
    e, port = serving(hub)  # the default read timeout: 10 s
    clients = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(3)]
    clients[0].sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # headers never finished
    try:
        assert wait_for(lambda: e._metrics_server.connections() == 3)
        t0 = time.monotonic()
        assert e.stop(2.0)
        assert time.monotonic() - t0 < 2.0
        assert all(closed_within(c, 2)[0] for c in clients)  # let go of, not left hanging
    finally:
        for c in clients:
            c.close()
    with socket.socket() as s:  # and the port is free again
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_the_whole_request_head_must_arrive_within_the_read_timeout(hub):
    """A scraper that sends its request line a byte at a time, each byte well within the timeout, is cut
    once the whole head has taken read_timeout: the timeout is per request head, not per read."""
    e, port = serving(hub, ", read_timeout: 1s")
    took, data = trickle(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100, 0.2, 8)
    assert took < 3, took
    assert data.startswith(b"HTTP/1.1 408")
    assert scrape(e.metrics_url)
    assert e.stop(2.0)


def test_a_keep_alive_scrape_is_answered_and_closed_like_prometheus_client_does(hub):
    """prometheus_client answers without a Content-Length: the endpoint must speak HTTP/1.0 (the answer
    ends with the connection), or a keep-alive scraper would wait for the read timeout."""
    e, port = serving(hub, ", read_timeout: 5s")
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
        t0 = time.monotonic()
        closed, data = closed_within(s, 4)
        assert closed and time.monotonic() - t0 < 2 and b"edgestream_source_records_total" in data
    finally:
        s.close()
    assert e.stop(2.0)
