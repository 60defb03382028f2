"""Worker configuration: flags > environment > file > defaults, field by field and for the merged
librdkafka passthrough; every kind of bad value a ConfigError naming where it came from, all
problems at once; secrets masked in describe(); and every field reachable by flag, env and file.
The flags themselves (help, usage errors, -X) are tested in tests/cli/test_settings_args.py."""
from __future__ import annotations

import dataclasses
import json
import textwrap
from pathlib import Path

import pytest

from stream.runtime.options import CONFIG_ENV, env_of, flag_of
from stream.runtime.settings import OWNED_KAFKA_KEYS, ConfigError, WorkerConfig
from tests.worker_settings import FLAGS, SAMPLES, load, problems_of


@pytest.fixture
def config_file(tmp_path):
    def write(text: str) -> str:
        path = tmp_path / "worker.yaml"
        path.write_text(textwrap.dedent(text))
        return str(path)
    return write


def test_defaults():
    assert load().describe() == {
        "bootstrap_servers": None, "kafka": {}, "input_topics": ["shop-events"], "routed_topics": [],
        "changes_topic": "segment-changes", "membership_topic": "segment-membership",
        "dead_letter_topic": "segment-dead-letters", "definitions_topic": "segment-definitions",
        "erasure_max_lag_ms": 86400000, "changes_retention_ms": 604800000, "dead_letter_retention_ms": 604800000,
        "group_id": "segments", "instance_id": None,
        "state_dir": "state", "guarantee": "exactly_once", "segments_file": None, "partitions": 8,
        "replication_factor": 1, "batch_size": 2000, "commit_interval_ms": 100, "idle_advance_ms": 1000,
        "max_message_bytes": 1048576, "max_future_skew_ms": 21600000, "metrics_port": 9308,
        "session_timeout_ms": 10000, "max_poll_interval_ms": 60000, "runtime": "native", "http_host": "0.0.0.0",
        "http_token_file": None,
    }
    assert load() == WorkerConfig()


# ---- every field has a flag, an env var, a file key and help ----------------------------------------

def test_the_tables_here_cover_every_field():
    names = {f.name for f in dataclasses.fields(WorkerConfig)}
    assert set(FLAGS) == names
    assert set(SAMPLES) == names - {"kafka"}
    for name, (_, _, value) in SAMPLES.items():
        assert value != getattr(WorkerConfig(), name), f"sample for {name} is its default"


# A sample that needs another field set with it, the same way (the Faust runtime is at-least-once only).
ALONG = {"runtime": ("guarantee", "at_least_once")}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_field_by_flag_env_and_file(name, config_file):
    text, yaml_text, value = SAMPLES[name]
    other, other_text = ALONG.get(name, (None, None))
    flags = [FLAGS[other], other_text] if other else []
    env = {env_of(other): other_text} if other else {}
    lines = f"{other}: {other_text}\n" if other else ""
    assert flag_of(name) == FLAGS[name]
    assert env_of(name) == "SEGMENTS_" + name.upper()
    assert getattr(load([FLAGS[name], text, *flags]), name) == value
    assert getattr(load(env={env_of(name): text, **env}), name) == value
    assert getattr(load(["--config", config_file(f"{name}: {yaml_text}\n{lines}")]), name) == value


def test_kafka_passthrough_by_flag_env_and_file(config_file):
    assert flag_of("kafka") == "-X" and env_of("kafka") == "SEGMENTS_KAFKA_<KEY>"
    assert load(["-X", "client.id=w1"]).kafka == {"client.id": "w1"}
    assert load(env={"SEGMENTS_KAFKA_CLIENT_ID": "w1"}).kafka == {"client.id": "w1"}
    assert load(["--config", config_file("kafka: {client.id: w1}\n")]).kafka == {"client.id": "w1"}


# ---- precedence ------------------------------------------------------------------------------------

