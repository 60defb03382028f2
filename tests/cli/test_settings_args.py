"""The worker's settings as flags (stream.cli.settings_args): every field's flag documented with its
environment variable and default, malformed flags are usage errors, and -X is parsed by one rule for
every command (KEY=VALUE, the key stripped, the value kept, the last given wins)."""
from __future__ import annotations

import dataclasses

import pytest

from stream.runtime.options import CONFIG_ENV, env_of
from stream.runtime.settings import WorkerConfig
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
