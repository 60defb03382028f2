"""Configuration of `segments worker`: command-line flags > environment > YAML file > defaults.

The flags themselves are the command's (stream.cli.settings_args adds them and hands their values
here as Flags); this module defines the settings, reads the environment and the file, and checks.
Every WorkerConfig field `name` has a flag (`--name-with-dashes`; `--segments` for segments_file,
`-X key=value` for the librdkafka passthrough `kafka`), an environment variable `SEGMENTS_NAME`
(`SEGMENTS_KAFKA_<KEY>` per passthrough key) and a key `name` in the file given by `--config` or
SEGMENTS_CONFIG (passthrough keys under a `kafka:` mapping). Passthrough maps merge key by key in
the same order. Relative paths are taken relative to the working directory, wherever they come from.

An environment variable that is empty (or only whitespace) counts as unset: deployment templates
render absent values as empty strings, and `SEGMENTS_GROUP_ID=` should not mean a group named "".
A flag given an empty value is an error instead, since on a command line it is nearly always a
shell variable that was never set.

Every value given anywhere is checked, also one that a higher source overrides, and all problems
are reported together in one ConfigError.
"""
from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, get_args

from stream.errors import Problems
from stream.model.time import parse_duration
from stream.rules.bounded_yaml import CONFIG_FILE, DocumentError, read_file

Guarantee = Literal["exactly_once", "at_least_once"]
Runtime = Literal["native", "faust"]
GUARANTEES: tuple[Guarantee, ...] = get_args(Guarantee)
RUNTIMES: tuple[Runtime, ...] = get_args(Runtime)


@dataclass(frozen=True)
class WorkerConfig:
    bootstrap_servers: str | None = None          # None: start the embedded broker
    # librdkafka settings passed through; read-only, as the rest of the frozen settings
    kafka: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    input_topics: tuple[str, ...] = ("shop-events",)   # keyed by customer id (murmur2 partitioner)
    routed_topics: tuple[str, ...] = ()           # keyed otherwise: re-keyed through the repartition topic
    changes_topic: str = "segment-changes"
    membership_topic: str = "segment-membership"
    dead_letter_topic: str = "segment-dead-letters"
    definitions_topic: str | None = "segment-definitions"   # None: the segments file only
    # How long an erased customer's records may stay in the compacted topics (changelog, membership)
    # and, beyond their retention, in the others: segment.ms and max.compaction.lag.ms of the topics
    # the worker creates (README, "Erasure").
    erasure_max_lag_ms: int = 24 * 3600 * 1000
    changes_retention_ms: int = 7 * 24 * 3600 * 1000       # retention.ms of the changes topic
    dead_letter_retention_ms: int = 7 * 24 * 3600 * 1000   # retention.ms of the dead letters (raw input)
    group_id: str = "segments"
    instance_id: str | None = None                # None: derive one persisted in the state dir
    state_dir: Path = Path("state")
    guarantee: Guarantee = "exactly_once"
    segments_file: Path | None = None             # None: the built-in catalog
    partitions: int = 8                           # for topics the worker creates
    replication_factor: int = 1                   # -1: the broker's default
    batch_size: int = 2000                        # max messages per consume
    commit_interval_ms: int = 100
    idle_advance_ms: int | None = 1000            # None: an idle partition's stream time stays put
    max_message_bytes: int = 1048576              # larger messages go to dead letters
    max_future_skew_ms: int | None = 21600000     # events further ahead of the clock go to dead letters; None: no bound
    metrics_port: int | None = 9308               # None: no metrics endpoint
    session_timeout_ms: int = 10000
    max_poll_interval_ms: int = 60000
    runtime: Runtime = "native"                   # "faust": the same product as a Faust app (stream.faust_runtime.app)
    http_host: str = "0.0.0.0"                    # bind address of --metrics-port (probes must reach it)
    http_token_file: Path | None = None           # None: the personal-data HTTP routes are off

    def __post_init__(self) -> None:
        # frozen= stops assignment, not a change inside the passthrough map: a read-only copy
        object.__setattr__(self, "kafka", MappingProxyType(dict(self.kafka)))

    @property
    def exactly_once(self) -> bool:
        return self.guarantee == "exactly_once"

    @property
    def changelog_topic(self) -> str:
        return f"{self.group_id}-state-changelog"

    @property
    def repartition_topic(self) -> str:
        return f"{self.group_id}-repartition"

    @property
    def keyed_topics(self) -> tuple[str, ...]:
        """The topics whose partition p feeds the engine of partition p."""
        return self.input_topics + ((self.repartition_topic,) if self.routed_topics else ())

    def __repr__(self) -> str:
        # The generated repr would show passwords to anything that logs or prints a config.
        return "WorkerConfig(" + ", ".join(f"{k}={v!r}" for k, v in self.describe().items()) + ")"

    def describe(self) -> dict[str, Any]:
        """The configuration as plain JSON-able data, safe to log: secret passthrough values masked."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "kafka":
                value = {k: "***" if is_secret_key(k) else v for k, v in sorted(value.items())}
            elif isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


class ConfigError(Problems):
    """Every problem found in the worker's configuration, each naming the flag, variable or file key."""

    heading = "invalid worker configuration"