PRECEDENCE = [   # field, (file, env, flag) in text form, and the three values
    ("partitions", ("2", "3", "4"), (2, 3, 4)),
    ("group_id", ("from-file", "from-env", "from-flag"), ("from-file", "from-env", "from-flag")),
    ("input_topics", ("f1,f2", "e1", "x1,x2,x3"), (("f1", "f2"), ("e1",), ("x1", "x2", "x3"))),
    ("state_dir", ("/f", "/e", "/x"), (Path("/f"), Path("/e"), Path("/x"))),
    ("bootstrap_servers", ("f:1", "e:1", "x:1"), ("f:1", "e:1", "x:1")),
    ("metrics_port", ("1001", "1002", "0"), (1001, 1002, None)),
]


@pytest.mark.parametrize("name, texts, values", PRECEDENCE, ids=[p[0] for p in PRECEDENCE])
def test_flag_beats_env_beats_file_beats_default(name, texts, values, config_file):
    in_file, in_env, in_flag = texts
    path = config_file(f"{name}: '{in_file}'\n" if name not in ("partitions", "metrics_port")
                       else f"{name}: {in_file}\n")
    env = {env_of(name): in_env}
    assert getattr(load(["--config", path, flag_of(name), in_flag], env), name) == values[2]
    assert getattr(load(["--config", path], env), name) == values[1]
    assert getattr(load(["--config", path]), name) == values[0]
    assert getattr(load(), name) == getattr(WorkerConfig(), name)


def test_passthrough_merges_key_by_key(config_file):
    path = config_file("""\
        kafka:
          client.id: file
          security.protocol: PLAINTEXT
          socket.timeout.ms: 1000
          linger.ms: 5
        """)
    env = {"SEGMENTS_KAFKA_SECURITY_PROTOCOL": "SSL", "SEGMENTS_KAFKA_SOCKET_TIMEOUT_MS": "2000"}
    cfg = load(["--config", path, "-X", "socket.timeout.ms=3000", "-X", "acks=all"], env)
    assert cfg.kafka == {"client.id": "file", "security.protocol": "SSL", "socket.timeout.ms": "3000",
                         "linger.ms": "5", "acks": "all"}


def test_config_flag_beats_config_env(tmp_path):
    (tmp_path / "a.yaml").write_text("group_id: from-flag-file\n")
    (tmp_path / "b.yaml").write_text("group_id: from-env-file\n")
    env = {CONFIG_ENV: str(tmp_path / "b.yaml")}
    assert load(["--config", str(tmp_path / "a.yaml")], env).group_id == "from-flag-file"
    assert load(env=env).group_id == "from-env-file"


# ---- environment parsing -----------------------------------------------------------------------------

def test_env_ints_and_lists_tolerate_whitespace():
    cfg = load(env={"SEGMENTS_PARTITIONS": " 12\n", "SEGMENTS_INPUT_TOPICS": " a , b,c ",
                    "SEGMENTS_GROUP_ID": "g\n", "SEGMENTS_BATCH_SIZE": "1_000"})
    assert (cfg.partitions, cfg.input_topics, cfg.group_id, cfg.batch_size) == (12, ("a", "b", "c"), "g", 1000)


def test_env_empty_or_blank_counts_as_unset(config_file):
    path = config_file("group_id: from-file\npartitions: 4\nkafka: {client.id: from-file}\n")
    env = {"SEGMENTS_GROUP_ID": "", "SEGMENTS_PARTITIONS": "  ", "SEGMENTS_INPUT_TOPICS": "",
           "SEGMENTS_BOOTSTRAP_SERVERS": "", "SEGMENTS_KAFKA_CLIENT_ID": "", CONFIG_ENV: ""}
    cfg = load(["--config", path], env)
    assert (cfg.group_id, cfg.partitions, cfg.input_topics, cfg.bootstrap_servers) == \
        ("from-file", 4, ("shop-events",), None)
    assert cfg.kafka == {"client.id": "from-file"}
    assert load(env={CONFIG_ENV: " "}) == WorkerConfig()


def test_env_zero_disables_metrics_and_idle_advance():
    cfg = load(env={"SEGMENTS_METRICS_PORT": "0", "SEGMENTS_IDLE_ADVANCE_MS": "0"})
    assert cfg.metrics_port is None and cfg.idle_advance_ms is None
    cfg = load(["--metrics-port", "0", "--idle-advance-ms", "0"])
    assert cfg.metrics_port is None and cfg.idle_advance_ms is None


