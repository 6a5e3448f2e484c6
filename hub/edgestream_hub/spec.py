"""Config specs: one ``Spec`` per component drives parsing, validation and the docs.

A spec lists typed ``Field``s. ``Checker.parse(spec, value, path)`` returns
the value with defaults filled in and durations/sizes converted to integers
(milliseconds/bytes), and records every problem as a ``ConfigIssue`` with
its path and YAML line instead of stopping at the first one. ``Spec.markdown()``
renders the reference that ``docs/config-reference.md`` is generated from.

A spec's ``check`` runs after its fields parsed cleanly; it refuses every value
the component's factory would refuse (``hub check`` and ``hub run`` share it,
so ``check`` passes exactly what ``run`` can build). An exception other than a
``ConfigError`` escaping a check (a value it did not foresee) is recorded as an
issue at the spec's path, so no config can crash ``check`` or a reload. It may look at the rest of
the config through the ``Checker``: ``base_dir``, ``registry`` and the
``sections`` parsed before it (``connections``). It never opens a socket and
never creates a file.

    >>> s = Spec("demo", "A demo.", [Field("every", "duration", "How often.", default="1s")])
    >>> Checker().parse(s, {"every": "500ms"}, "x")
    {'every': 500}
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Callable

from edgestream_hub.errors import ConfigError, ConfigIssue


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_DURATION_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
#: the longest duration a key takes unless its ``Field.max`` says otherwise: every timer, wait and
#: socket timeout the hub sets works up to it (a "1000000d" overflows them)
MAX_DURATION_MS = 30 * 86_400_000
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB)?\s*$")
_SIZE_B = {None: 1, "B": 1, "KB": 1000, "MB": 10**6, "GB": 10**9, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")


def parse_duration(text: Any) -> int:
    """``"500ms"``, ``"10s"``, ``"1.5m"``, ``"2h"``, ``"1d"`` -> milliseconds. Raises ValueError."""
    if not isinstance(text, str):
        raise ValueError(f"expected a duration string like \"500ms\" or \"10s\", got {text!r}")
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"bad duration {text!r} (use a number and ms, s, m, h or d: \"500ms\", \"10s\")")
    return int(round(float(m.group(1)) * _DURATION_MS[m.group(2)]))


def format_duration(ms: float) -> str:
    """The shortest exact duration string: ``format_duration(2_592_000_000) == "30d"``."""
    for unit in ("d", "h", "m", "s"):
        if ms and ms % _DURATION_MS[unit] == 0:
            return f"{int(ms // _DURATION_MS[unit])}{unit}"
    return f"{ms:g}ms"


def parse_size(text: Any) -> int:
    """``"10MB"``, ``"512KiB"``, ``1000`` -> bytes. Raises ValueError."""
    if isinstance(text, int) and not isinstance(text, bool) and text >= 0:
        return text
    m = _SIZE.match(text) if isinstance(text, str) else None
    if not m:
        raise ValueError(f"bad size {text!r} (use bytes or a number with B, KB, MB, GB, KiB, MiB, GiB)")
    return int(float(m.group(1)) * _SIZE_B[m.group(2)])


def parse_host(text: Any) -> str:
    """A DNS name or an IP address (not resolved: ``check`` never touches the network). Raises ValueError.

    >>> parse_host("broker.local"), parse_host("::1")
    ('broker.local', '::1')
    """
    if not isinstance(text, str) or not text:
        raise ValueError(f"expected a host name or an IP address, got {_kind(text)}")
    try:
        ipaddress.ip_address(text)
        return text
    except ValueError:
        pass
    name = text[:-1] if text.endswith(".") else text
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.match(part) for part in labels):
        raise ValueError(f"{text!r} is not a host name or an IP address (a name is dot-separated labels of "
                         "letters, digits, '-' and '_'; no scheme, port or path)")
    if labels[-1].isdigit():
        raise ValueError(f"{text!r} is not a valid IP address")
    return text


def parse_hostport(text: Any) -> tuple[str, int]:
    """``"127.0.0.1:9108"``, ``"[::1]:9108"``, ``":9108"`` (127.0.0.1) -> (host, port). Raises ValueError.

    >>> parse_hostport("localhost:9108"), parse_hostport("[::1]:0")
    (('localhost', 9108), ('::1', 0))
    """
    if not isinstance(text, str):
        raise ValueError(f"expected \"host:port\" (e.g. \"127.0.0.1:9108\"), got {_kind(text)}")
    host, sep, port = text.rpartition(":")
    if not sep or (":" in host and not (host.startswith("[") and host.endswith("]"))):
        raise ValueError(f"{text!r} is not host:port (e.g. \"127.0.0.1:9108\"; an IPv6 host goes in brackets: "
                         "\"[::1]:9108\")")
    if not port.isdigit() or not port.isascii():
        raise ValueError(f"port {port!r} in {text!r} is not a number")
    if not 0 <= int(port) <= 65535:
        raise ValueError(f"port {int(port)} in {text!r} is out of range (0-65535)")
    if host.startswith("["):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"[{host}] in {text!r} is not an IPv6 address") from None
        return host, int(port)
    return (parse_host(host) if host else "127.0.0.1"), int(port)


class Plain:
    """A record compared and shown by the attributes its class lists in ``_fields`` (what a dataclass gives;
    plain classes because ``hub check`` then imports no ``dataclasses`` and ``inspect``, ~5 ms of its start)."""

    _fields: tuple[str, ...] = ()

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, k) for k in self._fields)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Plain) and other.__class__ is self.__class__ and self._values() == other._values()

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={getattr(self, k)!r}' for k in self._fields)})"


class Field(Plain):
    """One config key. ``type`` is one of: str, int, float, bool, duration, size,
    host (a DNS name or IP address), hostport (``host:port``), any, object (with
    ``spec``), list[T], map[T] (T a scalar type or ``object``)."""

    _fields = ("name", "type", "doc", "default", "spec", "choices", "min", "max", "ref", "name_like", "one_or_list",
               "secret")

    def __init__(self, name: str, type: str, doc: str, default: Any = REQUIRED, spec: "Spec | None" = None,
                 choices: tuple[Any, ...] = (), min: float | None = None, max: float | None = None,
                 ref: str | None = None, name_like: bool = False, one_or_list: bool = False,
                 secret: bool = False) -> None:
        self.name = name
        self.type = type
        self.doc = doc
        self.default = default
        self.spec = spec
        self.choices = choices
        self.min = min
        self.max = max
        self.ref = ref  # top-level section the value names ("sinks", "sources", "connections")
        self.name_like = name_like  # str must be 1-64 chars of [A-Za-z0-9_.-]
        self.one_or_list = one_or_list  # list[T] also accepts a single T
        self.secret = secret  # not shown in logs or diffs

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


class Spec(Plain):
    """The spec of one component or section: its fields, docs and cross-field checks."""

    _fields = ("name", "doc", "fields", "shorthand", "example", "check", "open")

    def __init__(self, name: str, doc: str, fields: list[Field], shorthand: str | None = None,
                 example: str | None = None, check: Callable[[dict[str, Any], "Checker", str], None] | None = None,
                 open: bool = False) -> None:
        self.name = name
        self.doc = doc
        self.fields = fields
        self.shorthand = shorthand  # a scalar value fills this field: `sql: "SELECT ..."`
        self.example = example  # YAML shown in the docs
        self.check = check
        self.open = open  # extra keys allowed (passed through untouched)
        self.by_name: dict[str, Field] = {f.name: f for f in fields}
        if len(self.by_name) != len(fields):
            raise ValueError(f"spec {name!r}: duplicate field names")

    def defaults(self) -> dict[str, Any]:
        """The parsed value of an empty mapping (raises ConfigError if a field is required)."""
        return Checker().parse_or_raise(self, {}, self.name)

    def markdown(self, heading: str = "###") -> str:
        """Reference docs for this spec: doc, a table of keys (nested objects flattened), example."""
        out = [f"{heading} `{self.name}`", "", self.doc.strip(), ""]
        if self.shorthand:
            out += [f"Short form: a plain value sets `{self.shorthand}`.", ""]
        rows: list[str] = []
        _rows(self, "", rows)
        if rows:
            out += ["| key | type | default | description |", "| --- | --- | --- | --- |", *rows, ""]
        if self.example:
            # A part of a hub.yaml: the docs test completes it into a whole config and checks that.
            out += ["<!-- fragment -->", "```yaml", self.example.strip("\n"), "```", ""]
        return "\n".join(out)


def _fmt_default(f: Field) -> str:
    if f.required:
        return "**required**"
    if f.default is None:
        return "none"
    if isinstance(f.default, bool):
        return "true" if f.default else "false"
    if isinstance(f.default, str):
        return f'`"{f.default}"`'
    return f"`{f.default!r}`" if not isinstance(f.default, (list, dict)) else f"`{_yaml_flow(f.default)}`"


def _yaml_flow(v: Any) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(_yaml_flow(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_yaml_flow(x)}" for k, x in v.items()) + "}"
    return repr(v) if not isinstance(v, str) else f'"{v}"'


def _rows(spec: Spec, prefix: str, rows: list[str]) -> None:
    for f in spec.fields:
        t = f.type
        if f.choices:
            t += ": " + " \\| ".join(f"`{c}`" for c in f.choices)
        if f.ref:
            t += f" (name in `{f.ref}`)"
        if f.one_or_list:
            t += " (or one)"
        doc = f.doc.replace("|", "\\|").replace("\n", " ")
        if f.min is not None:
            doc += f" Minimum {f.min:g}{' ms' if f.type == 'duration' else ''}."
        if f.max is not None and f.type == "duration":
            doc += f" Maximum {format_duration(f.max)}."
        rows.append(f"| `{prefix}{f.name}` | {t} | {_fmt_default(f)} | {doc} |")
        if f.spec is not None and f.type in ("object", "map[object]", "list[object]"):
            sub = prefix + f.name + ("." if f.type == "object" else "[]." if f.type.startswith("list") else ".<name>.")
            _rows(f.spec, sub, rows)


class Checker:
    """Collects every config issue with its path and YAML line; ``raise_if_any`` raises them together."""

    def __init__(self, lines: dict[str, int] | None = None, origins: dict[str, str] | None = None, *,
                 base_dir: str = ".", registry: Any = None) -> None:
        self.lines = lines or {}
        self.origins = origins or {}
        self.issues: list[ConfigIssue] = []
        self.refs: list[tuple[str, str, str]] = []  # (path, section, name)
        self.base_dir = base_dir  # relative file names in the config are resolved against this
        self.registry = registry  # the plugin registry (SQL checks use its functions); None in unit checks
        self.sections: dict[str, Any] = {}  # sections parsed so far, for checks that look across them
        self.reported: set[str] = set()  # paths whose value was refused before parsing (YAML, ${VAR})

    def add_reported(self, issues: list[ConfigIssue]) -> None:
        """Issues found before parsing; their values are not checked again (one error per cause)."""
        self.issues.extend(issues)
        self.reported.update(i.path for i in issues)

    # -- reporting --
    def line_of(self, path: str) -> int | None:
        p = path
        while p:
            if p in self.lines:
                return self.lines[p]
            p = _parent(p)
        return self.lines.get("")

    def issue(self, path: str, message: str) -> None:
        origin = self.origins.get(path)
        if origin is None:
            for p, o in self.origins.items():
                if path.startswith(p + ".") or path.startswith(p + "["):
                    origin = o
                    break
        line = None if origin else self.line_of(path)
        self.issues.append(ConfigIssue(path, message, line, origin))

    def raise_if_any(self, source: str | None = None) -> None:
        if self.issues:
            raise ConfigError(self.issues, source)

    # -- parsing --
    def parse_or_raise(self, spec: Spec, value: Any, path: str) -> dict[str, Any]:
        out = self.parse(spec, value, path)
        self.raise_if_any()
        if out is None:  # not reached: parse gives up only after recording an issue
            raise ConfigError(f"{path}: unusable {spec.name} settings")
        return out

    def parse(self, spec: Spec, value: Any, path: str) -> dict[str, Any] | None:
        """Parse ``value`` against ``spec``; problems go to ``self.issues``; None if unusable."""
        if value is None:
            value = {}
        if not isinstance(value, dict):
            if spec.shorthand is not None and not isinstance(value, list):
                value = {spec.shorthand: value}
            else:
                self.issue(path, f"expected a mapping of {spec.name} settings, got {_kind(value)}")
                return None
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                self.issue(path, f"key {k!r} is not a string")
                continue
            f = spec.by_name.get(k)
            sub = _join(path, k)
            if f is None:
                if spec.open:
                    out[k] = v
                    continue
                hint = _close_match(k, spec.by_name)
                self.issue(sub, f"unknown key {k!r} in {spec.name}" + (f" (did you mean {hint!r}?)" if hint else "")
                           + f"; known keys: {', '.join(sorted(spec.by_name))}")
                continue
            out[k] = self.value(f, v, sub)
        for f in spec.fields:
            if f.name not in value:
                if f.required:
                    self.issue(_join(path, f.name), f"missing required key {f.name!r} ({f.doc.split('.')[0]})")
                else:
                    out[f.name] = self.value(f, f.default, _join(path, f.name), default=True)
        if spec.check is not None and not any(i.path.startswith(path) for i in self.issues):
            try:
                spec.check(out, self, path)
            except ConfigError:
                raise
            except Exception as e:  # a check that fails on a value it did not foresee: still a located refusal
                self.issue(path, f"cannot be checked: {type(e).__name__}: {e}")
        return out

    def value(self, f: Field, v: Any, path: str, default: bool = False) -> Any:
        if path in self.reported or (v is None and (f.default is None or default)):
            return None
        t = f.type
        if t.startswith("list[") or t.startswith("map["):
            inner = Field(f.name, t[t.index("[") + 1:-1], f.doc, spec=f.spec, choices=f.choices, min=f.min,
                          max=f.max, ref=f.ref, name_like=f.name_like)
            if t.startswith("list["):
                if f.one_or_list and not isinstance(v, list):
                    v = [v]
                if not isinstance(v, list):
                    self.issue(path, f"expected a list, got {_kind(v)}")
                    return None
                return [self.value(inner, x, f"{path}[{i}]") for i, x in enumerate(v)]
            if not isinstance(v, dict):
                self.issue(path, f"expected a mapping, got {_kind(v)}")
                return None
            out = {}
            for k, x in v.items():
                if not isinstance(k, str) or not _NAME.match(k):
                    self.issue(_join(path, str(k)), f"name {k!r} must be 1-64 characters of [A-Za-z0-9_.-]")
                    continue
                out[k] = self.value(inner, x, _join(path, k))
            return out
        try:
            r = _scalar(f, v)
        except ValueError as e:
            self.issue(path, str(e))
            return None
        if t == "object":
            return self.parse(f.spec, v, path) if f.spec else v
        if f.choices and r not in f.choices:
            self.issue(path, f"{r!r} is not one of {', '.join(map(repr, f.choices))}")
        if f.min is not None and isinstance(r, (int, float)) and r < f.min:
            self.issue(path, f"{v!r} is below the minimum {f.min:g}")
        if t == "duration":
            longest = f.max if f.max is not None else MAX_DURATION_MS
            if r > longest:
                self.issue(path, f"{v!r} is longer than the maximum {format_duration(longest)}")
        elif f.max is not None and isinstance(r, (int, float)) and r > f.max:
            self.issue(path, f"{v!r} is above the maximum {f.max:g}")
        if f.name_like and isinstance(r, str) and not _NAME.match(r):
            self.issue(path, f"{r!r} must be 1-64 characters of [A-Za-z0-9_.-]")
        if f.ref and isinstance(r, str):
            self.refs.append((path, f.ref, r))
        return r


def _scalar(f: Field, v: Any) -> Any:
    t = f.type
    if t == "str":
        if isinstance(v, bool) or not isinstance(v, (str, int, float)):
            raise ValueError(f"expected a string, got {_kind(v)}")
        return str(v)
    if t == "int":
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"expected an integer, got {_kind(v)}")
        return v
    if t == "float":
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"expected a number, got {_kind(v)}")
        return float(v)
    if t == "bool":
        if not isinstance(v, bool):
            raise ValueError(f"expected true or false, got {_kind(v)}")
        return v
    if t == "duration":
        return parse_duration(v)
    if t == "size":
        return parse_size(v)
    if t == "host":
        return parse_host(str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v)
    if t == "hostport":
        parse_hostport(v)
        return v
    if t in ("any", "object"):
        return v
    raise ValueError(f"spec bug: unknown field type {t!r}")


def _kind(v: Any) -> str:
    if v is None:
        return "nothing (null)"
    if isinstance(v, bool):
        return f"a boolean ({str(v).lower()})"
    if isinstance(v, dict):
        return "a mapping"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, str):
        return f"a string ({v!r})" if len(v) < 40 else "a string"
    return f"{type(v).__name__} ({v!r})"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _parent(path: str) -> str:
    if path.endswith("]"):
        return path[:path.rindex("[")]
    i = path.rfind(".")
    return path[:i] if i >= 0 else ""


def _close_match(k: str, names: dict[str, Any]) -> str | None:
    import difflib

    m = difflib.get_close_matches(k, list(names), n=1, cutoff=0.6)
    return m[0] if m else None
