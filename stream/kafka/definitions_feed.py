"""The definitions topic on the Kafka side: DefinitionsFeed reads it whole before a worker processes
anything (partitions assigned directly, no group, read_committed) and then follows it, for
stream.definitions.live; publish and read_topic are `segments define` and `undefine`'s."""
from __future__ import annotations

import logging
import time
from typing import Any
from collections.abc import Iterable, Mapping

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from stream.definitions.resolution import TopicRecord, parse_record
from stream.kafka.clients import client_config

log = logging.getLogger("segments.definitions")


class DefinitionsFeed:
    """The definitions topic, read from the start and followed: the latest record per name."""

    def __init__(self, common: dict[str, Any], topic: str):
        self.topic = topic
        self.records: dict[str, TopicRecord] = {}
        self.highest: dict[str, int] = {}       # the highest version each name had in what was read
        self._consumer = Consumer({**common, "group.id": "segments-definitions-reader",
                                   "enable.auto.commit": False, "isolation.level": "read_committed",
                                   "auto.offset.reset": "earliest", "enable.partition.eof": True})

    def catch_up(self, timeout: float = 60.0) -> None:
        """Read every partition to its end (EOF), before any input is processed."""
        metadata = self._consumer.list_topics(self.topic, timeout=timeout).topics[self.topic]
        if metadata.error is not None:
            raise KafkaException(metadata.error)
        partitions = sorted(metadata.partitions)
        self._consumer.assign([TopicPartition(self.topic, p, 0) for p in partitions])
        ended: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(ended) < len(partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"definitions topic {self.topic!r}: partitions {sorted(set(partitions) - ended)} "
                                   f"not read to their end within {timeout:.0f}s")
            ended |= self._take(self._consumer.consume(1000, 0.2))

    def poll(self) -> bool:
        """Take what arrived since, without waiting; True when any record did."""
        before = dict(self.records)
        self._take(self._consumer.consume(500, 0))
        return self.records != before

    def _take(self, messages: Iterable[Any]) -> set[int]:
        ended = set()
        for msg in messages:
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    ended.add(msg.partition())
                    continue
                raise KafkaException(error)
            record = parse_record(msg.key(), msg.value(), msg.offset())
            if record is None:
                log.warning("definitions topic: record at partition %d offset %d has no segment name as key; ignored",
                            msg.partition(), msg.offset())
                continue
            self.records[record.name] = record
            version = record.definition.get("version") if record.definition is not None else None
            if isinstance(version, int) and not isinstance(version, bool):
                self.highest[record.name] = max(self.highest.get(record.name, 0), version)
        return ended

    def close(self) -> None:
        self._consumer.close()


def caught_up_feed(common: dict[str, Any], topic: str) -> DefinitionsFeed:
    """A worker's feed, read to the end of the topic (a runtime's start-up step)."""
    feed = DefinitionsFeed(common, topic)
    try:
        feed.catch_up()
    except BaseException:
        feed.close()
        raise
    return feed


def publish(bootstrap: str, kafka: Mapping[str, str], topic: str, name: str, value: bytes | None) -> None:
    producer = Producer({**client_config(bootstrap, kafka), "enable.idempotence": True})
    failed: list[KafkaError] = []
    producer.produce(topic, key=name.encode(), value=value,
                     on_delivery=lambda err, msg: failed.append(err) if err is not None else None)
    producer.flush(30)
    if failed:
        raise KafkaException(failed[0])
    if len(producer):
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "definition not delivered within 30 s"))


def read_topic(bootstrap: str, kafka: Mapping[str, str], topic: str) -> DefinitionsFeed:
    """The definitions topic read to its end, once (for segments define / undefine)."""
    feed = DefinitionsFeed(client_config(bootstrap, kafka), topic)
    try:
        feed.catch_up(30)
    finally:
        feed.close()
    return feed
