"""Where a backfill's segment changes go: JSON lines to a file, or a Kafka topic of its own."""
from __future__ import annotations

import dataclasses
from typing import BinaryIO

from confluent_kafka import KafkaError, KafkaException, Producer

from stream.kafka.topic_admin import ensure_topics
from stream.kafka.clients import worker_client_config
from stream.model.changes import SegmentChange, encode_change
from stream.replay.driver import write_changes
from stream.runtime.topics import worker_topics
from stream.runtime.settings import WorkerConfig

# A change as it goes out: its key (the customer id) and its JSON (encode_change).
Encoded = tuple[bytes, bytes]


class TopicSink:
    """Changes to a Kafka topic, keyed by customer id (murmur2, like the workers' changes)."""

    def __init__(self, config: WorkerConfig, topic: str, partitions: int):
        shaped = dataclasses.replace(config, changes_topic=topic)
        ensure_topics(worker_client_config(config), [topic_spec(shaped, topic, partitions)])
        self.topic, self.failed, self.error = topic, 0, None
        self._producer = Producer({"enable.idempotence": True, "linger.ms": 20, "partitioner": "murmur2_random",
                                   "on_delivery": self._delivered, **worker_client_config(config)})

    def _delivered(self, err, _msg) -> None:
        if err is not None:
            self.failed += 1
            self.error = self.error or err

    def write(self, changes: list[SegmentChange]) -> None:
        for change in changes:
            produce(self._producer, self.topic, change.customer_id.encode(), encode_change(change))
        changes.clear()

    def write_encoded(self, changes: list[Encoded]) -> None:
        """Changes already encoded (by a backfill's jobs), in the order they go out."""
        for key, value in changes:
            produce(self._producer, self.topic, key, value)

    def close(self) -> None:
        left = self._producer.flush(60)
        if left or self.failed:
            raise KafkaException(self.error or KafkaError(KafkaError._TIMED_OUT,
                                                          f"{left} changes not delivered to {self.topic}"))


class FileSink:
    """Changes as JSON lines to an open file (stdout for '-'), as `segments replay` writes them."""

    def __init__(self, handle: BinaryIO):
        self.handle = handle

    def write(self, changes: list[SegmentChange]) -> None:
        write_changes(self.handle, changes)

    def write_encoded(self, changes: list[Encoded]) -> None:
        """Changes already encoded (by a backfill's jobs), in the order they go out: the same lines
        as `write` gives the changes."""
        self.handle.write(b"".join([value + b"\n" for _, value in changes]))

    def close(self) -> None:
        self.handle.flush()


def produce(producer: Producer, topic: str, key: bytes, value: bytes | None, partition: int = -1) -> None:
    """One record, waiting while librdkafka's local queue is full. Partition -1 (librdkafka's
    default): the producer's partitioner picks it from the key."""
    while True:
        try:
            producer.produce(topic, key=key, value=value, partition=partition)
            producer.poll(0)
            return
        except BufferError:              # the local queue is full: let it drain
            producer.poll(0.05)


def topic_spec(config: WorkerConfig, name: str, partitions: int):
    """The spec (partition count, configs) the workers of `config` give their topic `name`."""
    shaped = dataclasses.replace(config, partitions=partitions)
    return next(spec for spec in worker_topics(shaped) if spec[0] == name)