_SECRET_WORDS = ("password", "secret", "sasl.jaas", "token")
# Secrets whose names contain none of the words: a PEM private key, and the OAUTHBEARER config
# string, which carries client secrets or extension tokens inline.
_SECRET_KEYS = frozenset({"ssl.key.pem", "sasl.oauthbearer.config"})


def is_secret_key(key: str) -> bool:
    """Whether a librdkafka property holds a secret that must not be logged."""
    key = key.lower()
    return key in _SECRET_KEYS or any(word in key for word in _SECRET_WORDS)


# librdkafka properties the worker sets itself; a passthrough value would silently break its
# guarantees (offsets, transactions, group membership) or contradict a dedicated setting.
OWNED_KAFKA_KEYS: dict[str, str] = {
    "bootstrap.servers": "use --bootstrap-servers / SEGMENTS_BOOTSTRAP_SERVERS",
    "group.id": "use --group-id / SEGMENTS_GROUP_ID",
    "session.timeout.ms": "use --session-timeout-ms / SEGMENTS_SESSION_TIMEOUT_MS",
    "max.poll.interval.ms": "use --max-poll-interval-ms / SEGMENTS_MAX_POLL_INTERVAL_MS",
    "enable.auto.commit": "the worker commits offsets itself",
    "isolation.level": "the worker sets it to match --guarantee",
    "transactional.id": "the worker derives it from its instance id",
    "enable.idempotence": "the worker sets it to match --guarantee",
    "allow.auto.create.topics": "the worker never lets a client create topics (see stream.kafka.clients)",
}

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
        raise ValueError(f"expected an integer, got {_yaml_type(value)} {value!r}")
    return value


