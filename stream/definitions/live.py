"""Segment definitions changed while the worker runs: the Kafka side (see stream.definitions.resolution).

DefinitionsFeed reads the whole definitions topic before the worker processes anything (partitions
assigned directly, no group, read_committed) and keeps following it. LiveDefinitions gives each
partition the definitions it runs: on assignment (restore, a file edited between restarts, a change
missed while stopped) and whenever the topic changes. A change switches the partition's engine at
once and starts a pass over its stored customers, run a chunk per loop turn in the worker's
transaction like any batch: the moves, the changelog records of changed customers, and the pass's
progress (the partition's Running record, under DEFINITIONS_KEY). A worker killed mid-pass resumes
from its last committed chunk; moves already committed are not repeated (their customers'
memberships are already updated), none is lost.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Iterable

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from stream.runtime import metrics
from stream.kafka.clients import client_config
from stream.definitions.resolution import (Rejection, Resolution, Running, TopicRecord, decode_running, encode_running,
                          parse_record, redefine, resolve, still_incomplete)
from stream.engine.redefinition import Redefinition
from stream.rules.compiler import valid_name
from stream.storage.keys import DEFINITIONS_KEY

if TYPE_CHECKING:
    from stream.worker.loop import PartitionTask

log = logging.getLogger("segments.definitions")

TOPIC_CONFIG = {"cleanup.policy": "compact"}


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


class LiveDefinitions:
    """Each partition's definitions, kept up to date; what the worker calls around its loop."""

    def __init__(self, file: dict[str, dict[str, Any]], feed: DefinitionsFeed | None,
                 chunk: int = 20_000, chunk_seconds: float = 0.5):
        self.file = file
        self.feed = feed
        self.chunk, self.chunk_seconds = chunk, chunk_seconds
        self.running: dict[int, Running] = {}
        self.rejected: dict[str, Rejection] = {}
        self._counted: set[tuple[str, str]] = set()      # rejections already counted in the metric

    @property
    def topic(self) -> dict[str, TopicRecord]:
        return self.feed.records if self.feed is not None else {}

    def resolve(self, running: Running | None) -> Resolution:
        return resolve(self.file, self.topic, running.definitions if running is not None else None)

    def attach(self, task: PartitionTask) -> None:
        """Bring a partition (just assigned, or reset to its committed state) to the current
        definitions: what its store says it ran, diffed against what runs now."""
        raw = task.store.meta(DEFINITIONS_KEY)
        running = self.assumed() if raw is None else decode_running(raw)
        self._move(task, running, first=raw is None)

    def assumed(self) -> Running:
        """What a store without a definitions record was evaluated under: a new store, or one
        written before definitions could change while running, so the segments file (the only
        source then). A backfill resolves against it too, as a fresh worker would."""
        return Running(resolve(self.file, {}, None).definitions)

    def refresh(self, tasks: Iterable[PartitionTask]) -> None:
        """After the topic changed: every partition moves to the new definitions."""
        for task in tasks:
            self._move(task, self.running[task.partition])

    def _move(self, task: PartitionTask, running: Running, first: bool = False) -> None:
        resolution = self.resolve(running)
        self._report(resolution)
        moved = redefine(running, resolution, task.engine.now)
        task.catalog = resolution.catalog
        task.engine.redefine(resolution.catalog)
        self.running[task.partition] = moved
        if moved is not running or first:
            task.store.set_meta(DEFINITIONS_KEY, encode_running(moved))
        if moved.redefine and moved is not running:
            log.info("partition %d: re-evaluating %s over its stored customers (definitions changed)",
                     task.partition, ", ".join(f"{n} (removed)" if v is not None else
                                               f"{n} v{resolution.definitions[n].get('version', 1)}"
                                               for n, v in moved.redefine.items()))
            for name, flags in moved.incomplete.items():
                for flag in flags:
                    log.warning("segment %s: needs a backfill: %s", name, flag.describe())
        self._set_gauges()

    def step(self, tasks: Iterable[PartitionTask]) -> bool:
        """One loop turn: follow the topic, then a chunk of each partition's pass (bounded in
        customers and time, so the partition keeps polling within max.poll.interval.ms and the
        transaction stays small). True when a chunk ran (its progress must be committed)."""
        tasks = list(tasks)
        if self.feed is not None and self.feed.poll():
            self.refresh(tasks)
        ran = False
        for task in tasks:
            running = self.running.get(task.partition)
            if running is None:
                continue
            if running.redefine:
                self._chunk(task, running)
                ran = True
            elif running.incomplete and still_incomplete(running, task.engine.now) != running.incomplete:
                # a window has passed since the change: that segment's answer is complete now
                done = Running(running.definitions, {}, None, still_incomplete(running, task.engine.now))
                self.running[task.partition] = done
                task.store.set_meta(DEFINITIONS_KEY, encode_running(done))
                self._set_gauges()
                ran = True
        return ran

    def _chunk(self, task: PartitionTask, running: Running) -> None:
        engine, store = task.engine, task.store
        redefinition = Redefinition(running.redefine)
        deadline = time.perf_counter() + self.chunk_seconds
        after, seen, out_of_time = running.after, 0, False
        for customer_id, state in store.scan(after, self.chunk):
            engine.reevaluate(customer_id, state, redefinition, task.changes)
            after, seen = customer_id, seen + 1
            if not seen % 1000 and time.perf_counter() > deadline:
                out_of_time = True
                break
        metrics.REEVALUATED.inc(seen)
        if seen < self.chunk and not out_of_time:          # the walk reached the end of the store
            done = Running(running.definitions, {}, None, still_incomplete(running, engine.now))
            log.info("partition %d: re-evaluation of %s done", task.partition, ", ".join(running.redefine))
        else:
            done = Running(running.definitions, running.redefine, after, running.incomplete)
        self.running[task.partition] = done
        store.set_meta(DEFINITIONS_KEY, encode_running(done))
        self._set_gauges()

    def forget(self, partition: int) -> None:
        self.running.pop(partition, None)
        self._set_gauges()

    def _report(self, resolution: Resolution) -> None:
        for name, rejection in resolution.rejected.items():
            key = (name, rejection.source)
            if key not in self._counted:
                self._counted.add(key)
                # A record's key is anyone's text: a label (and a log line) only as long as a name is
                metrics.DEFINITIONS_REJECTED.labels(name if valid_name(name) else "(invalid name)").inc()
                log.error("segment %.80s: definition from %s rejected, the previous one keeps running: %s",
                          name, rejection.source, "; ".join(rejection.problems))
        self.rejected = dict(resolution.rejected)

    def _set_gauges(self) -> None:
        metrics.REEVALUATIONS_RUNNING.set(sum(1 for r in self.running.values() if r.redefine))
        versions: dict[str, int] = {}
        incomplete: set[str] = set()
        for running in self.running.values():
            for name, definition in running.definitions.items():
                versions[name] = max(versions.get(name, 0), definition.get("version", 1))
            incomplete |= running.incomplete.keys()
        metrics.set_labelled(metrics.DEFINITION_VERSION, versions)
        metrics.set_labelled(metrics.DEFINITION_INCOMPLETE, {name: 1 for name in incomplete})

    def describe(self) -> dict[str, Any]:
        """What GET /definitions answers: per segment the running version and where it came from,
        rejected candidates with their reasons, segments needing a backfill, passes under way."""
        segments: dict[str, Any] = {}
        for partition, running in sorted(self.running.items()):
            resolution_sources = self.resolve(running).sources
            for name, definition in running.definitions.items():
                entry = segments.setdefault(name, {"version": definition.get("version", 1),
                                                   "source": resolution_sources.get(name, "running"),
                                                   "definition": definition, "partitions": [],
                                                   "reevaluating_partitions": [], "needs_backfill": []})
                entry["partitions"].append(partition)
                if name in running.redefine:
                    entry["reevaluating_partitions"].append(partition)
                for flag in running.incomplete.get(name, []):
                    described = flag.describe()
                    if described not in entry["needs_backfill"]:
                        entry["needs_backfill"].append(described)
        return {"segments": segments, "rejected": [r.describe() for r in self.rejected.values()],
                "topic": self.feed.topic if self.feed is not None else None}


# ------------------------------------------------------------------------------------------------
# segments define / undefine


def publish(bootstrap: str, kafka: dict[str, str], topic: str, name: str, value: bytes | None) -> None:
    producer = Producer({**client_config(bootstrap, kafka), "enable.idempotence": True})
    failed: list[KafkaError] = []
    producer.produce(topic, key=name.encode(), value=value,
                     on_delivery=lambda err, msg: failed.append(err) if err is not None else None)
    producer.flush(30)
    if failed:
        raise KafkaException(failed[0])
    if len(producer):
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "definition not delivered within 30 s"))


def read_topic(bootstrap: str, kafka: dict[str, str], topic: str) -> DefinitionsFeed:
    """The definitions topic read to its end, once (for segments define / undefine)."""
    feed = DefinitionsFeed(client_config(bootstrap, kafka), topic)
    try:
        feed.catch_up(30)
    finally:
        feed.close()
    return feed
