"""Config: every error class with its path and line, layers, interpolation, `hub check`."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hubtest import ALIAS_BOMB, deep_yaml
from hypothesis import given, strategies as st

from edgestream_hub.config import InterpolationError, interpolate, set_path, split_path
from edgestream_hub.errors import ConfigError
from edgestream_hub.spec import parse_duration, parse_size

GOOD = """\
broker:
  host: 127.0.0.1
  port: 1883
sources:
  devices:
    mqtt:
      topics: ["edgestream/+/results"]
sinks:
  out:
    file: {path: out.jsonl}
pipelines:
  cold_room:
    from: devices
    processors:
      - filter: {field: avg, gt: 3}
    to: out
"""


def errors(hub, text, **kw) -> list[str]:
    with pytest.raises(ConfigError) as e:
        hub.config(text, **kw)
    return [str(i) for i in e.value.issues]


def test_a_good_config_gets_defaults(hub):
    cfg = hub.config(GOOD)
    assert cfg.connections["default"]["port"] == 1883
    assert cfg.connections["default"]["reconnect_max"] == 30_000
    src = cfg.sources["devices"]
    assert (src.type, src.label, src.config["qos"], src.config["clean_session"]) == ("mqtt", "devices", 1, False)
    p = cfg.pipelines["cold_room"]
    assert p.sources == ["devices"] and p.sinks == ["out"] and p.batch == {"size": 500, "linger": 0}
    assert p.processors[0].label == "cold_room.filter"
    assert cfg.sinks["out"].common["policy"] == "block"
    assert cfg.hub["shutdown_timeout"] == 10_000


@pytest.mark.parametrize("change, expected", [
    (("port: 1883", "port: eighteen"), "broker.port: line 3: expected an integer, got a string ('eighteen')"),
    (("topics:", "topix:"), "sources.devices.mqtt.topix: line 7: unknown key 'topix' in mqtt (did you mean 'topics'?)"),
    (("gt: 3", "gt: warm"), "pipelines.cold_room.processors[0].filter.gt: line 15: expected a number, got 'warm'"),
    (("to: out", "to: [out, archive]"),
     "pipelines.cold_room.to[1]: line 16: 'archive' is not defined in sinks (defined: out)"),
    (("from: devices", "from: device"), "pipelines.cold_room.from[0]: line 13: 'device' is not defined in sources"),
    (("file: {path: out.jsonl}", "file: {path: out.jsonl, rotate_interval: 1 hour}"),
     "sinks.out.file.rotate_interval: line 10: bad duration '1 hour'"),
    (("file: {path: out.jsonl}", "fiel: {path: out.jsonl}"),
     "sinks.out.fiel: line 10: unknown sink type 'fiel' (did you mean 'file'?)"),
    (("file: {path: out.jsonl}", "file: {path: out.jsonl}\n    stdout: {}"),
     "sinks.out: line 9: expected exactly one sink type key, found several type keys (file, stdout)"),
    (("    to: out", "    to: out\n    batch: {linger: 5}"),
     "pipelines.cold_room.batch.linger: line 17: expected a duration string like \"500ms\""),
    (("broker:", "brokers:"), "brokers: line 1: unknown section 'brokers'"),
    (("host: 127.0.0.1", "host: 127.0.0.1\n  host: 10.0.0.1"),
     "broker.host: line 3: duplicate key 'host' (first on line 2)"),
    (("  port: 1883", "  port: ${MQTT_PORT}"), "broker.port: line 3: environment variable MQTT_PORT is not set"),
    (("sinks:", "sinks:\n  db: {sqlite: {path: x.db, table: \"drop table\"}}"),
     "sinks.db.sqlite.table: line 9: 'drop table' is not a plain identifier"),
    (("sources:", "sources:\n  old: {file: {path: missing.csv}}"),
     "sources.old.file.path: line 5: file not found: missing.csv"),
    (("sources:", "sources:\n  idle: {file: {path: hub.yaml}}"),
     "sources.idle.file: line 5: source 'idle' feeds no pipeline"),
    (("port: 1883", "port: 1883\n  tls: {ca_file: ca.pem}"), "broker.tls.ca_file: line 4: file not found: ca.pem"),
    (("qos", "qos"), None),
])
def test_each_error_class_has_its_path_line_and_message(hub, change, expected):
    text = GOOD.replace(*change)
    if expected is None:
        hub.config(text)
        return
    errs = errors(hub, text)
    assert any(e.startswith(expected) for e in errs), errs


def test_yaml_syntax_errors_have_a_line(hub):
    errs = errors(hub, GOOD.replace("topics: [", "topics: [[") )
    assert errs[0].startswith("<root>: line ") and "not valid YAML" in errs[0]


def test_all_errors_are_reported_at_once(hub):
    text = GOOD.replace("port: 1883", "port: x").replace("gt: 3", "gt: warm").replace("to: out", "to: nowhere")
    text = text.replace("file: {path: out.jsonl}", "file: {path: out.jsonl, keep: -1}")
    with pytest.raises(ConfigError) as e:
        hub.config(text)
    assert len(e.value.issues) == 4
    assert str(e.value).count("\n") == 4 and "4 config errors" in str(e.value)


def test_no_pipelines_is_an_error(hub):
    err = errors(hub, "sinks: {}")[0]
    assert err.startswith("pipelines: ") and "no pipelines: add at least one" in err


def test_layers_defaults_yaml_env_set(hub):
    text = GOOD.replace("port: 1883", "port: ${MQTT_PORT:1884}")
    assert hub.config(text).connections["default"]["port"] == 1884  # ${VAR:default}
    assert hub.config(text, env={"MQTT_PORT": "1885"}).connections["default"]["port"] == 1885
    env = {"MQTT_PORT": "1885", "EDGESTREAM_BROKER__PORT": "1886", "EDGESTREAM_MICROPYTHON": "/x"}
    assert hub.config(text, env=env).connections["default"]["port"] == 1886  # env beats the file
    cfg = hub.config(text, env=env, sets=("broker.port=1887", "pipelines.cold_room.processors[0].filter.gt=9"))
    assert cfg.connections["default"]["port"] == 1887  # --set beats env
    assert cfg.pipelines["cold_room"].processors[0].config["gt"] == 9
    assert hub.config(text).connections["default"]["keepalive"] == 30_000  # spec default


def test_overrides_are_validated_and_say_where_they_came_from(hub):
    errs = errors(hub, GOOD, env={"EDGESTREAM_BROKER__PORT": "high"})
    assert errs == ["broker.port: (env EDGESTREAM_BROKER__PORT) expected an integer, got a string ('high')"]
    errs = errors(hub, GOOD, sets=("sinks.out.policy=sometimes",))
    assert errs[0].startswith("sinks.out.policy: (--set) 'sometimes' is not one of 'block', 'drop_oldest'")


def test_interpolation_types_and_escapes():
    env = {"A": "5", "B": "x"}
    assert interpolate("${A}", env) == "5" and interpolate("${C:7}", env) == "7"
    assert interpolate("pre-${B}-${C:}", env) == "pre-x-" and interpolate("$${A}", env) == "${A}"
    assert interpolate("${T:hub/{device}/avg}", env) == "hub/{device}/avg"  # a default may hold {field}
    assert interpolate("a$${B", env) == "a${B" and interpolate("$$", env) == "$$"
    with pytest.raises(KeyError):
        interpolate("${C}", env)


@pytest.mark.parametrize("text, says", [
    ("${BROKER_HOST", "has no closing '}'"),
    ("x-${A:1", "has no closing '}'"),
    ("${}", "names no variable"),
    ("${ A}", "names no variable"),
    ("${1A}", "'1A' is not a variable name"),
    ("${A-b}", "expected '}' or ':default' after A"),
    ("${A:${B}}", "a default cannot hold another ${...} reference"),
])
def test_a_dollar_brace_that_is_not_a_reference_is_an_error(text, says):
    with pytest.raises(InterpolationError) as e:
        interpolate(text, {"A": "1", "B": "2"})
    assert says in str(e.value)


@given(st.text(alphabet="${}:AB_1-x", max_size=12))
def test_interpolation_fails_only_with_its_two_errors(text):
    try:
        out = interpolate(text, {"A": "1"})
    except (KeyError, InterpolationError):
        return
    assert isinstance(out, str)


def test_module_examples():
    import doctest

    from edgestream_hub import config, spec

    for mod in (config, spec):
        assert doctest.testmod(mod).failed == 0


def test_quoted_single_variable_is_typed_mixed_text_is_a_string(hub):
    text = GOOD.replace("port: 1883", 'port: "${P:1999}"').replace("host: 127.0.0.1", 'host: "h-${H:1}"')
    cfg = hub.config(text)
    assert cfg.connections["default"]["port"] == 1999 and cfg.connections["default"]["host"] == "h-1"


def test_paths():
    assert split_path("pipelines.p.processors[0].sql") == ["pipelines", "p", "processors", 0, "sql"]
    d: dict = {"a": [{"b": 1}]}
    assert set_path(d, "a[0].b", 2) == "a[0].b" and d == {"a": [{"b": 2}]}
    for bad in ("", "a..b", "a[x]", "[0"):
        with pytest.raises(ValueError):
            split_path(bad)


@given(st.text(max_size=20))
def test_duration_and_size_parsers_fail_only_with_value_error(text):
    for fn in (parse_duration, parse_size):
        try:
            v = fn(text)
        except ValueError:
            continue
        assert isinstance(v, int) and v >= 0


def test_durations_and_sizes():
    assert [parse_duration(x) for x in ("500ms", "10s", "1.5m", "2h", "1d", "0s")] == [
        500, 10_000, 90_000, 7_200_000, 86_400_000, 0]
    assert [parse_size(x) for x in ("10MB", "1KiB", 5, "7")] == [10_000_000, 1024, 5, 7]


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "edgestream_tools.cli", "hub", *args], capture_output=True,
                          text=True, timeout=60, cwd=cwd)


def test_hub_check_exit_codes(tmp_path):
    (tmp_path / "hub.yaml").write_text(GOOD)
    ok = _cli("check", "-c", str(tmp_path / "hub.yaml"))
    assert ok.returncode == 0 and "ok (1 sources, 1 pipelines, 1 sinks)" in ok.stdout
    (tmp_path / "bad.yaml").write_text(GOOD.replace("gt: 3", "gt: warm").replace("port: 1883", "port: x"))
    bad = _cli("check", "-c", str(tmp_path / "bad.yaml"))
    assert bad.returncode == 2
    assert "2 config errors" in bad.stderr and "pipelines.cold_room.processors[0].filter.gt: line 15" in bad.stderr
    missing = _cli("check", "-c", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "cannot read the config file" in missing.stderr
    over = _cli("check", "-c", str(tmp_path / "hub.yaml"), "--set", "broker.port=x")
    assert over.returncode == 2 and "broker.port: (--set)" in over.stderr


def test_hub_check_imports_no_connector_library(tmp_path):
    (tmp_path / "hub.yaml").write_text(GOOD)
    code = ("import sys; from edgestream_tools.cli import main; rc = main(['hub', 'check', '-c', sys.argv[1]]);"
            "heavy = [m for m in ('paho.mqtt.client', 'prometheus_client', 'serial', 'sqlite3', 'asyncio', 'sqlglot',"
            " 'logging', 'shutil', 'edgestream_hub.checkpoint')"
            " if m in sys.modules]; print('HEAVY', heavy); sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "hub.yaml")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "HEAVY []" in r.stdout, r.stdout + r.stderr


# -- a config file no user meant: refused with a located message, never a crash or a runaway --

HOSTILE_CONFIGS = {
    # name: (file content, what the message must say)
    "latin-1 comment": (GOOD.encode() + b"# temperature in \xb0C\n",
                        "<root>: line 17: byte 0xb0 at column 18 is not UTF-8"),
    "binary": (b"sources: {d: \xff\xfe}\n", "<root>: line 1: byte 0xff at column 14 is not UTF-8"),
    "3000 levels deep": (deep_yaml(3000), "<root>: line 4: nested deeper than 64 levels"),
    "alias bomb": (ALIAS_BOMB, "<root>: line 6: expands to more than 100000 YAML nodes"),
    "alias chain": (b"a0: &a0 [1]\n" + b"".join(b"a%d: &a%d [*a%d]\n" % (i, i, i - 1) for i in range(1, 80)),
                    "<root>: line 64: nested deeper than 64 levels through aliases"),
    "over 1 MiB": (GOOD.encode() + b"#" * (1 << 20) + b"\n", "<root>: the file is larger than 1048576 bytes"),
}


@pytest.mark.parametrize("name", HOSTILE_CONFIGS)
def test_a_hostile_config_file_is_refused_by_check_and_run(tmp_path, name):
    content, says = HOSTILE_CONFIGS[name]
    (tmp_path / "hub.yaml").write_bytes(content)
    for action in ("check", "run"):
        r = _cli(action, "-c", "hub.yaml", cwd=tmp_path)
        assert r.returncode == 2, (action, r.stderr)
        assert r.stderr.startswith(f"edgestream hub {action}: hub.yaml: {says}"), r.stderr
        assert "Traceback" not in r.stderr


def test_limits_hold_for_text_and_overrides_too(hub):
    with pytest.raises(ConfigError, match="nested deeper than 64 levels"):
        hub.config(deep_yaml(100).decode())
    assert errors(hub, GOOD, sets=["broker.host=" + "[" * 5000]) == [
        "broker.host: (--set) nested deeper than 64 levels (a config's limit)"]
    assert not [e for e in errors(hub, deep_yaml(60).decode()) if "nested" in e]  # at the limit: fine


def _duration_fields():
    """(spec, field) of every duration key of every built-in spec."""
    from edgestream_hub import config as c
    from edgestream_hub.registry import KINDS, Registry

    r = Registry()
    r.load_entry_points(paths=[])
    specs = [c.HUB_SPEC, c.MQTT_CONNECTION_SPEC, c.PIPELINE_SPEC, c.STATE_SPEC, c.METRICS_SPEC,
             c.SOURCE_COMMON_SPEC, c.SINK_COMMON_SPEC, *(t.spec for kind in KINDS for t in r.types(kind))]
    out, seen = [], set()
    while specs:
        spec = specs.pop()
        if id(spec) in seen:
            continue
        seen.add(id(spec))
        for f in spec.fields:
            if f.spec is not None:
                specs.append(f.spec)
            if f.type == "duration":
                out.append((spec, f))
    return out


def test_every_duration_is_bounded():
    from edgestream_hub.spec import MAX_DURATION_MS, Checker, format_duration

    fields = _duration_fields()
    assert len(fields) > 20
    for spec, f in fields:
        chk = Checker()
        chk.value(f, "1000000d", f"x.{f.name}")
        assert [i.message for i in chk.issues] == ["'1000000d' is longer than the maximum " + (
            "30d" if f.max is None else format_duration(f.max))], (spec.name, f.name)
        limit = f.max if f.max is not None else MAX_DURATION_MS
        assert limit <= MAX_DURATION_MS * 13  # nothing a timer cannot wait for (threading.TIMEOUT_MAX is ~292 y)
        chk = Checker()
        assert chk.value(f, f"{int(limit)}ms", "x") == limit and not chk.issues


def test_the_longest_durations_run(hub):
    """At the bound, timers, waits and socket timeouts work: a pipeline ticking every 30 days, a sink
    lingering 30 days, a 30-day shutdown timeout and read timeout start, pass records and stop."""
    hub.scripts["s"] = [{"i": 1}]
    e = hub.engine("""