def _str_from_file(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {_yaml_type(value)} {value!r} (quote it if it is meant as text)")
    return value.strip()


def _topics_from_file(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return _parse_topics(value)
    if isinstance(value, list) and all(isinstance(t, str) for t in value):
        return tuple(t.strip() for t in value)
    raise ValueError(f"expected a list of topic names, got {_yaml_type(value)} {value!r}")


def _yaml_type(value: Any) -> str:
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
    "commit_interval_ms": Option(_INT, "milliseconds between commits of output and offsets", _positive),
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

DEFAULTS = {f.name: f.default for f in dataclasses.fields(WorkerConfig) if f.name != "kafka"}
_FILE_KEYS = [f.name for f in dataclasses.fields(WorkerConfig)]


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


@dataclass(frozen=True)
class Flags:
    """What a command line gave (stream.cli.settings_args reads it from the parsed flags): the fields
    whose flag was given, already parsed, the --config file, and the -X properties in their order."""
    values: Mapping[str, Any] = field(default_factory=dict)
    config: str | None = None
    kafka: tuple[tuple[str, str], ...] = ()


# ---- loading ------------------------------------------------------------------------------------------

Layer = dict[str, tuple[Any, str]]   # field -> (value, where it came from)

# Stands for a value that was given but rejected: it overrides lower sources (so their values do
# not stand in for it) and is left out of the checks that combine fields (their problem is known).
_INVALID = object()


def load_worker_config(flags: Flags, environ: Mapping[str, str] = os.environ) -> WorkerConfig:
    """The worker's configuration from parsed flags, the environment and the config file."""
    problems: list[str] = []
    path = flags.config
    if path is None:
        path = environ.get(CONFIG_ENV, "").strip() or None
    elif not path.strip():
        problems.append("--config: must not be empty")
        path = None
    file_layer, file_kafka = _from_file(path, problems) if path else ({}, {})
    env_layer, env_kafka = _from_env(environ, problems)
    flag_layer, flag_kafka = _from_flags(flags, problems)

    values: Layer = {name: (default, "default") for name, default in DEFAULTS.items()}
    for layer in (file_layer, env_layer, flag_layer):
        values.update(layer)
    kafka = {**file_kafka, **env_kafka, **flag_kafka}
    problems += _cross_checks(values, kafka)
    if problems:
        raise ConfigError(problems)

    settings = {name: value for name, (value, _) in values.items()}
    for name, opt in OPTIONS.items():
        if opt.kind is _PATH and settings[name] is not None:
            settings[name] = Path(settings[name])
    return WorkerConfig(kafka=kafka, **settings)


def _accept(layer: Layer, problems: list[str], name: str, value: Any, where: str) -> None:
    opt = OPTIONS[name]
    problem = opt.check(value)
    if problem:
        problems.append(f"{where}: {problem}")
        layer[name] = (_INVALID, where)
    else:
        layer[name] = (None if opt.zero_disables and value == 0 else value, where)


def _accept_kafka(kafka: dict[str, str], problems: list[str], key: str, value: str, where: str) -> None:
    if key in OWNED_KAFKA_KEYS:
        problems.append(f"{where}: {key} is set by the worker and cannot be passed through; {OWNED_KAFKA_KEYS[key]}")
    else:
        kafka[key] = value


def _from_flags(flags: Flags, problems: list[str]) -> tuple[Layer, dict[str, str]]:
    layer: Layer = {}
    for name, value in flags.values.items():
        _accept(layer, problems, name, value, flag_of(name))
    kafka: dict[str, str] = {}
    for key, value in flags.kafka:
        _accept_kafka(kafka, problems, key, value, f"-X {key}")
    return layer, kafka


def _from_env(environ: Mapping[str, str], problems: list[str]) -> tuple[Layer, dict[str, str]]:
    layer: Layer = {}
    for name, opt in OPTIONS.items():
        var = env_of(name)
        text = environ.get(var, "")
        if not text.strip():
            continue
        try:
            value = opt.kind.from_text(text)
        except ValueError as exc:
            problems.append(f"{var}: {exc}")
            layer[name] = (_INVALID, var)
            continue
        _accept(layer, problems, name, value, var)
    kafka: dict[str, str] = {}
    for var in sorted(environ):
        # Passthrough values are not stripped: they may be passwords, and are passed on verbatim.
        if var.startswith(KAFKA_ENV_PREFIX) and environ[var].strip():
            key = var[len(KAFKA_ENV_PREFIX):].lower().replace("_", ".")
            if key:
                _accept_kafka(kafka, problems, key, environ[var], var)
            else:
                problems.append(f"{var}: names no librdkafka property; use {KAFKA_ENV_PREFIX}<KEY>")
    return layer, kafka


def _from_file(path: str, problems: list[str]) -> tuple[Layer, dict[str, str]]:
    try:
        doc = read_file(path, CONFIG_FILE, dates_as_text=False)
    except OSError as exc:
        problems.append(f"config file {path}: cannot read: {exc.strerror or exc}")
        return {}, {}
    except DocumentError as exc:
        problems.append(f"config file {path}: {exc}")
        return {}, {}
    if doc is None:     # an empty file, or one with every line commented out
        return {}, {}
    if not isinstance(doc, dict):
        problems.append(f"config file {path}: expected a mapping of setting -> value, got {_yaml_type(doc)}")
        return {}, {}

    layer: Layer = {}
    kafka: dict[str, str] = {}
    for key, raw in doc.items():
        where = f"config file {path}: {key}"
        if key == "kafka":
            _kafka_from_file(kafka, problems, raw, path)
        elif key not in OPTIONS:
            hint = difflib.get_close_matches(str(key).replace("-", "_"), _FILE_KEYS, n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            problems.append(f"config file {path}: unknown setting {key!r}{suggestion}")
        elif raw is None:
            if OPTIONS[key].nullable:
                layer[key] = (None, where)
            else:
                problems.append(f"{where}: must not be null")
                layer[key] = (_INVALID, where)
        else:
            try:
                value = OPTIONS[key].kind.from_file(raw)
            except ValueError as exc:
                problems.append(f"{where}: {exc}")
                layer[key] = (_INVALID, where)
                continue
            _accept(layer, problems, key, value, where)
    return layer, kafka


def _kafka_from_file(kafka: dict[str, str], problems: list[str], raw: Any, path: str) -> None:
    if raw is None:     # `kafka:` with every property commented out
        return
    if not isinstance(raw, dict):
        problems.append(f"config file {path}: kafka: expected a mapping of librdkafka property -> value, "
                        f"got {_yaml_type(raw)}")
        return
    for key, value in raw.items():
        where = f"config file {path}: kafka.{key}"
        if not isinstance(key, str):
            problems.append(f"{where}: property names are text, got {_yaml_type(key)}")
        elif isinstance(value, bool):
            # librdkafka spells booleans true/false; Python's str() would give True/False.
            _accept_kafka(kafka, problems, key, "true" if value else "false", where)
        elif isinstance(value, (str, int, float)):
            _accept_kafka(kafka, problems, key, str(value), where)
        else:
            problems.append(f"{where}: expected a string, number or boolean, got {_yaml_type(value)}")


def _cross_checks(values: Layer, kafka: dict[str, str]) -> list[str]:
    problems = []
    users: dict[str, list[str]] = {}
    for name in ("input_topics", "routed_topics", "changes_topic", "membership_topic", "dead_letter_topic",
                 "definitions_topic"):
        value, where = values[name]
        if value is _INVALID or value is None:
            continue
        for topic in dict.fromkeys(value) if isinstance(value, tuple) else (value,):
            users.setdefault(topic, []).append(f"{name} ({where})")
    for topic, names in users.items():
        if len(names) > 1:
            # Reading its own output, or mixing two outputs in one topic, corrupts both.
            problems.append(f"topic {topic!r} is used for more than one purpose: {', '.join(names)}")

    (session, session_from), (poll, poll_from) = values["session_timeout_ms"], values["max_poll_interval_ms"]
    if session is not _INVALID and poll is not _INVALID and poll < session:
        # librdkafka refuses to create such a consumer; saying so here names where the values came from.
        problems.append(f"max_poll_interval_ms {poll} ({poll_from}) must be at least "
                        f"session_timeout_ms {session} ({session_from})")

    runtime, runtime_from = values["runtime"]
    if runtime == "faust" and kafka:
        # Faust talks to Kafka through aiokafka: librdkafka properties (security ones included)
        # would be silently ignored.
        problems.append(f"runtime faust ({runtime_from}) takes no librdkafka properties, got "
                        f"{', '.join(sorted(kafka))} (-X, {KAFKA_ENV_PREFIX}<KEY> or kafka: in the file)")
    return problems
