"""End to end: MQTT source -> sql (with a lookup table and a plugin UDF) -> file sink."""

from __future__ import annotations

import json

from hubtest import PLUGIN_DIR, wait_for
from test_mqtt import publish, publisher, results


def test_mqtt_to_sql_to_file(hub, mosquitto):
    hub.registry = hub.make_registry(paths=[PLUGIN_DIR])  # brings the c_to_f UDF
    (hub.tmp / "rooms.csv").write_text("device,room\nd1,cold\nd2,warm\n")
    e = hub.engine(f"""
broker: {{host: {mosquitto.host}, port: {mosquitto.port}}}
state: {{enabled: false}}
sources:
  devices: {{mqtt: {{topics: "edgestream/+/results", client_id: hub-sql}}}}
sinks:
  out: {{file: {{path: agg.jsonl}}, batch: {{size: 10, linger: 5ms}}}}
pipelines:
  cold_room:
    from: devices
    processors:
      - sql:
          query: |
            SELECT r.room AS room, count(*) AS n, max(c_to_f(avg)) AS max_f
            FROM readings JOIN rooms r ON r.device = readings.device
            GROUP BY r.room, TUMBLINGWINDOW(ss, 10)
          tables: {{rooms: {{file: rooms.csv, refresh: 60s}}}}
    to: out
""")
    assert e.sources["devices"].source.subscribed.wait(5)
    pub = publisher(mosquitto)
    try:
        # ts = end + seq: all in the [10s, 20s) window, until d1's seq 3 at 25s closes it
        publish(pub, "edgestream/d1/results", results("d1", 1, [0, 1, 2], end=10_000))
        publish(pub, "edgestream/d2/results", results("d2", 1, [0], end=12_000))
        publish(pub, "edgestream/d1/results", results("d1", 1, [3], end=25_000))
        out = hub.tmp / "agg.jsonl"
        assert wait_for(lambda: out.exists() and len(out.read_text().splitlines()) == 2)
    finally:
        pub.loop_stop()
        pub.disconnect()
    assert e.stop()
    rows = [json.loads(x) for x in (hub.tmp / "agg.jsonl").read_text().splitlines()]
    from edgestream_hub.sql.processor import result_id

    ident = result_id("cold_room/cold_room.sql")  # each window result names itself: pipeline, window, group
    assert [r.pop("_id") for r in rows] == [ident(w, w + 10_000, r["room"]) for w, r in
                                            zip((10_000, 10_000, 20_000), rows)]
    first = sorted(rows[:2], key=lambda r: r["room"])
    assert first == [{"room": "cold", "n": 3, "max_f": (20.0 + 2) * 9 / 5 + 32},
                     {"room": "warm", "n": 1, "max_f": 20.0 * 9 / 5 + 32}]
    # the stop drained the open [20s, 30s) window through the sink (no state: processors flush)
    assert rows[2:] == [{"room": "cold", "n": 1, "max_f": (20.0 + 3) * 9 / 5 + 32}]
