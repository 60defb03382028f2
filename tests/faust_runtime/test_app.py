"""What the Faust runtime (stream.faust_runtime.app) refuses before it reaches a broker: librdkafka
properties, which its Kafka client (aiokafka) would ignore, security ones included; and exactly_once,
which Faust cannot give this worker's output (faust-streaming 0.15 looks every output topic up among
the consumed ones, faust-streaming#440, and sends some records outside any transaction, #177; see
docs/faust-runtime.md), so the runtime is at-least-once only. No broker is needed: both refusals
come first."""
from __future__ import annotations

import pytest

from stream.cli.main import build_parser
from stream.cli.settings_args import load_config
from stream.faust_runtime import app as faust_runtime
from stream.rules.catalog import load_catalog
from stream.runtime.settings import ConfigError, WorkerConfig


def test_faust_runtime_refuses_what_it_cannot_honour(capsys):
    """librdkafka properties (aiokafka would ignore them, security ones included) are a
    configuration error; exactly_once (see the module docstring) makes the worker exit 2."""
    with pytest.raises(ConfigError) as info:
        load_config(build_parser().parse_args(["worker", "--runtime", "faust", "--guarantee", "at_least_once",
                                               "-X", "security.protocol=SSL"]), {})
    assert info.value.problems == ["runtime faust (--runtime) takes no librdkafka properties, got "
                                   "security.protocol (-X, SEGMENTS_KAFKA_<KEY> or kafka: in the file)"]
    # exactly_once (the default guarantee) is refused with the settings, before anything starts
    with pytest.raises(ConfigError) as info:
        load_config(build_parser().parse_args(["worker", "--runtime", "faust"]), {})
    assert info.value.problems == ["runtime faust (--runtime) with guarantee exactly_once (default): the Faust "
                                   "runtime is at-least-once only (Faust's exactly_once cannot publish this "
                                   "worker's output): add --guarantee at_least_once"]
    # and by the runtime, for settings built in code
    assert faust_runtime.run(WorkerConfig(runtime="faust", bootstrap_servers="127.0.0.1:9"), load_catalog()) == 2
    assert "--guarantee at_least_once" in capsys.readouterr().err
