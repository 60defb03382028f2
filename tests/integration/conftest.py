"""Integration tests run against a real broker: the embedded Tansu by default, or an Apache Kafka
cluster named by SEGMENTS_TEST_BOOTSTRAP, so that the places where Tansu differs from Kafka can be
checked strictly against the real thing.

The fixtures every integration test module may use: the broker, a unique topic prefix, the makers
of worker child processes (`workers`, `start`), which kill what is left of them at the end, and the
set-up of a group of two native workers with input to feed them (`two_workers`).
"""
from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from stream.kafka.embedded_broker import EmbeddedBroker
from stream.runtime.settings import WorkerConfig

from . import conformance
from .workers import FaustProcess, WorkerProcess, create_topics, topic_config

EXTERNAL_BOOTSTRAP_VAR = "SEGMENTS_TEST_BOOTSTRAP"

P = TypeVar("P", WorkerProcess, FaustProcess)


@pytest.fixture(scope="session")
def kafka_flavour() -> str:
    """"external" (Apache Kafka at SEGMENTS_TEST_BOOTSTRAP) or "tansu" (the embedded broker)."""
    return "external" if os.environ.get(EXTERNAL_BOOTSTRAP_VAR) else "tansu"


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_flavour: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if kafka_flavour == "external":
        yield os.environ[EXTERNAL_BOOTSTRAP_VAR]
        return
    # One broker for the session: start-up is cheap, but tests keep apart by topic names
    # (unique_topic), not by broker, so that they run unchanged against a shared Kafka cluster.
    with EmbeddedBroker(log_dir=tmp_path_factory.mktemp("tansu")) as broker:
        yield broker.bootstrap


@pytest.fixture
def unique_topic(request: pytest.FixtureRequest) -> str:
    """A topic-name prefix no other test (nor an earlier run on an external cluster) uses."""
    test_name = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name)[:80].strip("-")
    return f"it-{test_name}-{uuid.uuid4().hex[:8]}"


def _closed_at_the_end(build: Callable[..., P]) -> Iterator[Callable[..., P]]:
    """A maker fixture's body: `build(n, ...)` makes the test's n-th process (from 0), and each one
    made is killed, if it still runs, when the test ends."""
    made: list[P] = []

    def make(*args: Any, **options: Any) -> P:
        made.append(build(len(made), *args, **options))
        return made[-1]

    yield make
    for process in made:
        process.close()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Makes native WorkerProcesses (a state dir each, logs in one dir) and kills whatever is left
    of them when the test ends."""
    def build(_: int, name: str, config: WorkerConfig, **options: Any) -> WorkerProcess:
        return WorkerProcess(name, config, tmp_path / f"state-{name}", tmp_path / "logs", **options)

    yield from _closed_at_the_end(build)


@pytest.fixture
def start(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Callable[..., FaustProcess]]:
    """Starts FaustProcesses, each with a state dir of its own unless given one, and kills whatever
    is left of them when the test ends."""
    def build(n: int, s: WorkerConfig, *options: str, state_dir: Path | None = None) -> FaustProcess:
        return FaustProcess(kafka_bootstrap, s, state_dir or tmp_path / f"state-{n}", tmp_path / f"worker-{n}.log",
                            *options)

    yield from _closed_at_the_end(build)


@pytest.fixture
def two_workers(kafka_bootstrap: str, unique_topic: str, workers: Callable[..., WorkerProcess]
                ) -> Callable[[list[bytes]], tuple[WorkerConfig, WorkerProcess, WorkerProcess, conformance.Feeder]]:
    """Sets up two native workers in one group: the test's topics created, workers "a" and "b"
    (instance ids "a" and "b") and a feeder of `lines` into the input topic, none of them started.
    The feeder sends 100 records a second, slow enough that input still flows while partitions move
    (group joins take seconds on a busy machine); the tests rush the rest."""
    def make(lines: list[bytes]) -> tuple[WorkerConfig, WorkerProcess, WorkerProcess, conformance.Feeder]:
        config = topic_config(kafka_bootstrap, unique_topic)
        create_topics(config)
        a = workers("a", config, instance_id="a")
        b = workers("b", config, instance_id="b")
        return config, a, b, conformance.Feeder(kafka_bootstrap, config.input_topics[0], lines, per_second=100)

    return make
