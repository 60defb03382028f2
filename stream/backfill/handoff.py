"""The hand-off: a backfill's rebuilt state written as the workers of a new consumer group restore
it, with their input offsets, in one Kafka transaction."""
from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable, Iterator

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from stream.backfill.definitions import handoff_record
from stream.backfill.plan import Span, consumer_config
from stream.backfill.sinks import produce, topic_spec
from stream.engine.store import MemoryStore
from stream.kafka.topic_admin import ensure_topics
from stream.kafka.clients import worker_client_config
from stream.model.state import dump_state
from stream.rules.catalog import Catalog
from stream.runtime.topics import PRODUCER_BATCH_BYTES
from stream.runtime.settings import WorkerConfig
from stream.storage.keys import stream_time_record


def dumped(store: MemoryStore) -> Iterator[tuple[str, bytes]]:
    """A store's states as hand_off takes them: (customer id, dump_state) by customer id."""
    return ((customer_id, dump_state(store[customer_id])) for customer_id in sorted(store))


def hand_off(config: WorkerConfig, group: str, states: Iterable[tuple[str, bytes]], now: int | None,
             spans: list[Span], partitions: int, catalog: Catalog) -> tuple[int, int]:
    """The rebuilt state (dumped, by customer id: `dumped`) as the workers of `group` restore it
    (with the definitions of `catalog` it was evaluated under), and their input offsets at each
    span's end, in one transaction. Returns the number of customers and of changelog records."""
    target = dataclasses.replace(config, group_id=group)
    topic = target.changelog_topic
    ensure_topics(worker_client_config(config), [topic_spec(target, topic, partitions)])
    failures: list[KafkaError] = []

    def delivered(err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            failures.append(err)

    producer = Producer({"transactional.id": f"{group}-backfill", "partitioner": "murmur2_random", "linger.ms": 20,
                         "transaction.timeout.ms": 900_000,
                         "batch.size": PRODUCER_BATCH_BYTES,     # within the changelog's max.message.bytes
                         "on_delivery": delivered,
                         **worker_client_config(config)})
    member = Consumer({**consumer_config(config, "read_uncommitted"), "group.id": group})
    try:
        producer.init_transactions(60)
        producer.begin_transaction()
        # Keyed by customer id with the workers' partitioner: each state lands in the partition of
        # the changelog that the worker owning the customer's input partition restores.
        customers = 0
        for customer_id, state in states:
            produce(producer, topic, customer_id.encode(), state)
            customers += 1
        meta = [handoff_record(catalog), *([stream_time_record(now)] if now is not None else [])]
        for partition in range(partitions):
            for key, value in meta:
                produce(producer, topic, key, value, partition)
        producer.flush()
        if failures:
            raise KafkaException(failures[0])
        producer.send_offsets_to_transaction([TopicPartition(s.topic, s.partition, s.end) for s in spans],
                                             member.consumer_group_metadata(), 60)
        producer.commit_transaction(120)
    except BaseException:
        # Whatever failed (Kafka, or the states given: a backfill job's), an open transaction would
        # hold back every read_committed reader of the changelog until it timed out.
        with contextlib.suppress(KafkaException):
            producer.abort_transaction(30)
        raise
    finally:
        member.close()
        producer.flush(0)
    return customers, customers + partitions * len(meta)
