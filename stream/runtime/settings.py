"""Configuration of `segments worker`: command-line flags > environment > YAML file > defaults.

The flags themselves are the command's (stream.cli.settings_args adds them and hands their values
here as Flags); this module defines the settings, reads the environment and the file, and checks
them, field by field through stream.runtime.options, then together.
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
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from stream.errors import Problems
from stream.model.time import DAY_MS
from stream.rules.bounded_yaml import CONFIG_FILE, DocumentError, read_file
from stream.runtime.options import (CONFIG_ENV, KAFKA_ENV_PREFIX, OPTIONS, Guarantee, Runtime, env_of, flag_of,
                                    yaml_type)


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
    erasure_max_lag_ms: int = DAY_MS
    changes_retention_ms: int = 7 * DAY_MS                 # retention.ms of the changes topic
    dead_letter_retention_ms: int = 7 * DAY_MS             # retention.ms of the dead letters (raw input)
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

DEFAULTS = {f.name: f.default for f in dataclasses.fields(WorkerConfig) if f.name != "kafka"}
_FILE_KEYS = [f.name for f in dataclasses.fields(WorkerConfig)]


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
        if opt.is_path and settings[name] is not None:
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
        problems.append(f"config file {path}: expected a mapping of setting -> value, got {yaml_type(doc)}")
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
                        f"got {yaml_type(raw)}")
        return
    for key, value in raw.items():
        where = f"config file {path}: kafka.{key}"
        if not isinstance(key, str):
            problems.append(f"{where}: property names are text, got {yaml_type(key)}")
        elif isinstance(value, bool):
            # librdkafka spells booleans true/false; Python's str() would give True/False.
            _accept_kafka(kafka, problems, key, "true" if value else "false", where)
        elif isinstance(value, (str, int, float)):
            _accept_kafka(kafka, problems, key, str(value), where)
        else:
            problems.append(f"{where}: expected a string, number or boolean, got {yaml_type(value)}")


# Why the Faust runtime refuses exactly_once (docs/faust-runtime.md), said by the settings and by
# the runtime itself (stream.faust_runtime.app.run) to a caller that built its settings in code.
FAUST_AT_LEAST_ONCE = ("the Faust runtime is at-least-once only (Faust's exactly_once cannot publish this "
                       "worker's output): add --guarantee at_least_once")


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
    guarantee, guarantee_from = values["guarantee"]
    if runtime == "faust" and guarantee == "exactly_once":
        # Refused here, before anything starts (an embedded broker, say), not by the runtime.
        problems.append(f"runtime faust ({runtime_from}) with guarantee exactly_once ({guarantee_from}): "
                        f"{FAUST_AT_LEAST_ONCE}")
    if runtime == "faust" and kafka:
        # Faust talks to Kafka through aiokafka: librdkafka properties (security ones included)
        # would be silently ignored.
        problems.append(f"runtime faust ({runtime_from}) takes no librdkafka properties, got "
                        f"{', '.join(sorted(kafka))} (-X, {KAFKA_ENV_PREFIX}<KEY> or kafka: in the file)")
    return problems
