"""Worker settings built as `segments worker` builds them, from flags and an environment, and the
documented surface (every field's flag, a sample value of each): for the tests of the settings, of
their flags, and of the limits other modules keep in step with them."""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import pytest

from stream.cli.settings_args import add_worker_arguments, load_config
from stream.runtime.settings import ConfigError, WorkerConfig


def parser() -> argparse.ArgumentParser:
    """The `segments worker` flags, as the command defines them."""
    p = argparse.ArgumentParser(prog="segments worker")
    add_worker_arguments(p)
    return p


def load(argv: Sequence[str] = (), env: dict[str, str] | None = None) -> WorkerConfig:
    """The settings these flags and this environment (none by default) give."""
    return load_config(parser().parse_args(list(argv)), env or {})


def problems_of(argv: Sequence[str] = (), env: dict[str, str] | None = None) -> list[str]:
    """The problems a ConfigError lists for these flags and environment (each also in its message)."""
    with pytest.raises(ConfigError) as info:
        load(argv, env)
    for p in info.value.problems:
        assert p in str(info.value)
    return info.value.problems


# The documented surface, spelled out here so that a renamed flag or variable fails a test.
FLAGS = {
    "bootstrap_servers": "--bootstrap-servers", "kafka": "-X", "input_topics": "--input-topics",
    "routed_topics": "--routed-topics",
    "changes_topic": "--changes-topic", "membership_topic": "--membership-topic",
    "dead_letter_topic": "--dead-letter-topic", "definitions_topic": "--definitions-topic",
    "erasure_max_lag_ms": "--erasure-max-lag-ms", "changes_retention_ms": "--changes-retention-ms",
    "dead_letter_retention_ms": "--dead-letter-retention-ms", "group_id": "--group-id", "instance_id": "--instance-id",
    "state_dir": "--state-dir", "guarantee": "--guarantee", "segments_file": "--segments",
    "partitions": "--partitions", "replication_factor": "--replication-factor", "batch_size": "--batch-size",
    "commit_interval_ms": "--commit-interval-ms", "idle_advance_ms": "--idle-advance-ms",
    "max_message_bytes": "--max-message-bytes", "max_future_skew_ms": "--max-future-skew-ms",
    "metrics_port": "--metrics-port",
    "session_timeout_ms": "--session-timeout-ms", "max_poll_interval_ms": "--max-poll-interval-ms",
    "runtime": "--runtime", "http_host": "--http-host", "http_token_file": "--http-token-file",
}

# field -> (text for a flag or env var, the same as YAML, the resulting value); none is the default.
SAMPLES = {
    "bootstrap_servers": ("k1:9092,k2:9092", "k1:9092,k2:9092", "k1:9092,k2:9092"),
    "input_topics": ("orders,views", "[orders, views]", ("orders", "views")),
    "routed_topics": ("payments", "[payments]", ("payments",)),
    "changes_topic": ("chg", "chg", "chg"),
    "membership_topic": ("mem", "mem", "mem"),
    "dead_letter_topic": ("dlq", "dlq", "dlq"),
    "definitions_topic": ("defs", "defs", "defs"),
    "erasure_max_lag_ms": ("3600000", "3600000", 3600000),
    "changes_retention_ms": ("86400000", "86400000", 86400000),
    "dead_letter_retention_ms": ("172800000", "172800000", 172800000),
    "group_id": ("g2", "g2", "g2"),
    "instance_id": ("segments-0", "segments-0", "segments-0"),
    "state_dir": ("/var/lib/segments", "/var/lib/segments", Path("/var/lib/segments")),
    "guarantee": ("at_least_once", "at_least_once", "at_least_once"),
    "segments_file": ("segs.yaml", "segs.yaml", Path("segs.yaml")),
    "partitions": ("3", "3", 3),
    "replication_factor": ("-1", "-1", -1),
    "batch_size": ("500", "500", 500),
    "commit_interval_ms": ("250", "250", 250),
    "idle_advance_ms": ("5000", "5000", 5000),
    "max_message_bytes": ("2048", "2048", 2048),
    "max_future_skew_ms": ("60000", "60000", 60000),
    "metrics_port": ("9400", "9400", 9400),
    "session_timeout_ms": ("6000", "6000", 6000),
    "max_poll_interval_ms": ("70000", "70000", 70000),
    "runtime": ("faust", "faust", "faust"),
    "http_host": ("127.0.0.1", "127.0.0.1", "127.0.0.1"),
    "http_token_file": ("/run/secrets/http-token", "/run/secrets/http-token", Path("/run/secrets/http-token")),
}
