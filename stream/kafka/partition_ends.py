"""Where a partition really ends, and reading a little of several partitions at once.

The embedded broker (Tansu) reports as a partition's high watermark the base offset of its last
record batch + 1, short of that batch's other records (docs/embedded-broker.md); Kafka reports the
real end. Reading on from the reported watermark to the end of the partition is right on both.
"""
from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

END_PROBE_MAX = 10_000       # messages read past the reported high watermark to find the real end

Key = tuple[str, int]        # (topic, partition)


def partition_ends(probe: Consumer, keys: list[Key]) -> tuple[dict[Key, int], dict[Key, int]]:
    """Each partition's first offset and its end now. The end is read, not only asked: the embedded
    broker reports as high watermark the base offset of the last record batch + 1, short of the
    batch's other records; reading on from there to the end of the partition finds the real one."""
    lows, highs = {}, {}
    for key in keys:
        lows[key], highs[key] = probe.get_watermark_offsets(TopicPartition(*key), timeout=30)
    ends = dict(highs)
    nonempty = {key: highs[key] - 1 for key in keys if highs[key] > lows[key]}
    for key, (stopped, _) in peek(probe, nonempty, {k: highs[k] + END_PROBE_MAX for k in nonempty}).items():
        ends[key] = max(highs[key], stopped)
    return lows, ends


def peek(consumer: Consumer, starts: dict[Key, int], stops: dict[Key, int],
         timeout: float = 30.0) -> dict[Key, tuple[int, list[tuple[int, int]]]]:
    """Read each partition from starts[key] until its end or the record before stops[key]:
    (the offset reading stopped at, [(offset, timestamp ms)])."""
    if not starts:
        return {}
    found: dict[Key, tuple[int, list[tuple[int, int]]]] = {}
    seen: dict[Key, list[tuple[int, int]]] = {key: [] for key in starts}
    consumer.assign([TopicPartition(t, p, offset) for (t, p), offset in starts.items()])
    deadline = time.monotonic() + timeout
    try:
        while len(found) < len(starts):
            if time.monotonic() > deadline:
                raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "reading partition ends timed out"))
            for msg in consume_ready(consumer):
                key = (msg.topic(), msg.partition())
                if key in found:
                    continue
                error = msg.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise KafkaException(error)
                    found[key] = (msg.offset(), seen[key])
                    continue
                seen[key].append((msg.offset(), msg.timestamp()[1]))
                if msg.offset() + 1 >= stops[key]:
                    found[key] = (msg.offset() + 1, seen[key])
    finally:
        consumer.unassign()
    return found


def consume_ready(consumer: Consumer, size: int = 5000) -> list:
    """What is already fetched, without waiting; only when nothing is, wait for one message.
    consume(n, timeout) alone waits out the whole timeout at the end of the data."""
    messages = consumer.consume(size, 0)
    if not messages:
        first = consumer.poll(0.5)
        if first is not None:
            messages = [first, *consumer.consume(size - 1, 0)]
    return messages