def test_zero_disables_the_future_skew_bound_and_negative_is_refused():
    assert load(env={"SEGMENTS_MAX_FUTURE_SKEW_MS": "0"}).max_future_skew_ms is None
    assert load(["--max-future-skew-ms", "0"]).max_future_skew_ms is None
    with pytest.raises(ConfigError, match="--max-future-skew-ms"):
        load(["--max-future-skew-ms", "-1"])


def test_durations_take_units_and_the_flag_its_short_name():
    """--max-future-skew (the flag's unambiguous prefix) and the retention settings take 6h, 90m, 45s,
    7d as well as milliseconds; anything else names what it expects."""
    assert load(["--max-future-skew", "2h"]).max_future_skew_ms == 2 * 3600 * 1000
    assert load(["--max-future-skew-ms", "90m"]).max_future_skew_ms == 90 * 60 * 1000
    assert load(env={"SEGMENTS_MAX_FUTURE_SKEW_MS": "45s"}).max_future_skew_ms == 45_000
    assert load(env={"SEGMENTS_CHANGES_RETENTION_MS": "7d"}).changes_retention_ms == 7 * 86_400_000
    with pytest.raises(ConfigError, match="SEGMENTS_MAX_FUTURE_SKEW_MS: expected milliseconds or a duration"):
        load(env={"SEGMENTS_MAX_FUTURE_SKEW_MS": "6 hours"})
    with pytest.raises(ConfigError, match="--erasure-max-lag-ms"):
        load(["--erasure-max-lag-ms", "30s"])      # under its minute minimum, however written


def test_env_passthrough_key_is_lowercased_with_dots():
    cfg = load(env={"SEGMENTS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "SEGMENTS_KAFKA_SASL_MECHANISMS": "PLAIN",
                    "SEGMENTS_KAFKA_SASL_PASSWORD": " pass word \n", "OTHER_KAFKA_X": "ignored",
                    "SEGMENTS_TEST_BOOTSTRAP": "not ours, not an error"})
    # passthrough values go on verbatim (a password may end in a space)
    assert cfg.kafka == {"security.protocol": "SASL_SSL", "sasl.mechanisms": "PLAIN",
                         "sasl.password": " pass word \n"}


def test_env_problems_name_the_variable():
    problems = problems_of(env={"SEGMENTS_PARTITIONS": "eight", "SEGMENTS_INPUT_TOPICS": "a,,b",
                                "SEGMENTS_GUARANTEE": "exactly-once", "SEGMENTS_KAFKA_": "x"})
    assert len(problems) == 4, problems
    assert "SEGMENTS_PARTITIONS: expected an integer, got 'eight'" in problems
    assert "SEGMENTS_INPUT_TOPICS: topic name must not be empty" in problems
    assert any(p.startswith("SEGMENTS_GUARANTEE: must be one of exactly_once, at_least_once") for p in problems)
    assert any(p.startswith("SEGMENTS_KAFKA_: names no librdkafka property") for p in problems)


# ---- the file form --------------------------------------------------------------------------------

def test_full_yaml_file(config_file):
    path = config_file("""\
        bootstrap_servers: kafka-0.kafka:9092,kafka-1.kafka:9092
        input_topics: [shop-events, shop-events-eu]
        changes_topic: changes
        membership_topic: membership
        dead_letter_topic: dead
        group_id: segments-prod
        instance_id: segments-2
        state_dir: /data/state
        guarantee: at_least_once
        segments_file: /etc/segments/catalog.yaml
        partitions: 24
        replication_factor: 3
        batch_size: 5000
        commit_interval_ms: 200
        idle_advance_ms: null
        max_message_bytes: 65536
        metrics_port: null
        session_timeout_ms: 45000
        max_poll_interval_ms: 300000
        kafka:
          security.protocol: SASL_SSL
          sasl.mechanisms: SCRAM-SHA-512
          sasl.username: worker
          sasl.password: hunter2
          enable.ssl.certificate.verification: false
          socket.keepalive.enable: true
          fetch.wait.max.ms: 50
          ssl.ca.location: /etc/ssl/ca.pem
        """)
    assert load(["--config", path]) == WorkerConfig(
        bootstrap_servers="kafka-0.kafka:9092,kafka-1.kafka:9092",
        kafka={"security.protocol": "SASL_SSL", "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": "worker",
               "sasl.password": "hunter2", "enable.ssl.certificate.verification": "false",
               "socket.keepalive.enable": "true", "fetch.wait.max.ms": "50", "ssl.ca.location": "/etc/ssl/ca.pem"},
        input_topics=("shop-events", "shop-events-eu"), changes_topic="changes", membership_topic="membership",
        dead_letter_topic="dead", group_id="segments-prod", instance_id="segments-2", state_dir=Path("/data/state"),
        guarantee="at_least_once", segments_file=Path("/etc/segments/catalog.yaml"), partitions=24,
        replication_factor=3, batch_size=5000, commit_interval_ms=200, idle_advance_ms=None,
        max_message_bytes=65536, metrics_port=None, session_timeout_ms=45000, max_poll_interval_ms=300000,
    )


