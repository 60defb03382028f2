"""The worker's settings one by one: for each WorkerConfig field, its flag, environment variable and
file key, how a value given as text or in the file is parsed, what it is checked for, and its help.
stream.runtime.settings loads the settings through this table, stream.cli.settings_args makes the
flags from it.
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args

from stream.model.time import parse_duration

# The choices of --guarantee and --runtime, as WorkerConfig types those fields.
Guarantee = Literal["exactly_once", "at_least_once"]
Runtime = Literal["native", "faust"]
GUARANTEES: tuple[Guarantee, ...] = get_args(Guarantee)
RUNTIMES: tuple[Runtime, ...] = get_args(Runtime)

# The environment's names for the settings, and the variable naming the config file.
ENV_PREFIX = "SEGMENTS_"
KAFKA_ENV_PREFIX = "SEGMENTS_KAFKA_"
CONFIG_ENV = "SEGMENTS_CONFIG"

# Kafka's own rule for topic names; checked here so a typo fails at start-up with the others.
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")
# A DNS host name: dot-separated labels of letters, digits and inner hyphens (RFC 1123).
_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")
# confluent-kafka's Consumer.consume() refuses more than this many messages per call.
_MAX_BATCH = 1_000_000


# ---- checks of one parsed value: a problem description, or None -----------------------------------

def _positive(value: int) -> str | None:
    return None if value > 0 else f"must be positive, got {value}"


# The largest input message a worker takes: one it re-publishes (a routed event) or dead-letters
# whole must fit its producers' records (stream.runtime.topics: DEAD_LETTER_BYTES less DEAD_LETTER_ROOM).
MAX_MESSAGE_BYTES_LIMIT = (16 << 20) - (64 << 10)


def _message_bytes(value: int) -> str | None:
    if value > MAX_MESSAGE_BYTES_LIMIT:
        return f"must be at most {MAX_MESSAGE_BYTES_LIMIT} (16 MiB less 64 KiB), got {value}"
    return _positive(value)


def _at_least_a_minute(value: int) -> str | None:
    # Below that, topics roll a segment file per few records and the log cleaner never rests.
    return None if value >= 60_000 else f"must be at least 60000 (one minute), got {value}"


def _disable_with_zero(value: int) -> str | None:
    return None if value >= 0 else f"must be positive (or 0 to disable), got {value}"


def _port(value: int) -> str | None:
    return None if 0 <= value <= 65535 else f"must be a port number 1..65535 (or 0 to disable), got {value}"


def _replication(value: int) -> str | None:
    return None if value >= 1 or value == -1 else f"must be positive, or -1 for the broker default, got {value}"


def _batch(value: int) -> str | None:
    return None if 1 <= value <= _MAX_BATCH else f"must be between 1 and {_MAX_BATCH}, got {value}"


def _not_empty(value: str) -> str | None:
    return None if value else "must not be empty"


def _topic(value: str) -> str | None:
    if not value:
        return "topic name must not be empty"
    if value in (".", "..") or not _TOPIC_NAME.fullmatch(value):
        return f"invalid topic name {value!r}: use 1-249 of the characters a-z A-Z 0-9 . _ -, not just . or .."
    return None


def _topic_list(values: tuple[str, ...]) -> str | None:
    problems = [p for p in map(_topic, values) if p]
    repeated = sorted({t for t in values if values.count(t) > 1})
    if repeated:
        problems.append("lists " + ", ".join(map(repr, repeated)) + " more than once")
    return "; ".join(problems) or None


def _guarantee(value: str) -> str | None:
    return None if value in GUARANTEES else f"must be one of {', '.join(GUARANTEES)}, got {value!r}"


def _host(value: str) -> str | None:
    try:
        ipaddress.ip_address(value)
        return None
    except ValueError:
        pass
    if _HOSTNAME.fullmatch(value):
        return None
    return f"must be an IP address (such as 0.0.0.0, 127.0.0.1 or ::) or a host name, got {value!r}"


def _runtime(value: str) -> str | None:
    return None if value in RUNTIMES else f"must be one of {', '.join(RUNTIMES)}, got {value!r}"


# ---- the fields' kinds ------------------------------------------------------------------------------

def _parse_int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"expected an integer, got {text!r}") from None


def parse_millis(text: str) -> int:
    """Milliseconds: a whole number, or a duration with its unit (6h, 90m, 45s, 7d), which is how
    people think of a skew bound or a retention."""
    try:
        return int(text.strip())
    except ValueError:
        pass
    try:
        return parse_duration(text) // 1000
    except ValueError:
        raise ValueError(f"expected milliseconds or a duration such as 6h, 90m, 45s or 7d, got {text!r}") from None


def _millis_from_file(value: Any) -> int:
    return parse_millis(value) if isinstance(value, str) else _int_from_file(value)


def _parse_topics(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(","))


def _int_from_file(value: Any) -> int:
    # YAML's true/false are ints to Python; as a count or a port they are a mistake.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {yaml_type(value)} {value!r}")
    return value


def _str_from_file(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {yaml_type(value)} {value!r} (quote it if it is meant as text)")
    return value.strip()


def _topics_from_file(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return _parse_topics(value)
    if isinstance(value, list) and all(isinstance(t, str) for t in value):
        return tuple(t.strip() for t in value)
    raise ValueError(f"expected a list of topic names, got {yaml_type(value)} {value!r}")


def yaml_type(value: Any) -> str:
    """A YAML value's type as a problem names it (the loader's messages about the file use it too)."""
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "list",
            dict: "mapping", type(None): "null"}.get(type(value), type(value).__name__)


@dataclass(frozen=True)
class _Kind:
    from_text: Callable[[str], Any]     # a flag's or environment variable's text -> value
    from_file: Callable[[Any], Any]     # a YAML value -> value
    metavar: str


_STR = _Kind(str.strip, _str_from_file, "NAME")
_INT = _Kind(_parse_int, _int_from_file, "N")
_MILLIS = _Kind(parse_millis, _millis_from_file, "MS")
_TOPICS = _Kind(_parse_topics, _topics_from_file, "TOPIC[,TOPIC...]")
# Paths stay text until loading is done, so an empty one can still be told from ".".
_PATH = _Kind(str.strip, _str_from_file, "DIR")


@dataclass(frozen=True)
class Option:
    """How a WorkerConfig field is given: as text (a flag, a variable), in the file, and its help."""

    kind: _Kind
    help: str
    check: Callable[[Any], str | None]
    flag: str | None = None          # when not --<field-name-with-dashes>
    metavar: str | None = None       # when not the kind's
    nullable: bool = False           # the file may give null
    zero_disables: bool = False      # 0 means None
    choices: tuple[str, ...] | None = None

    @property
    def is_path(self) -> bool:
        """A path: loading makes a Path of its text once every source is read."""
        return self.kind is _PATH


# ---- the table: one option per WorkerConfig field but the passthrough `kafka` ---------------------

OPTIONS: dict[str, Option] = {
    "bootstrap_servers": Option(_STR, "Kafka bootstrap servers, host:port[,host:port...]; "
                                      "none: start the embedded broker", _not_empty, metavar="HOSTS", nullable=True),
    "input_topics": Option(_TOPICS, "topics of shop events keyed by customer id (murmur2 partitioner), "
                                    "comma-separated", _topic_list),
    "routed_topics": Option(_TOPICS, "topics of shop events keyed otherwise (orders by order id), re-keyed "
                                     "through the repartition topic; comma-separated", _topic_list),
    "changes_topic": Option(_STR, "topic the segment changes are published to", _topic, metavar="TOPIC"),
    "membership_topic": Option(_STR, "compacted topic of current segment membership", _topic, metavar="TOPIC"),
    "dead_letter_topic": Option(_STR, "topic for events that cannot be applied", _topic, metavar="TOPIC"),
    "definitions_topic": Option(_STR, "compacted topic of segment definitions changed while running (key: "
                                      "segment name; they override the segments file); none: the file only",
                                _topic, metavar="TOPIC", nullable=True),
    "erasure_max_lag_ms": Option(_MILLIS, "longest an erased customer's records stay in the compacted topics the "
                                       "worker creates (changelog, membership; their segment.ms and "
                                       "max.compaction.lag.ms), and past retention in the others",
                                 _at_least_a_minute, metavar="MS"),
    "changes_retention_ms": Option(_MILLIS, "retention.ms of the changes topic when the worker creates it "
                                         "(its records keep an erased customer's id this long)",
                                   _at_least_a_minute, metavar="MS"),
    "dead_letter_retention_ms": Option(_MILLIS, "retention.ms of the dead-letter topic when the worker creates it "
                                             "(raw input: personal data, kept this long)",
                                       _at_least_a_minute, metavar="MS"),
    "group_id": Option(_STR, "consumer group of the workers", _not_empty, metavar="GROUP"),
    "instance_id": Option(_STR, "stable id of this worker, such as the StatefulSet pod name; "
                                "none: derive one and keep it in the state dir", _not_empty, metavar="ID",
                          nullable=True),
    "state_dir": Option(_PATH, "directory of the worker's local state", _not_empty),
    "guarantee": Option(_STR, "processing guarantee", _guarantee, choices=GUARANTEES),
    "segments_file": Option(_PATH, "segment definitions (YAML); none: the built-in catalog", _not_empty,
                            flag="--segments", metavar="FILE", nullable=True),
    "partitions": Option(_INT, "partitions of the topics the worker creates", _positive),
    "replication_factor": Option(_INT, "replication factor of the topics the worker creates; "
                                       "-1: the broker's default", _replication),
    "batch_size": Option(_INT, "most messages taken per consume call", _batch),
    "commit_interval_ms": Option(_INT, "milliseconds of input per commit of output, state and offsets, "
                                       "counted from its first message", _positive),
    "idle_advance_ms": Option(_INT, "advance an idle partition's stream time by the wall clock after this "
                                    "many milliseconds without input; 0: never", _disable_with_zero,
                              nullable=True, zero_disables=True),
    "max_message_bytes": Option(_INT, "larger input messages go to the dead-letter topic", _message_bytes,
                                metavar="BYTES"),
    "max_future_skew_ms": Option(_MILLIS, "an event whose occurred_at is more than this many milliseconds ahead of "
                                       "the wall clock goes to the dead-letter topic (it would move stream time "
                                       "past every timer); 0: no bound", _disable_with_zero, metavar="MS",
                                 nullable=True, zero_disables=True),
    "metrics_port": Option(_INT, "port of the Prometheus metrics endpoint; 0: none", _port, metavar="PORT",
                           nullable=True, zero_disables=True),
    "session_timeout_ms": Option(_INT, "consumer group session timeout in milliseconds", _positive),
    "max_poll_interval_ms": Option(_INT, "most milliseconds between polls before the group drops the worker; "
                                         "at least the session timeout", _positive),
    "runtime": Option(_STR, "what runs the engine: native (confluent-kafka) or faust (a faust-streaming app, "
                            "which talks to Kafka through aiokafka)", _runtime, choices=RUNTIMES),
    "http_host": Option(_STR, "address the HTTP endpoint (--metrics-port) binds: 0.0.0.0 all IPv4 interfaces, "
                              "127.0.0.1 this machine only, :: all IPv6", _host, metavar="ADDRESS"),
    "http_token_file": Option(_PATH, "file holding the bearer token that the personal-data HTTP routes "
                                     "(/customers, /segments/<name>/members, /definitions) require; none: "
                                     "those routes are off", _not_empty, metavar="FILE", nullable=True),
}


def flag_of(name: str) -> str:
    """The command-line flag of a WorkerConfig field."""
    if name == "kafka":
        return "-X"
    return OPTIONS[name].flag or "--" + name.replace("_", "-")


def env_of(name: str) -> str:
    """The environment variable of a WorkerConfig field (for `kafka`, the prefix of one per key)."""
    return KAFKA_ENV_PREFIX + "<KEY>" if name == "kafka" else ENV_PREFIX + name.upper()


def shown(value: Any) -> str:
    """A default as the help and the docs show it."""
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)
