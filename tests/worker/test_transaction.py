"""stream.worker.transaction without Kafka: what one batch's transaction produces, in what order."""
from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from stream.rules.catalog import load_catalog
from stream.runtime.batch import BatchStep
from stream.runtime.settings import WorkerConfig
from stream.storage.keys import DEFINITIONS_KEY
from stream.storage.rocksdb_store import PartitionStore
from stream.worker.partition import PartitionTask
from stream.worker.transaction import Deliveries, commit
from tests.helpers import DAY, event_bytes

CONFIG = WorkerConfig(bootstrap_servers="unused:9092", input_topics=("events",), group_id="g")
CHANGELOG = "g-state-changelog"


class _Producer:
    """Records what is produced, in order; a transaction that always commits."""

    def __init__(self) -> None:
        self.produced: list[tuple[str, bytes | None, int | None]] = []
        self.calls: list[str] = []

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    def produce(self, topic: str, key: bytes | None = None, value: bytes | None = None, partition: int = -1,
                headers: Any = None) -> None:
        self.produced.append((topic, key, partition if partition >= 0 else None))
        self.calls.append(f"produce {topic}")

    def flush(self) -> None:
        self.calls.append("flush")

    def send_offsets_to_transaction(self, offsets: Any, metadata: Any) -> None:
        self.calls.append("offsets")

    def commit_transaction(self) -> None:
        self.calls.append("commit")


class _Consumer:
    """Assigned events-0, at `position` (librdkafka's OFFSET_INVALID, -1001, while nothing was
    consumed since the assignment). Its commit fails as librdkafka's does without a valid offset."""
    committed = 0

    def __init__(self, position: int = 10):
        self.at = position

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        assert not asynchronous
        if not any(tp.offset >= 0 for tp in offsets):
            raise KafkaException(KafkaError(KafkaError._NO_OFFSET))
        self.committed += 1

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition("events", 0)]

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self.at) for tp in partitions]

    def consumer_group_metadata(self) -> object:
        return object()


@pytest.mark.parametrize("exactly_once", [True, False])
def test_the_changelog_is_sent_only_once_the_output_is_on_the_broker(tmp_path, exactly_once):
    """A restart restores the changelog to its end, so a changelog record that reached the broker
    while its changes did not would lose them. Records of different partitions travel in separate
    batches, so produce order alone does not prevent it. at_least_once shows every delivered
    record, and so does Tansu under exactly_once, aborted ones included. The output is therefore
    flushed before the first changelog record is produced, and a crash then repeats changes
    (same change_id) instead of losing them."""
    step = BatchStep(CONFIG)
    batch = step.batch()
    tasks = [PartitionTask(p, PartitionStore(tmp_path / f"p{p}"), load_catalog()) for p in (0, 1)]
    for n, task in enumerate(tasks):
        for i in range(3):
            raw = event_bytes("order_paid", f"c{n}-{i}", 10 * DAY + i, order_id=f"o{n}-{i}", amount=60000.0)
            batch.take("events", task.partition, i, f"c{n}-{i}".encode(), raw, task)
    batch.take("events", 0, 9, b"x", b"not json", tasks[0])
    assert all(task.changes for task in tasks)
    producer, deliveries = _Producer(), Deliveries(CHANGELOG)
    consumer = _Consumer()
    commit(producer, consumer, exactly_once, batch, tasks, deliveries)
    topics = [topic for topic, _, _ in producer.produced]
    first_changelog = topics.index(CHANGELOG)
    assert set(topics[first_changelog:]) == {CHANGELOG}, topics
    assert {CONFIG.changes_topic, CONFIG.membership_topic, CONFIG.dead_letter_topic} <= set(topics[:first_changelog])
    assert {p for topic, _, p in producer.produced if topic == CHANGELOG} == {0, 1}
    calls = producer.calls
    changelog_from = calls.index(f"produce {CHANGELOG}")
    assert calls[changelog_from - 1] == "flush", calls            # the output delivered first
    assert [c for c in calls if not c.startswith("produce")] == \
        (["begin", "flush", "flush", "offsets", "commit"] if exactly_once else ["flush", "flush"])
    assert consumer.committed == (0 if exactly_once else 1)       # at_least_once: offsets after both
    for task in tasks:
        task.store.close()


@pytest.mark.parametrize("exactly_once", [True, False])
def test_a_commit_with_nothing_consumed_since_the_assignment_succeeds(tmp_path, exactly_once):
    """A partition assigned at its end (a restart with nothing new) has no position until a record
    comes, yet a commit may carry output: the idle clock's changes, a re-evaluation chunk. Its
    committed offset is already where the input stands; librdkafka's consumer commit fails without
    any valid offset (_NO_OFFSET, as the embedded broker shows), which made every such commit fail
    and be redone, its output repeated, under at_least_once."""
    batch = BatchStep(CONFIG).batch()
    task = PartitionTask(0, PartitionStore(tmp_path / "p0"), load_catalog())
    task.store.set_meta(DEFINITIONS_KEY, b"{}")             # something to commit (a pass's progress, say)
    consumer = _Consumer(position=-1001)
    try:
        commit(_Producer(), consumer, exactly_once, batch, [task], Deliveries(CHANGELOG))
    finally:
        task.store.close()
    assert consumer.committed == 0