def test_file_topics_may_be_comma_separated_text(config_file):
    assert load(["--config", config_file("input_topics: 'a, b'\n")]).input_topics == ("a", "b")


@pytest.mark.parametrize("text", ["", "# nothing yet\n", "kafka:\n", "kafka: {}\n"])
def test_empty_file_or_kafka_section_means_defaults(text, config_file):
    assert load(["--config", config_file(text)]) == WorkerConfig()


def test_file_null_definitions_topic_means_the_segments_file_only(config_file):
    assert load(["--config", config_file("definitions_topic: null\n")], {}).definitions_topic is None


def test_file_nulls_keep_optional_fields_unset(config_file):
    path = config_file("bootstrap_servers: null\ninstance_id: null\nsegments_file: null\n")
    cfg = load(["--config", path], {})
    assert (cfg.bootstrap_servers, cfg.instance_id, cfg.segments_file) == (None, None, None)
    # ...and an explicit null in the file still loses to the environment
    assert load(["--config", path], {"SEGMENTS_BOOTSTRAP_SERVERS": "k:9092"}).bootstrap_servers == "k:9092"


# ---- validation: each problem, named by where it came from ----------------------------------------

def one_problem(argv=(), env=None) -> str:
    problems = problems_of(list(argv), env)
    assert len(problems) == 1, problems
    return problems[0]


FILE_PROBLEMS = [  # (YAML, words expected in the one problem)
    ("partiton: 4", ["unknown setting 'partiton'", "did you mean 'partitions'"]),
    ("bootstrap-servers: k:1", ["unknown setting 'bootstrap-servers'", "did you mean 'bootstrap_servers'"]),
    ("segments: s.yaml", ["unknown setting 'segments'", "did you mean 'segments_file'"]),
    ("kafak: {}", ["unknown setting 'kafak'", "did you mean 'kafka'"]),
    ("zzzqqq: 1", ["unknown setting 'zzzqqq'"]),
    ("partitions: '4'", ["partitions: expected an integer, got string '4'"]),
    ("partitions: 4.5", ["partitions: expected an integer, got number 4.5"]),
    ("batch_size: true", ["batch_size: expected an integer, got boolean True"]),
    ("group_id: 123", ["group_id: expected a string, got integer 123", "quote it"]),
    ("changes_topic: [a, b]", ["changes_topic: expected a string, got list"]),
    ("input_topics: {a: 1}", ["input_topics: expected a list of topic names, got mapping"]),
    ("input_topics: [a, 1]", ["input_topics: expected a list of topic names"]),
    ("group_id: null", ["group_id: must not be null"]),
    ("partitions:", ["partitions: must not be null"]),
    ("guarantee: exactly-once", ["guarantee: must be one of exactly_once, at_least_once, got 'exactly-once'"]),
    ("kafka: [a]", ["kafka: expected a mapping of librdkafka property -> value, got list"]),
    ("kafka: {client.id: {a: 1}}", ["kafka.client.id: expected a string, number or boolean, got mapping"]),
    ("kafka: {client.id: null}", ["kafka.client.id: expected a string, number or boolean, got null"]),
    ("kafka: {1: x}", ["kafka.1: property names are text, got integer"]),
    ("[a, b]", ["expected a mapping of setting -> value, got list"]),
    ("a: [", ["not valid YAML"]),
]


