"""A native worker's partition store brought up to the end of its changelog partition before its
engine runs: where the read starts (the store's checkpoint), when the store is rebuilt instead (a
changelog recreated, or a store away longer than the changelog keeps erasure tombstones), and the
read to the partition's end.
"""
from __future__ import annotations

import logging
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from stream.model.time import DAY_MS
from stream.runtime import metrics
from stream.runtime.topics import outlived_tombstones
from stream.storage.rocksdb_store import PartitionStore

log = logging.getLogger("segments.worker")


def restore(store: PartitionStore, reader: Consumer, topic: str, partition: int, ends: tuple[int, int],
            health: metrics.Health) -> int:
    """Bring the local store up to the end of changelog partition `partition` of `topic`, whose
    offsets are `ends` (low, high), read with `reader` (read_committed, EOF on, nothing assigned);
    the number of records restored."""
    low, high = ends
    start = store.checkpoint() or 0
    if start > high:
        log.warning("partition %d: local checkpoint %d is past the changelog end %d "
                    "(topic recreated?); rebuilding the store", partition, start, high)
        store.wipe()
        start = 0
    elif start and (idle := store.idle_ms()) is not None and outlived_tombstones(idle):
        log.warning("partition %d: the store was last written %.1f days ago, longer than the changelog "
                    "keeps erasure tombstones; rebuilding it", partition, idle / DAY_MS)
        store.wipe()
        start = 0
    if start >= high:
        return 0
    reader.assign([TopicPartition(topic, partition, max(start, low))])
    count = 0

    def records():
        nonlocal count
        while True:
            for msg in reader.consume(10000, 0.2):
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        return
                    raise KafkaException(error)
                count += 1
                if count % 10000 == 0:
                    health.beat = time.monotonic()   # a long restore is not a stall
                yield msg.key(), msg.value(), msg.offset()
    store.restore(records())
    return count
