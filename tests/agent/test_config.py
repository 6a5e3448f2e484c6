# agent.json validation: defaults, normal form, and errors that name the path.
import json

from devtest import raises
from edgestream_agent.config import ConfigError, load, validate


def err(cfg):
    return str(raises(ConfigError, validate, cfg))


def one(sensor):
    return {"device": "d1", "sensors": [sensor]}


def test_defaults_and_normal_form():
    cfg = validate({"device": "d1", "sensors": [{"name": "temp", "windows": [
        {"name": "w", "size_ms": 10000}, {"size": 5, "every": 2, "aggregates": ["avg"]}],
        "filters": [{"ema": 0.3}, {"type": "range", "min": 0}, {"clamp": {"max": 5}}]}]})
    s = cfg["sensors"][0]
    assert s["source"]["type"] == "sim" and s["period_ms"] == 1000 and s["decimals"] == 3 and s["block"] == 1
    assert s["filters"] == [{"type": "ema", "alpha": 0.3}, {"type": "range", "min": 0, "max": None},
                            {"type": "clamp", "min": None, "max": 5}]
    w0, w1 = s["windows"]
    assert w0["type"] == "tumbling" and w0["size_ms"] == 10000 and w0["capacity"] == 0
    assert w0["aggregates"] == ["count", "sum", "avg", "min", "max", "stddev", "first", "last"]
    assert w1 == {"name": "w1", "type": "sliding", "size": 5, "every": 2, "aggregates": ["avg"], "capacity": 5}
    assert cfg["version"] == 0 and cfg["transport"] is None and cfg["watchdog_ms"] == 0
    # validating the normal form again gives the same thing
    assert validate(cfg) == cfg


def test_sliding_time_window_capacity_follows_the_period():
    cfg = validate(one({"name": "s", "period_ms": 100, "windows": [{"size_ms": 1000, "every_ms": 250}]}))
    # 11 samples fit in [b - 1000, b) at 100 ms, + 25% + 2 slack
    assert cfg["sensors"][0]["windows"][0]["capacity"] == 15


def test_errors_name_the_path():
    cases = [
        (one({"name": "a", "windows": [{"size_ms": 0}]}), "sensors[0].windows[0].size_ms: must be > 0"),
        ({"sensors": [{"name": "a"}, {"name": "b", "windows": [{"size_ms": -5}]}]},
         "sensors[1].windows[0].size_ms: must be > 0"),
        (one({"name": "a", "period_ms": 0}), "sensors[0].period_ms: must be > 0"),
        (one({"name": "a", "period_ms": 1.5}), "sensors[0].period_ms: expected an integer"),
        (one({"name": "a b"}), "sensors[0].name: 'a b' has a character outside"),
        (one({"period_ms": 5}), "sensors[0].name: required"),
        (one({"name": "a", "filters": [{"ema": 0}]}), "sensors[0].filters[0].ema.alpha: must be in (0, 1]"),
        (one({"name": "a", "filters": [{"range": {"min": 5, "max": 1}}]}),
         "sensors[0].filters[0].range.max: must be >= min"),
        (one({"name": "a", "filters": [{"range": {}}]}), "sensors[0].filters[0].range: needs min, max or both"),
        (one({"name": "a", "filters": [{"smooth": 1}]}), "sensors[0].filters[0]: unknown filter 'smooth'"),
        (one({"name": "a", "filters": [{"median": {"size": 0}}]}), "sensors[0].filters[0].median.size: must be > 0"),
        (one({"name": "a", "filters": [{"delta": {"min": -1}}]}), "sensors[0].filters[0].delta.min: must be >= 0"),
        (one({"name": "a", "filters": [{"throttle": {}}]}), "sensors[0].filters[0].throttle.interval_ms: required"),
        (one({"name": "a", "filters": [{"clamp": 3}]}), "sensors[0].filters[0].clamp: expected an object"),
        (one({"name": "a", "filters": [{"round": {"digits": 2, "x": 1}}]}),
         "sensors[0].filters[0].round.x: unknown key"),
        (one({"name": "a", "filters": [{"calibrate": {"slope": "2"}}]}),
         "sensors[0].filters[0].calibrate.slope: expected a finite number"),
        (one({"name": "a", "windows": [{"size_ms": 1000, "size": 3}]}), "sensors[0].windows[0]: give size_ms"),
        (one({"name": "a", "windows": [{"every_ms": 1000}]}), "sensors[0].windows[0].size_ms: required"),
        (one({"name": "a", "windows": [{"size_ms": 1000, "every_ms": 2000}]}),
         "sensors[0].windows[0].every_ms: must be <= size_ms"),
        (one({"name": "a", "windows": [{"size": 10, "every_ms": 2}]}),
         "sensors[0].windows[0].every_ms: a count window slides with every"),
        (one({"name": "a", "windows": [{"size": 10, "type": "sliding"}]}),
         "sensors[0].windows[0].every: required for a sliding window"),
        (one({"name": "a", "windows": [{"size": 10, "type": "hopping"}]}), "sensors[0].windows[0].type: expected"),
        (one({"name": "a", "windows": [{"size": 10, "aggregates": ["avg", "p99"]}]}),
         "sensors[0].windows[0].aggregates[1]: unknown aggregate 'p99'"),
        (one({"name": "a", "windows": [{"size": 10, "aggregates": []}]}),
         "sensors[0].windows[0].aggregates: expected a non-empty list"),
        (one({"name": "a", "windows": [{"size": 10, "every": 2, "capacity": 5}]}),
         "sensors[0].windows[0].capacity: must be >= size"),
        (one({"name": "a", "windows": [{"name": "w", "size": 10}, {"name": "w", "size": 2}]}),
         "sensors[0].windows[1].name: duplicate window name 'w'"),
        ({"sensors": [{"name": "a"}, {"name": "a"}]}, "sensors[1].name: duplicate sensor name 'a'"),
        (one({"name": "a", "source": {"type": "adc"}}), "sensors[0].source.pin: required"),
        (one({"name": "a", "block": 0}), "sensors[0].block: must be > 0"),
        (one({"name": "a", "block": 257}), "sensors[0].block: must be <= 256"),
        (one({"name": "a", "block": 4, "source": {"type": "i2c", "addr": 72, "reg": 0}}),
         "sensors[0].block: source 'i2c' reads one sample at a time (a block needs sim or adc)"),
        (one({"name": "a", "source": "thermometer"}), "sensors[0].source.type: expected one of"),
        (one({"name": "a", "source": {"type": "sim", "wave": "square"}}), "sensors[0].source.wave: expected one of"),
        (one({"name": "a", "source": {"type": "i2c", "addr": 64, "reg": 0, "nbytes": 3}}),
         "sensors[0].source.nbytes: expected one of 1, 2"),
        (one({"name": "a", "decimals": 9}), "sensors[0].decimals: must be <= 6"),
        (one({"name": "a", "colour": "red"}), "sensors[0].colour: unknown key"),
        ({"sensors": []}, "sensors: expected a non-empty list"),
        ({"device": "d/1", "sensors": [{"name": "a"}]}, "device: 'd/1' has a character outside"),
        ({"sensors": [{"name": "a"}], "transport": "mqtt"}, "transport: expected an object"),
        ({"sensors": [{"name": "a"}], "version": -1}, "version: must be >= 0"),
        ({"sensors": [{"name": "a"}], "extra": 1}, "extra: unknown key"),
        ([1], "expected an object"),
    ]
    for cfg, want in cases:
        got = err(cfg)
        assert got.startswith(want), (got, want)