@pytest.mark.parametrize("text, words", FILE_PROBLEMS, ids=[t for t, _ in FILE_PROBLEMS])
def test_file_problem(text, words, config_file):
    path = config_file(text + "\n")
    problem = one_problem(["--config", path])
    assert problem.startswith(f"config file {path}")
    for word in words:
        assert word in problem


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    assert one_problem(env={CONFIG_ENV: str(path)}) == f"config file {path}: cannot read: No such file or directory"


VALUE_PROBLEMS = [   # (field, value, words expected) for each range or emptiness check
    ("partitions", "0", ["must be positive, got 0"]),
    ("partitions", "-3", ["must be positive, got -3"]),
    ("batch_size", "0", ["must be between 1 and 1000000, got 0"]),
    ("batch_size", "1000001", ["must be between 1 and 1000000, got 1000001"]),
    ("commit_interval_ms", "0", ["must be positive"]),
    ("max_message_bytes", "-1", ["must be positive"]),
    ("session_timeout_ms", "0", ["must be positive"]),
    ("max_poll_interval_ms", "0", ["must be positive"]),
    ("erasure_max_lag_ms", "59999", ["must be at least 60000 (one minute), got 59999"]),
    ("changes_retention_ms", "0", ["must be at least 60000 (one minute), got 0"]),
    ("dead_letter_retention_ms", "-1", ["must be at least 60000"]),
    ("replication_factor", "0", ["must be positive, or -1 for the broker default, got 0"]),
    ("replication_factor", "-2", ["or -1 for the broker default, got -2"]),
    ("idle_advance_ms", "-1", ["must be positive (or 0 to disable), got -1"]),
    ("metrics_port", "-1", ["port number 1..65535 (or 0 to disable), got -1"]),
    ("metrics_port", "65536", ["got 65536"]),
    ("changes_topic", "", ["topic name must not be empty"]),
    ("membership_topic", "a b", ["invalid topic name 'a b'"]),
    ("dead_letter_topic", "..", ["invalid topic name '..'"]),
    ("dead_letter_topic", "x" * 250, ["invalid topic name"]),
    ("input_topics", "a,", ["topic name must not be empty"]),
    ("input_topics", "a,b,a", ["lists 'a' more than once"]),
    ("group_id", "", ["must not be empty"]),
    ("instance_id", " ", ["must not be empty"]),
    ("bootstrap_servers", "", ["must not be empty"]),
    ("state_dir", "", ["must not be empty"]),
    ("segments_file", "", ["must not be empty"]),
    ("http_host", "127.0.0.1:9308", ["must be an IP address", "or a host name, got '127.0.0.1:9308'"]),
    ("http_host", "[::1]", ["must be an IP address"]),
    ("http_host", "http://localhost", ["must be an IP address"]),
    ("http_host", "bad_host.example", ["or a host name"]),
    ("http_token_file", "", ["must not be empty"]),
]


@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.1", "::", "::1", "localhost", "worker-1.segments.svc"])
def test_http_host_takes_addresses_and_host_names(host):
    assert load(["--http-host", host]).http_host == host


@pytest.mark.parametrize("name, text, words", VALUE_PROBLEMS, ids=[f"{n}={t[:10]}" for n, t, _ in VALUE_PROBLEMS])
def test_bad_value_from_flag_env_or_file(name, text, words, config_file):
    flag_problem = one_problem([flag_of(name), text])
    assert flag_problem.startswith(f"{flag_of(name)}: ")
    yaml_value = json.dumps(text) if not text.lstrip("-").isdigit() else text
    path = config_file(f"{name}: {yaml_value}\n")
    file_problem = one_problem(["--config", path])
    assert file_problem.startswith(f"config file {path}: {name}: ")
    for problem in (flag_problem, file_problem):
        for word in words:
            assert word in problem
    if text.strip():    # in the environment, a blank value counts as unset
        env_problem = one_problem(env={env_of(name): text})
        assert env_problem.startswith(f"{env_of(name)}: ")
        assert all(word in env_problem for word in words)


def test_empty_config_flag():
    assert one_problem(["--config", ""]) == "--config: must not be empty"


