# MQTT topic layout, the single definition both tiers use.
#
#   <prefix>/<device>/data        raw readings           agent -> hub
#   <prefix>/<device>/results     window results         agent -> hub
#   <prefix>/<device>/status      "online"/"offline",    agent -> hub (retained;
#                                 the offline one is the last will)
#   <prefix>/<device>/metrics     agent health           agent -> hub
#   <prefix>/<device>/config      new agent config       hub -> agent (retained)
#   <prefix>/<device>/config/ack  ack / nack of a config agent -> hub
#   <prefix>/<device>/time        time reference         hub -> agent
#
# Device ids and the prefix are checked here, so a topic can never contain a
# wildcard or an extra level by accident.

from edgestream_shared.errors import WireError

DEFAULT_PREFIX = "edgestream"
KINDS = ("data", "results", "status", "metrics", "config", "config/ack", "time")
MAX_ID_LEN = 64


def check_id(name, what="device id"):
    # A device id / sensor / window name: 1..64 chars of [A-Za-z0-9_.-].
    # Kept strict because these names end up in topics, JSON and file names.
    if not isinstance(name, str) or not 0 < len(name) <= MAX_ID_LEN:
        raise WireError("%s: expected 1..%d characters" % (what, MAX_ID_LEN))
    for c in name:
        if not (c.isalpha() or c.isdigit() or c in "_.-") or ord(c) > 127:
            raise WireError("%s: %r has a character outside [A-Za-z0-9_.-]" % (what, name))
    return name


def check_prefix(prefix):
    # A prefix may have several levels ("plant/a/edgestream") but no wildcard.
    if not isinstance(prefix, str) or not prefix or len(prefix) > 128:
        raise WireError("topic prefix: expected a non-empty string")
    for level in prefix.split("/"):
        if not level or "+" in level or "#" in level:
            raise WireError("topic prefix: %r has an empty level or a wildcard" % prefix)
    return prefix


class Topics:
    # Topics of one device (agent side) or of all devices (hub side, with
    # device "+", which only the `subscription` helper produces).

    def __init__(self, device, prefix=DEFAULT_PREFIX):
        self.prefix = check_prefix(prefix)
        self.device = check_id(device)
        base = prefix + "/" + device + "/"
        self.data = base + "data"
        self.results = base + "results"
        self.status = base + "status"
        self.metrics = base + "metrics"
        self.config = base + "config"
        self.config_ack = base + "config/ack"
        self.time = base + "time"


def subscription(kind, prefix=DEFAULT_PREFIX, device="+"):
    # The topic filter the hub subscribes to for one kind, e.g.
    # subscription("results") == "edgestream/+/results".
    if kind not in KINDS:
        raise WireError("topic kind: %r is not one of %s" % (kind, ", ".join(KINDS)))
    if device != "+":
        check_id(device)
    return check_prefix(prefix) + "/" + device + "/" + kind


def parse(topic, prefix=DEFAULT_PREFIX):
    # "edgestream/dev-1/config/ack" -> ("dev-1", "config/ack").
    # Raises WireError for a topic outside the layout.
    head = check_prefix(prefix) + "/"
    if not isinstance(topic, str) or not topic.startswith(head):
        raise WireError("topic %r: not under prefix %r" % (topic, prefix))
    rest = topic[len(head):]
    i = rest.find("/")
    if i <= 0:
        raise WireError("topic %r: no device level" % topic)
    device, kind = rest[:i], rest[i + 1:]
    check_id(device)
    if kind not in KINDS:
        raise WireError("topic %r: unknown kind %r" % (topic, kind))
    return device, kind
