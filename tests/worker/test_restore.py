"""stream.worker.restore without Kafka: a PartitionStore brought up to its changelog's end by a reader
that hands over the changelog partition's records, then its end (EOF); wiped first when its
checkpoint is past that end."""
from __future__ import annotations

from confluent_kafka import KafkaError, TopicPartition

from stream.engine.core import Engine
from stream.model.state import dump_state
from stream.rules.catalog import load_catalog
from stream.runtime import metrics
from stream.storage.rocksdb_store import PartitionStore
from stream.worker.restore import restore
from tests.helpers import DAY, order_paid

TOPIC = "g-changelog"


class _Message:
    def __init__(self, key: bytes | None = None, value: bytes | None = None, offset: int = -1,
                 error: KafkaError | None = None):
        self._key, self._value, self._offset, self._error = key, value, offset, error

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def offset(self) -> int:
        return self._offset

    def error(self) -> KafkaError | None:
        return self._error


class _Reader:
    """A changelog partition's records from the assigned offset on, then its EOF."""

    def __init__(self, records: list[tuple[bytes, bytes, int]]):
        self.records = records
        self.assigned: list[TopicPartition] = []
        self._done = False

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.assigned = partitions

    def consume(self, n: int, timeout: float) -> list[_Message]:
        if self._done:
            return []
        self._done = True
        start = self.assigned[0].offset
        return [*(_Message(key, value, offset) for key, value, offset in self.records if offset >= start),
                _Message(error=KafkaError(KafkaError._PARTITION_EOF))]


def _changelog(customers: int) -> list[tuple[bytes, bytes, int]]:
    engine = Engine(load_catalog())
    for n in range(customers):
        engine.apply(order_paid(f"c{n}", DAY, f"o{n}", 10.0))
    return [(customer_id.encode(), dump_state(state), offset)
            for offset, (customer_id, state) in enumerate(sorted(engine.store.items()))]


def test_a_new_store_reads_its_changelog_to_the_end(tmp_path):
    store, records = PartitionStore(tmp_path / "p0"), _changelog(3)
    reader = _Reader(records)
    assert restore(store, reader, TOPIC, 0, (0, 3), metrics.Health()) == 3
    assert reader.assigned[0].topic == TOPIC and reader.assigned[0].offset == 0
    assert store.checkpoint() == 3 and {customer_id for customer_id, _ in store.items()} == {"c0", "c1", "c2"}
    again = _Reader(records)
    assert restore(store, again, TOPIC, 0, (0, 3), metrics.Health()) == 0
    assert again.assigned == []                     # at the end already: nothing read
    store.close()


def test_a_store_past_its_changelogs_end_is_rebuilt(tmp_path):
    store, records = PartitionStore(tmp_path / "p0"), _changelog(3)
    restore(store, _Reader(records), TOPIC, 0, (0, 3), metrics.Health())
    recreated = _Reader(records[:1])                # the topic recreated: one record so far
    assert restore(store, recreated, TOPIC, 0, (0, 1), metrics.Health()) == 1
    assert recreated.assigned[0].offset == 0
    assert store.checkpoint() == 1 and [customer_id for customer_id, _ in store.items()] == ["c0"]
    store.close()