@pytest.mark.parametrize("key", sorted(OWNED_KAFKA_KEYS))
def test_owned_passthrough_keys_are_refused_from_every_source(key, config_file):
    var = "SEGMENTS_KAFKA_" + key.upper().replace(".", "_")
    path = config_file(f"kafka: {{{key}: x}}\n")
    problems = problems_of(["--config", path, "-X", f"{key}=x"], {var: "x"})
    assert problems == [
        f"config file {path}: kafka.{key}: {key} is set by the worker and cannot be passed through; "
        f"{OWNED_KAFKA_KEYS[key]}",
        f"{var}: {key} is set by the worker and cannot be passed through; {OWNED_KAFKA_KEYS[key]}",
        f"-X {key}: {key} is set by the worker and cannot be passed through; {OWNED_KAFKA_KEYS[key]}",
    ]


def test_owned_keys_point_to_the_dedicated_setting():
    assert one_problem(["-X", "bootstrap.servers=k:9092"]).endswith(
        "use --bootstrap-servers / SEGMENTS_BOOTSTRAP_SERVERS")
    assert set(OWNED_KAFKA_KEYS) >= {"bootstrap.servers", "group.id", "enable.auto.commit", "isolation.level",
                                     "transactional.id", "enable.idempotence"}


def test_topic_used_for_two_purposes():
    problem = one_problem(["--changes-topic", "shop-events"], {"SEGMENTS_DEAD_LETTER_TOPIC": "shop-events"})
    assert problem == ("topic 'shop-events' is used for more than one purpose: input_topics (default), "
                       "changes_topic (--changes-topic), dead_letter_topic (SEGMENTS_DEAD_LETTER_TOPIC)")
    assert "membership_topic (--membership-topic)" in one_problem(["--membership-topic", "segment-changes"])


def test_max_poll_interval_below_session_timeout():
    problem = one_problem(["--max-poll-interval-ms", "5000"], {"SEGMENTS_SESSION_TIMEOUT_MS": "6000"})
    assert problem == ("max_poll_interval_ms 5000 (--max-poll-interval-ms) must be at least "
                       "session_timeout_ms 6000 (SEGMENTS_SESSION_TIMEOUT_MS)")
    assert load(["--max-poll-interval-ms", "6000", "--session-timeout-ms", "6000"]).max_poll_interval_ms == 6000


def test_a_rejected_value_is_not_replaced_by_a_lower_source_in_combined_checks(config_file):
    # the flag's value is bad; the file's session timeout must not stand in for it and be compared
    # with the default max poll interval
    path = config_file("session_timeout_ms: 90000\n")
    problems = problems_of(["--config", path, "--session-timeout-ms", "0"])
    assert problems == ["--session-timeout-ms: must be positive, got 0"]


def test_every_problem_reported_at_once(config_file):
    path = config_file("""\
        partiton: 4
        batch_size: 'many'
        replication_factor: 0
        guarantee: exactly-once
        input_topics: [orders, '']
        kafka:
          group.id: mine
          sasl.password: {nested: 1}
        """)
    env = {"SEGMENTS_COMMIT_INTERVAL_MS": "soon", "SEGMENTS_METRICS_PORT": "99999",
           "SEGMENTS_KAFKA_ENABLE_AUTO_COMMIT": "true", "SEGMENTS_CHANGES_TOPIC": "orders"}
    argv = ["--config", path, "--partitions", "0", "--group-id", "", "-X", "transactional.id=t",
            "--max-poll-interval-ms", "1000"]
    problems = problems_of(argv, env)
    expected = [
        "unknown setting 'partiton' (did you mean 'partitions'?)",
        "batch_size: expected an integer, got string 'many'",
        "replication_factor: must be positive, or -1",
        "guarantee: must be one of",
        "input_topics: topic name must not be empty",
        "kafka.group.id: group.id is set by the worker",
        "kafka.sasl.password: expected a string, number or boolean, got mapping",
        "SEGMENTS_COMMIT_INTERVAL_MS: expected an integer, got 'soon'",
        "SEGMENTS_METRICS_PORT: must be a port number",
        "SEGMENTS_KAFKA_ENABLE_AUTO_COMMIT: enable.auto.commit is set by the worker",
        "--group-id: must not be empty",
        "--partitions: must be positive, got 0",
        "-X transactional.id: transactional.id is set by the worker",
        "max_poll_interval_ms 1000 (--max-poll-interval-ms) must be at least session_timeout_ms 10000 (default)",
    ]
    assert len(problems) == len(expected), "\n".join(problems)
    for words, problem in zip(expected, problems, strict=True):
        assert words in problem
    # the changes topic "orders" would collide with the input topic, but the input list was rejected
    assert not any("more than one purpose" in p for p in problems)


