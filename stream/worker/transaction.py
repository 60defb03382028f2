"""The native worker's commit of a batch: one Kafka transaction (exactly_once) for the partitions'
changelog records, the batch's output and the consumer offsets, or at_least_once the output then a
synchronous offset commit; every delivery report awaited first. After a failure, the transaction
aborted and the consumer set back to the committed offsets, so the batch is read again.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from stream.kafka.clients import BrokerWatch, unreachable
from stream.runtime.batch import Batch
from stream.worker.partition import PartitionTask

log = logging.getLogger("segments.worker")


class Deliveries:
    """What the producer reported of the batch under way: its first failure, and the next offset of
    each changelog partition written (the stores' checkpoints once the batch is committed)."""

    def __init__(self, changelog_topic: str):
        self.changelog_topic = changelog_topic
        self.failed: KafkaError | None = None
        self.changelog_next: dict[int, int] = {}

    def delivered(self, err: KafkaError | None, msg: Message) -> None:
        """Every produced message reports here: a failure fails the batch (at_least_once would
        otherwise commit offsets past output that never arrived), and changelog offsets become the
        stores' checkpoints."""
        if err is not None:
            self.failed = err
        elif msg.topic() == self.changelog_topic:
            partition, offset = msg.partition(), msg.offset()
            assert partition is not None and offset is not None      # a delivered record has both
            self.changelog_next[partition] = max(self.changelog_next.get(partition, 0), offset + 1)

    def clear(self) -> None:
        self.changelog_next.clear()
        self.failed = None


def commit(producer: Producer, consumer: Consumer, exactly_once: bool, batch: Batch,
           tasks: Iterable[PartitionTask], deliveries: Deliveries) -> None:
    """Everything the batch produced, and the consumer's positions as its offsets, committed
    together; raises KafkaException when they were not."""
    if exactly_once:
        producer.begin_transaction()
    parts = list(tasks)
    _produce_output(producer, batch, parts)
    # The output is on the broker before any changelog record is sent (see _produce_changelog).
    _delivered(producer, deliveries)
    _produce_changelog(producer, deliveries.changelog_topic, parts)
    _delivered(producer, deliveries)
    offsets = [tp for tp in consumer.position(consumer.assignment()) if tp.offset >= 0]
    if exactly_once:
        producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata())
        producer.commit_transaction()
    elif offsets:           # none: nothing consumed since the assignment, its committed offsets stand
        consumer.commit(offsets=offsets, asynchronous=False)       # (librdkafka fails it: _NO_OFFSET)


def _delivered(producer: Producer, deliveries: Deliveries) -> None:
    producer.flush()                  # serves every delivery report of what was produced
    if deliveries.failed is not None:
        raise KafkaException(deliveries.failed)


def _produce_output(producer: Producer, batch: Batch, tasks: list[PartitionTask]) -> None:
    """The batch's changes, membership records and dead letters."""
    produce = producer.produce
    for task in tasks:
        batch.publish(task.changes, task.engine.now, task.store.get)
    for topic, key, value, _, headers in batch.output:      # (none names a partition)
        produce(topic, key=key, value=value, headers=headers)


def _produce_changelog(producer: Producer, changelog_topic: str, tasks: list[PartitionTask]) -> None:
    """The partitions' changelog records, sent only once the broker has the batch's output.

    A restart restores the changelog to its end: a changelog record whose changes never reached
    the broker would make the restarted engine see those changes as done, so they would be lost.
    Produce order alone does not prevent that, since records of different partitions travel in
    separate batches, so a crash can land any subset of them. Two cases need this:
    at_least_once, where every delivered record is visible and the offsets are not yet committed;
    and a broker that shows aborted records to read_committed readers (Tansu,
    docs/embedded-broker.md) under exactly_once. With the output delivered first, such a crash
    repeats changes (same change_id) instead, and the consumers de-duplicate them. On Kafka under
    exactly_once the transaction is atomic anyway, and the extra flush costs one round trip."""
    produce = producer.produce
    for task in tasks:
        task.store.set_stream_time(task.engine.now)
        partition = task.partition
        for state_key, state in task.store.pending():
            produce(changelog_topic, key=state_key, value=state, partition=partition)


def aborted(producer: Producer) -> bool:
    """Abort the open transaction; False when it cannot be ended (e.g. the broker lost it): a new
    producer with the same transactional id aborts it on initialisation."""
    try:
        producer.abort_transaction(10)
    except KafkaException as abort_error:
        if abort_error.args[0].fatal():
            raise
        log.warning("abort failed (%s); starting a new producer", abort_error.args[0])
        return False
    return True


def seek_committed(consumer: Consumer, assignment: list[TopicPartition], pause: float, stop: threading.Event,
                   watch: BrokerWatch, waiting: Callable[[float], None]) -> None:
    """After `pause`, set the consumer back to the committed offsets of `assignment`, asking again
    while they cannot be had; nothing when stopped meanwhile (nothing of the failed batch was committed)."""
    while not stop.wait(pause):
        try:
            committed = consumer.committed(assignment, timeout=10)
            break
        except KafkaException as offsets_error:
            reason = unreachable(offsets_error)
            if reason is None:
                log.warning("committed offsets unavailable (%s); asking again", offsets_error.args[0])
            else:
                watch.down(reason)       # said at the watch's bounded rate
            waiting(pause)
    else:
        return                  # stopping: nothing of the failed batch was committed
    for tp in committed:
        consumer.seek(TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else 0))