def test_transport_is_validated_with_the_config():
    cfg = validate({"sensors": [{"name": "a"}], "version": 3,
                    "transport": {"type": "mqtt", "mqtt": {"host": "10.0.0.2"}}})
    t = cfg["transport"]
    assert t["type"] == "mqtt" and t["mqtt"]["host"] == "10.0.0.2" and t["mqtt"]["port"] == 0
    assert t["poll_ms"] == 10 and t["buffer_bytes"] == 4096 and cfg["version"] == 3
    assert validate(cfg) == cfg
    # an invalid transport fails the whole config, naming its path
    cases = [
        ({"mqtt": {"host": "10.0.0.2"}}, "transport.type: required"),
        ({"type": "mqtt", "mqtt": {"host": "h", "port": 70000}}, "transport.mqtt.port: must be in 0..65535"),
        ({"type": "mqtt"}, "transport.mqtt: required when type is 'mqtt'"),
        ({"type": "serial", "serial": {"baud": 0}}, "transport.serial.baud: must be > 0"),
        ({"type": "none", "buffer_bytes": 10}, "transport.buffer_bytes: must be >= max_message + 4"),
    ]
    for t, want in cases:
        got = err({"sensors": [{"name": "a"}], "transport": t})
        assert got.startswith(want), (got, want)