# ---- the settings object ------------------------------------------------------------------------

def test_the_settings_take_flags_without_argparse():
    """stream.runtime.settings (and its table of options) has no argparse: a command hands it the
    flags it parsed as Flags."""
    import ast

    from stream.runtime import options, settings

    for module in (settings, options):
        tree = ast.parse(Path(module.__file__).read_text())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert "argparse" not in imported, module.__name__
    config = settings.load_worker_config(settings.Flags({"partitions": 3}, None, (("client.id", "x"),)),
                                         {"SEGMENTS_PARTITIONS": "5", "SEGMENTS_GROUP_ID": "g"})
    assert (config.partitions, config.group_id, dict(config.kafka)) == (3, "g", {"client.id": "x"})
    with pytest.raises(ConfigError, match="--partitions: must be positive, got 0"):
        settings.load_worker_config(settings.Flags({"partitions": 0}), {})


def test_config_error_is_a_problem_list_of_the_product():
    from stream.errors import Problems, SegmentsError

    error = ConfigError(["--partitions: must be positive, got 0", "SEGMENTS_GROUP_ID: must not be empty"])
    assert isinstance(error, Problems) and isinstance(error, SegmentsError) and isinstance(error, ValueError)
    assert str(error) == ("invalid worker configuration:\n  - --partitions: must be positive, got 0\n"
                          "  - SEGMENTS_GROUP_ID: must not be empty")


def test_the_settings_are_frozen():
    config = load()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.group_id = "other"
    assert dataclasses.replace(config, group_id="other").group_id == "other"


# ---- secrets ---------------------------------------------------------------------------------------

def test_describe_masks_secrets_and_is_json():
    kafka = {"sasl.password": "p1", "ssl.key.password": "p2", "ssl.keystore.password": "p3",
             "sasl.oauthbearer.client.secret": "s1", "sasl.jaas.config": "j",
             "sasl.oauthbearer.token.endpoint.url": "u",
             "SASL.PASSWORD.UPPER": "p4", "ssl.key.pem": "-----BEGIN PRIVATE KEY-----",
             "sasl.oauthbearer.config": "clientSecret=x",
             "sasl.username": "worker", "security.protocol": "SASL_SSL", "client.id": "w1"}
    cfg = WorkerConfig(kafka=kafka, bootstrap_servers="k:9092")
    described = cfg.describe()
    assert described["kafka"] == {**{k: "***" for k in kafka}, "sasl.username": "worker",
                                  "security.protocol": "SASL_SSL", "client.id": "w1"}
    assert described["bootstrap_servers"] == "k:9092"
    json.dumps(described)
    assert cfg.kafka["sasl.password"] == "p1"      # the config itself keeps the real values
    for secret in ("p1", "p2", "p3", "p4", "s1", "PRIVATE KEY", "clientSecret"):
        assert secret not in repr(cfg) and secret not in json.dumps(described)


def test_errors_do_not_echo_passthrough_values(config_file):
    path = config_file("kafka: {transactional.id: hunter2, sasl.password: [hunter3]}\n")
    message = str(pytest.raises(ConfigError, load, ["--config", path]).value)
    assert "hunter2" not in message and "hunter3" not in message


def test_a_routed_topic_cannot_also_be_an_input():
    with pytest.raises(ConfigError) as err:
        load(["--input-topics", "a,b", "--routed-topics", "b"])
    assert "topic 'b' is used for more than one purpose" in str(err.value)


def test_the_settings_are_frozen_the_passthrough_map_too():
    config = load(["-X", "client.id=a"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.group_id = "other"
    with pytest.raises(TypeError):
        config.kafka["client.id"] = "b"
    assert dataclasses.replace(config, group_id="g").kafka == {"client.id": "a"}
