"""Worker settings built as `segments worker` builds them, from flags and an environment: for the
tests of the settings and of the limits other modules keep in step with them."""
from __future__ import annotations

import argparse
from collections.abc import Sequence

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