def test_durations_and_sizes_are_bounded_to_what_a_32_bit_board_holds():
    # a duration beyond a day (ticks_add refuses >= 2**29 ms), an integer beyond a small int (2**30 - 1)
    day = "must be <= 86400000 (one day)"
    big = "must be <= 1073741823"
    mqtt = {"type": "mqtt", "mqtt": {"host": "h"}}
    cases = [
        (one({"name": "a", "period_ms": 2 ** 29}), "sensors[0].period_ms: " + day),
        (one({"name": "a", "period_ms": 86400001}), "sensors[0].period_ms: " + day),
        (one({"name": "a", "windows": [{"size_ms": 2 ** 31}]}), "sensors[0].windows[0].size_ms: " + day),
        (one({"name": "a", "windows": [{"size_ms": 1000, "every_ms": 2 ** 40}]}),
         "sensors[0].windows[0].every_ms: " + day),
        (one({"name": "a", "windows": [{"size": 2 ** 30}]}), "sensors[0].windows[0].size: " + big),
        (one({"name": "a", "windows": [{"size_ms": 1000, "every_ms": 500, "capacity": 2 ** 30}]}),
         "sensors[0].windows[0].capacity: " + big),
        (one({"name": "a", "filters": [{"throttle": 10 ** 10}]}), "sensors[0].filters[0].throttle.interval_ms: " + day),
        (one({"name": "a", "filters": [{"heartbeat": 2 ** 29}]}),
         "sensors[0].filters[0].heartbeat.interval_ms: " + day),
        (one({"name": "a", "filters": [{"median": 2 ** 30}]}), "sensors[0].filters[0].median.size: " + big),
        (one({"name": "a", "source": {"type": "sim", "wave_ms": 2 ** 29}}), "sensors[0].source.wave_ms: " + day),
        (one({"name": "a", "source": {"type": "sim", "seed": 2 ** 32}}), "sensors[0].source.seed: " + big),
        ({"sensors": [{"name": "a"}], "watchdog_ms": 2 ** 29}, "watchdog_ms: " + day),
        ({"sensors": [{"name": "a"}], "version": 2 ** 31}, "version: must be <= 2147483647"),
        ({"sensors": [{"name": "a"}], "transport": {"type": "none", "health_ms": 2 ** 31}},
         "transport.health_ms: " + day),
        ({"sensors": [{"name": "a"}], "transport": {"type": "none", "poll_ms": 2 ** 29}}, "transport.poll_ms: " + day),
        ({"sensors": [{"name": "a"}], "transport": {"type": "none", "buffer_bytes": 2 ** 30}},
         "transport.buffer_bytes: " + big),
        ({"sensors": [{"name": "a"}], "transport": {"type": "none", "spill_path": "s", "spill_bytes": 2 ** 40}},
         "transport.spill_bytes: " + big),
        ({"sensors": [{"name": "a"}], "transport": dict(mqtt, mqtt={"host": "h", "backoff_max_ms": 2 ** 29})},
         "transport.mqtt.backoff_max_ms: " + day),
        ({"sensors": [{"name": "a"}], "transport": dict(mqtt, mqtt={"host": "h", "keepalive_s": 65536})},
         "transport.mqtt.keepalive_s: must be <= 65535"),
        ({"sensors": [{"name": "a"}], "transport": dict(mqtt, wifi={"ssid": "x", "retry_ms": 2 ** 29})},
         "transport.wifi.retry_ms: " + day),
        ({"sensors": [{"name": "a"}], "transport": dict(mqtt, ntp={"every_ms": 2 ** 29})},
         "transport.ntp.every_ms: " + day),
    ]
    for cfg, want in cases:
        got = err(cfg)
        assert got.startswith(want), (got, want)
    # the largest values are taken
    cfg = validate({"sensors": [{"name": "a", "period_ms": 86400000, "windows": [{"size_ms": 86400000}]}],
                    "version": 2147483647, "watchdog_ms": 86400000,
                    "transport": {"type": "none", "health_ms": 86400000, "buffer_bytes": 1073741823}})
    assert cfg["sensors"][0]["period_ms"] == 86400000 and cfg["version"] == 2147483647
    assert cfg["transport"]["buffer_bytes"] == 1073741823


def test_every_duration_in_the_specs_has_a_duration_kind():
    from edgestream_agent.config import _SPECS

    for line in _SPECS.strip().split("\n"):
        for tok in line.split()[1:]:
            w = tok.lstrip("*").split("=")
            if len(w) > 1 and w[0].endswith("_ms"):
                assert w[1] in ("t", "t0"), (line.split()[0], w[0], w[1])


def test_device_id_is_an_alias():
    assert validate({"device_id": "d9", "sensors": [{"name": "a"}]})["device"] == "d9"


def test_load_reads_a_file_and_reports_its_path(tmp="/tmp/edgestream-agent-test-config.json"):
    with open(tmp, "w") as f:
        f.write(json.dumps(one({"name": "a", "windows": [{"size_ms": 5000}]})))
    assert load(tmp)["sensors"][0]["windows"][0]["size_ms"] == 5000
    with open(tmp, "w") as f:
        f.write("{not json")
    assert str(raises(ConfigError, load, tmp)).startswith(tmp + ": not valid JSON")
    assert str(raises(ConfigError, load, tmp + ".missing")).startswith(tmp + ".missing: cannot read")


def _tiny_config():
    # the config of test_tiny.py (4 sensors x 2 sliding windows of 256)
    sensors = []
    for i in range(4):
        sensors.append({"name": "s%d" % i, "period_ms": 100, "source": {"type": "sim", "noise": 0.5, "seed": i + 1},
                        "filters": [{"median": 3}, {"ema": 0.5}],
                        "windows": [{"name": "c256", "size": 256, "every": 32,
                                     "aggregates": ["count", "avg", "min", "max", "stddev"]},
                                    {"name": "t256", "size_ms": 25600, "every_ms": 5000, "capacity": 256,
                                     "aggregates": ["count", "avg", "min", "max"]}]})
    return {"device": "tiny-1", "sensors": sensors}


def test_the_tiny_config_file_is_what_the_validator_makes():
    # test_tiny.py reads the normalised config from this file (the
    # validator's source does not compile in the 64 KB heap with the rest)
    with open(__file__.rsplit("/", 1)[0] + "/data/tiny_agent.json") as f:
        assert json.load(f) == json.loads(json.dumps(validate(_tiny_config())))