hub: {shutdown_timeout: 30d, watch_interval: 30d, restart_backoff_max: 30d}
sources: {s: {script: {name: s}}, web: {http: {port: 0, read_timeout: 30d}}}
sinks: {out: {memory: {}, batch: {size: 1, linger: 30d}, retry: {initial: 30d, max: 30d}}}
pipelines: {p: {from: [s, web], to: out, tick: 30d, batch: {size: 1, linger: 30d}}}
""")
    from hubtest import wait_for

    assert wait_for(lambda: len(hub.out.get("out", [])) == 1)
    assert e.stop()


def test_check_escapes_control_and_bidi_characters_of_user_text(tmp_path):
    (tmp_path / "hub.yaml").write_text('sources: {"d\\u00e9": {mqtt: {topics: ["a/b"]}}}\n'
                                       'sinks: {"o\\u0000": {stdout: {}}}\n'
                                       'pipelines: {"p\\u202e": {from: "d\\u00e9", to: "o\\u0000"}}\n')
    r = _cli("check", "-c", "hub.yaml", cwd=tmp_path)
    assert r.returncode == 2
    assert "\x00" not in r.stderr and "\u202e" not in r.stderr, repr(r.stderr)
    assert "sinks.o\\x00: line 2:" in r.stderr and "pipelines.p\\u202e" in r.stderr
    assert "d\u00e9" in r.stderr  # printable text stays as it is


def test_printable_escapes_only_what_would_mislead_a_terminal():
    from edgestream_hub.errors import printable

    assert printable("a\x00b\x1b[31mc\u202ed\u2066e\u200ff") == "a\\x00b\\x1b[31mc\\u202ed\\u2066e\\u200ff"
    assert printable("line 1\n    SELECT é\tx") == "line 1\n    SELECT é\tx"  # layout and letters kept
    assert printable("a\nb", keep="") == "a\\nb"


def test_hub_run_log_lines_escape_control_characters():
    import logging

    from edgestream_hub.logs import PrintableFormatter

    rec = logging.LogRecord("edgestream.hub", logging.WARNING, __file__, 1, "waiting for %s to appear",
                            ("in\x1b[2J\u202e.jsonl",), None)
    assert PrintableFormatter("%(message)s").format(rec) == "waiting for in\\x1b[2J\\u202e.jsonl to appear"
