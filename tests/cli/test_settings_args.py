"""The worker's settings as flags (stream.cli.settings_args): every field's flag documented with its
environment variable and default, malformed flags are usage errors, -X is parsed by one rule for
every command (KEY=VALUE, the key stripped, the value kept, the last given wins), and the commands
that talk to the workers' cluster take the workers' librdkafka properties and refuse what they refuse."""
from __future__ import annotations

import dataclasses

import pytest

from stream.runtime.options import CONFIG_ENV, env_of
from stream.runtime.settings import WorkerConfig
from stream.cli.main import main
from tests.client_configs import has_settings, reach
from tests.worker_settings import FLAGS, SAMPLES, load, parser


def test_help_documents_every_field_with_flag_env_and_default():
    p = parser()
    by_dest = {a.dest: a for a in p._actions}
    for f in dataclasses.fields(WorkerConfig):
        action = by_dest[f.name]
        assert FLAGS[f.name] in action.option_strings
        assert action.default is None, f"{f.name}: a flag default would hide the environment and the file"
        assert env_of(f.name) in action.help and "default: " in action.help, f.name
    for name in SAMPLES:
        default = getattr(WorkerConfig(), name)
        shown = "none" if default is None else ",".join(default) if isinstance(default, tuple) else str(default)
        assert f"default: {shown})" in by_dest[name].help
    assert CONFIG_ENV in by_dest["config"].help
    whole = " ".join(p.format_help().split())
    for name, flag in FLAGS.items():
        assert flag in whole and env_of(name) in whole


def test_repeated_x_last_wins_and_value_may_contain_equals():
    cfg = load(["-X", "client.id=a", "-X", "client.id=b", "-X", "sasl.oauthbearer.config=scope=x principal=y"])
    assert cfg.kafka == {"client.id": "b", "sasl.oauthbearer.config": "scope=x principal=y"}


@pytest.mark.parametrize("argv, message", [
    (["--partitions", "x"], "expected an integer, got 'x'"),
    (["--guarantee", "exactly-once"], "invalid choice"),
    (["-X", "client.id"], "expected KEY=VALUE, got 'client.id'"),
    (["-X", "=v"], "expected KEY=VALUE"),
])
def test_malformed_flags_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        parser().parse_args(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("command", [["produce", "--bootstrap-servers", "h:1"],
                                     ["define", "s", "--file", "f.yaml", "--bootstrap-servers", "h:1"],
                                     ["undefine", "s", "--bootstrap-servers", "h:1"]])
@pytest.mark.parametrize("item", ["client.id", "=v", " =v"])
def test_every_command_parses_x_as_the_worker_does(command, item, capsys):
    """One -X parser: the commands that talk to the workers' cluster refuse what the worker refuses."""
    from stream.cli.main import main

    with pytest.raises(SystemExit) as info:
        main([*command, "-X", item])
    assert info.value.code == 2
    assert f"argument -X: expected KEY=VALUE, got {item!r}" in capsys.readouterr().err


def test_x_keys_lose_surrounding_blanks_and_values_keep_theirs():
    assert load(["-X", " client.id = a b "]).kafka == {"client.id": " a b "}


# ---- the librdkafka properties of every command -------------------------------------------------

@pytest.mark.parametrize("prop, named", [
    ("no.such.property=1", '"no.such.property"'),
    ("security.protocol=bogus", '"security.protocol"'),
    ("linger.ms=-5", '"queue.buffering.max.ms"'),      # librdkafka names linger.ms by its alias
])
def test_an_invalid_property_is_a_configuration_error_at_start(prop, named, capsys, tmp_path):
    # Before: accepted, then a KafkaException traceback from the first client built.
    for argv in (["worker", "--bootstrap-servers", "127.0.0.1:1", "--state-dir", str(tmp_path), "-X", prop],
                 ["produce", "--bootstrap-servers", "127.0.0.1:1", "-X", prop, "--events", "1"],
                 ["undefine", "x", "--bootstrap-servers", "127.0.0.1:1", "-X", prop],
                 ["backfill", "--bootstrap-servers", "127.0.0.1:1", "--output", "-", "-X", prop]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert named in err and "Traceback" not in err, (argv, err)


def test_commands_take_the_workers_properties_from_env_and_file(built, monkeypatch, tmp_path):
    # A pod's SEGMENTS_KAFKA_* settings (and a worker's config file) serve segments define and
    # produce too: secrets need not go on a command line, where the process list shows them.
    path = tmp_path / "worker.yaml"
    path.write_text("kafka: {security.protocol: SASL_SSL, sasl.mechanisms: PLAIN}\n")
    monkeypatch.setenv("SEGMENTS_KAFKA_SASL_USERNAME", "worker")
    monkeypatch.setenv("SEGMENTS_KAFKA_SASL_PASSWORD", "hunter2")
    reach(lambda: main(["undefine", "x", "--bootstrap-servers", "kafka:9092", "--config", str(path)]))
    reach(lambda: main(["produce", "--bootstrap-servers", "kafka:9092", "--config", str(path), "--events", "1",
                         "-X", "client.id=p"]))
    assert len(built) == 2, built
    for config in built:
        assert has_settings(config), {k: v for k, v in config.items() if k not in ("logger", "error_cb")}
    assert built[1]["client.id"] == "p"


def test_commands_refuse_what_the_workers_refuse(capsys):
    assert main(["produce", "--bootstrap-servers", "kafka:9092", "-X", "allow.auto.create.topics=true"]) == 2
    assert "allow.auto.create.topics is set by the worker" in capsys.readouterr().err
