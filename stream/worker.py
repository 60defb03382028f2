"""`segments worker`: the engine behind a Kafka consumer group, one engine per input partition.

Each loop turn consumes a batch, applies it to the partitions' engines, and publishes in ONE
Kafka transaction (exactly_once): segment changes, membership records, dead letters, one
changelog record per dirty customer, and the consumer offsets. Only after that transaction
commits does the partition's local RocksDB store take the same records (stream.store), so the
local state is never ahead of Kafka. A crash anywhere loses nothing: the input is read again from
the committed offsets and the state restored from the store plus the changelog.

Topics keyed by customer id must all have the worker's number of partitions: partition p of each
feeds engine p (the range assignor gives them to the same worker), so their producers must use the
Java client's partitioner (murmur2, librdkafka's `murmur2_random`), as the worker does itself.
Topics keyed otherwise (orders by order_id) are "routed": their events are re-published, keyed by
customer id, to an internal repartition topic that the worker then reads like any keyed input.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter as TallyCounter
from typing import Callable

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from . import metrics
from .broker import ensure_topics
from .changes import SegmentChange, encode_change
from .config import WorkerConfig
from .definitions import file_definitions
from .engine import Engine
from .events import DeadLetter
from .inspect_http import segment_routes
from .live_definitions import DefinitionsFeed, LiveDefinitions
from .partition_ends import partition_ends
from .rules import Catalog
from .runtime import (DEAD_LETTER_BYTES, TYPE_OF, Intake, Spec, advance_idle, apply_counted, dead_letter,
                      membership, worker_topics)
from .store import PartitionStore
from .timeutil import SECOND, format_rfc3339

log = logging.getLogger("segments.worker")

_OBSERVE_EVERY = 5.0              # seconds between updates of the gauges that cost a look around


def _log_client_error(error: KafkaError) -> None:
    log.warning("kafka client: %s", error)


class PartitionTask:
    """Input partition p: its store, its engine, and what the current batch produced."""

    def __init__(self, partition: int, store: PartitionStore, catalog: Catalog):
        self.partition = partition
        self.store = store
        self.catalog = catalog
        self.changes: list[SegmentChange] = []
        self.last_input = time.monotonic()
        self.hits_reported = self.misses_reported = 0
        self.engine = self._fresh_engine()

    def _fresh_engine(self) -> Engine:
        """An engine over the committed state. The same pass counts members per segment, so the
        members gauge is right from the start, not counted since the worker started."""
        members: TallyCounter[str] = TallyCounter()

        def counted():
            for customer_id, state in self.store.items():
                members.update(state.member.keys())
                yield customer_id, state
        engine = Engine(self.catalog, self.store)
        engine.restore(counted(), now=self.store.stream_time())
        self.members = members
        return engine

    def count_members(self) -> None:
        """Fold the batch's changes into the member counts (before they are cleared)."""
        for change in self.changes:
            self.members[change.segment] += 1 if change.change == "entered" else -1

    def reset(self) -> None:
        """The transaction failed: back to the last committed state."""
        self.store.abort()
        self.changes.clear()
        self.engine = self._fresh_engine()


class Worker:
    def __init__(self, config: WorkerConfig, catalog: Catalog,
                 on_batch: Callable[[int, int], None] | None = None):
        if config.bootstrap_servers is None or config.instance_id is None:
            raise ValueError("the worker needs resolved bootstrap servers and instance id (see stream.cli)")
        self.s = config
        self.catalog = catalog
        self.on_batch = on_batch          # (events, changes) after each committed batch
        self.tasks: dict[int, PartitionTask] = {}
        self._admit = Intake(config).admit
        self._changelog_next: dict[int, int] = {}
        self.health = metrics.Health()
        self._next_observe = 0.0
        self._undelivered: KafkaError | None = None
        self._failures = 0                # batches in a row that could not be committed
        self._stop = threading.Event()
        self.live = LiveDefinitions(file_definitions(catalog), None)

    # -- set-up ----------------------------------------------------------------------------------

    def topics(self) -> list[Spec]:
        """The topics the worker creates when absent (routed input topics are the producers')."""
        return worker_topics(self.s)

    def _common(self) -> dict[str, object]:
        # error_cb: the worker's own log says when the brokers cannot be reached (and when they
        # can again), not only librdkafka's.
        return {"bootstrap.servers": self.s.bootstrap_servers, "error_cb": _log_client_error, **self.s.kafka}

    def stop(self) -> None:
        self._stop.set()

    # -- the loop --------------------------------------------------------------------------------

    def run(self) -> None:
        s = self.s
        ensure_topics(s.bootstrap_servers, self.topics(), replication_factor=s.replication_factor)
        if s.definitions_topic is not None:
            self.live.feed = DefinitionsFeed(self._common(), s.definitions_topic)
            self.live.feed.catch_up()
        self.producer = self._new_producer()
        self.consumer = Consumer({
            **self._common(),
            "group.id": s.group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "partition.assignment.strategy": "range",
            "session.timeout.ms": s.session_timeout_ms,
            "max.poll.interval.ms": s.max_poll_interval_ms,
            "fetch.wait.max.ms": 50,
        })
        # list(dict) copies the keys in one step under the GIL: safe from the HTTP threads.
        route = segment_routes(s.state_dir, s.group_id, lambda: self.catalog, lambda: list(self.tasks),
                               self.live.describe)
        http = metrics.serve(s.metrics_port, self.health, route) if s.metrics_port else None
        self.consumer.subscribe([*s.keyed_topics, *s.routed_topics], on_assign=self._on_assign,
                                on_revoke=self._on_revoke, on_lost=self._on_revoke)
        try:
            while not self._stop.is_set():
                self.health.beat = time.monotonic()
                self._process(self._next_batch())
                if time.monotonic() >= self._next_observe:
                    self._observe()
        finally:
            self.consumer.close()
            self.producer.close()     # a connection left open makes the broker wait at shutdown
            if http is not None:
                metrics.stop(http)
            if self.live.feed is not None:
                self.live.feed.close()
            for task in self.tasks.values():
                task.store.close()
            self.tasks.clear()

    def _next_batch(self) -> list[Message]:
        """Whatever is already fetched, without waiting; only when nothing is, wait for the first
        message. consume(n, timeout) alone would wait for n messages or the whole timeout even with
        messages at hand: latency at moderate load. This way batches grow with the load by
        themselves (what arrives during one commit is the next batch)."""
        consumer, size = self.consumer, self.s.batch_size
        messages = consumer.consume(size, 0)
        if not messages:
            first = consumer.poll(self.s.commit_interval_ms / 1000)
            if first is not None:
                messages = [first, *consumer.consume(size - 1, 0)]
        return messages

    def _new_producer(self) -> Producer:
        s = self.s
        config = {**self._common(), "enable.idempotence": True, "linger.ms": 5, "on_delivery": self._delivered,
                  "partitioner": "murmur2_random", "message.max.bytes": DEAD_LETTER_BYTES + 65536}
        if s.exactly_once:
            config["transactional.id"] = f"{s.group_id}-{s.instance_id}"
        producer = Producer(config)
        if s.exactly_once:
            # Fences a previous incarnation of this instance and aborts its open transaction, which
            # would otherwise hold back every read_committed reader of its partitions.
            producer.init_transactions(30)
        return producer

    def _process(self, messages: list[Message]) -> None:
        started = time.perf_counter()
        events = 0
        dead: list[tuple[Message, DeadLetter]] = []
        routed: list[tuple[bytes, bytes]] = []
        routed_topics = self.s.routed_topics
        outcomes: TallyCounter[tuple[str, str, str]] = TallyCounter()
        caused: list[float] = []          # event times (s) of events whose changes this batch commits
        fired_before = self._timers_fired()
        now, wall = time.monotonic(), int(time.time() * SECOND)
        for msg in messages:
            error = msg.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("consume: %s", error)
                continue
            event = self._admit(msg.topic(), msg.key(), msg.value(), wall)
            if type(event) is DeadLetter:
                dead.append((msg, event))
                outcomes[(msg.topic(), "invalid", "dead_letter")] += 1
                continue
            if msg.topic() in routed_topics:
                # Keyed by customer id, as the repartition topic's reader (Intake) requires.
                routed.append((event.customer_id.encode(), msg.value()))
                outcomes[(msg.topic(), TYPE_OF[type(event)], "routed")] += 1
                continue
            task = self.tasks.get(msg.partition())
            if task is None:
                continue            # a record of a partition revoked within this batch
            before = len(task.changes)
            outcome = apply_counted(task.engine, event, task.changes)
            outcomes[(msg.topic(), TYPE_OF[type(event)], outcome)] += 1
            if len(task.changes) != before:
                caused.append(event.occurred_at.timestamp())
            task.last_input = now
            events += 1
        self._advance_idle(now)
        redefining = self.live.step(self.tasks.values())
        if messages or redefining or any(t.changes for t in self.tasks.values()):
            if self._publish(dead, routed, events):
                committed = time.time()
                for labels, count in outcomes.items():
                    metrics.EVENTS.labels(*labels).inc(count)
                for at in caused:
                    metrics.EVENT_TO_CHANGE.observe(committed - at)
                metrics.TIMERS_FIRED.inc(self._timers_fired() - fired_before)
                metrics.BATCH_MESSAGES.observe(len(messages))
                metrics.BATCH_SECONDS.observe(time.perf_counter() - started)

    def _timers_fired(self) -> int:
        return sum(task.engine.stats.timers_fired for task in self.tasks.values())

    def _observe(self) -> None:
        """Gauges that need a look around (offsets, RocksDB, timer heaps): every few seconds, not
        every batch."""
        self._next_observe = time.monotonic() + _OBSERVE_EVERY
        assignment = self.consumer.assignment()
        for tp in self.consumer.position(assignment) if assignment else ():
            low, high = self.consumer.get_watermark_offsets(tp, cached=True) or (0, 0)
            position = tp.offset if tp.offset >= 0 else low
            metrics.LAG.labels(tp.topic, str(tp.partition)).set(max(high - position, 0))
        for task in self.tasks.values():
            store = task.store
            metrics.STATE_CUSTOMERS.labels(str(task.partition)).set(store.approximate_customers())
            metrics.CACHE_HITS.inc(store.hits - task.hits_reported)
            metrics.CACHE_MISSES.inc(store.misses - task.misses_reported)
            task.hits_reported, task.misses_reported = store.hits, store.misses
        metrics.observe_timers(task.engine.timers for task in self.tasks.values())

    def _set_members(self) -> None:
        # Segments of every partition's catalog, and removed ones until their members have exited.
        names = set(self.catalog.by_name).union(*(t.catalog.by_name.keys() | t.members.keys() for t in self.tasks.values()))
        for segment in sorted(names):
            metrics.MEMBERS.labels(segment).set(sum(task.members[segment] for task in self.tasks.values()))

    def _advance_idle(self, now: float) -> None:
        idle = self.s.idle_advance_ms
        if idle:
            for task in self.tasks.values():
                advance_idle(task.engine, idle, task.last_input, now, task.changes)

    def _publish(self, dead: list[tuple[Message, DeadLetter]], routed: list[tuple[bytes, bytes]],
                 events: int) -> bool:
        """One transaction for everything the batch produced; False when it had to be read again."""
        s, producer = self.s, self.producer
        try:
            if s.exactly_once:
                producer.begin_transaction()
            changes = self._produce_all(dead, routed)
            producer.flush()                  # serves every delivery report of the batch
            if self._undelivered is not None:
                raise KafkaException(self._undelivered)
            offsets = [tp for tp in self.consumer.position(self.consumer.assignment()) if tp.offset >= 0]
            if s.exactly_once:
                producer.send_offsets_to_transaction(offsets, self.consumer.consumer_group_metadata())
                producer.commit_transaction()
            else:
                self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            self._recover(exc)
            return False
        self._failures = 0
        for task in self.tasks.values():
            if task.partition in self._changelog_next:
                task.store.commit(self._changelog_next[task.partition])
            metrics.count_changes(task.changes)
            task.count_members()
            task.changes.clear()
        self._set_members()
        self._changelog_next.clear()
        if self.on_batch is not None:
            self.on_batch(events, changes)
        return True

    def _produce_all(self, dead: list[tuple[Message, DeadLetter]], routed: list[tuple[bytes, bytes]]) -> int:
        s, produce = self.s, self.producer.produce
        for key, raw in routed:
            produce(s.repartition_topic, key=key, value=raw)
        count = 0
        for task in self.tasks.values():
            touched: dict[str, None] = {}
            for change in task.changes:
                produce(s.changes_topic, key=change.customer_id.encode(), value=encode_change(change))
                touched[change.customer_id] = None
            count += len(task.changes)
            if touched:
                at, get = format_rfc3339(task.engine.now), task.store.get
                for customer_id in touched:
                    produce(s.membership_topic, key=customer_id.encode(),
                            value=membership(customer_id, get(customer_id), at))
            task.store.set_stream_time(task.engine.now)
            partition = task.partition
            for key, value in task.store.pending():
                produce(s.changelog_topic, key=key, value=value, partition=partition)
        for msg, letter in dead:
            value, headers = dead_letter(letter, msg.topic(), msg.partition(), msg.offset())
            produce(s.dead_letter_topic, key=msg.key(), value=value, headers=headers)
        return count

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        """Every produced message reports here: a failure fails the batch (at_least_once would
        otherwise commit offsets past output that never arrived), and changelog offsets become the
        stores' checkpoints."""
        if err is not None:
            self._undelivered = err
        elif msg.topic() == self.s.changelog_topic:
            partition = msg.partition()
            self._changelog_next[partition] = max(self._changelog_next.get(partition, 0), msg.offset() + 1)

    def _recover(self, exc: KafkaException) -> None:
        """A failed batch: abort, go back to the committed state and offsets, read again."""
        error = exc.args[0]
        if error.fatal():
            raise exc                # e.g. fenced by a newer instance with our id: this one must stop
        # Backoff doubles with each failure in a row (a broker down for a while), up to 30 s.
        pause = min(0.5 * 2 ** self._failures, 30.0)
        self._failures += 1
        log.warning("batch not committed (%s); failure %d in a row, reading it again in %.1f s",
                    error, self._failures, pause)
        if self.s.exactly_once:
            try:
                self.producer.abort_transaction(10)
            except KafkaException as abort_error:
                if abort_error.args[0].fatal():
                    raise
                # The transaction cannot be ended (e.g. the broker lost it): a new producer with the
                # same transactional id aborts it on initialisation.
                log.warning("abort failed (%s); starting a new producer", abort_error.args[0])
                self.producer = self._new_producer()
        self._changelog_next.clear()
        self._undelivered = None
        for task in self.tasks.values():
            task.reset()
            self.live.attach(task)
        assignment = self.consumer.assignment()
        self.health.beat = time.monotonic() + pause     # waiting on purpose is not a stall
        while not self._stop.wait(pause):
            try:
                committed = self.consumer.committed(assignment, timeout=10)
                break
            except KafkaException as offsets_error:
                log.warning("committed offsets unavailable (%s); asking again", offsets_error.args[0])
        else:
            return                  # stopping: nothing of the failed batch was committed
        for tp in committed:
            self.consumer.seek(TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else 0))

    # -- rebalance -------------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        metrics.REBALANCES.labels("assign").inc()
        for number in sorted({tp.partition for tp in partitions} - set(self.tasks)):
            self.tasks[number] = self.open_partition(number)
            metrics.ASSIGNED.set(len(self.tasks))
        self._set_members()
        self.health.ready = True          # in the group, every assigned partition restored
        metrics.READY.set(1)

    def open_partition(self, number: int) -> PartitionTask:
        """The local store brought up to its changelog's end, and an engine over it."""
        started = time.monotonic()
        self.health.ready = False
        metrics.READY.set(0)
        metrics.RESTORING.inc()
        try:
            store = PartitionStore(self.s.state_dir / self.s.group_id / f"p{number}")
            restored = self._restore(store, number)
            task = PartitionTask(number, store, self.catalog)
            self.live.attach(task)
        finally:
            metrics.RESTORING.dec()
        metrics.RESTORED.inc(restored)
        log.info("partition %d ready: %d changelog records restored, %d timers, in %.2fs",
                 number, restored, len(task.engine.timers), time.monotonic() - started)
        return task

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Called from inside consume(): the previous batch is committed, no transaction is open.
        metrics.REBALANCES.labels("revoke").inc()
        for tp in partitions:
            with contextlib.suppress(KeyError):
                metrics.LAG.remove(tp.topic, str(tp.partition))
        for number in {tp.partition for tp in partitions}:
            task = self.tasks.pop(number, None)
            self.live.forget(number)
            if task is not None:
                task.store.close()
                with contextlib.suppress(KeyError):
                    metrics.STATE_CUSTOMERS.remove(str(number))
        metrics.ASSIGNED.set(len(self.tasks))
        self._set_members()

    def _changelog_end(self, partition: int) -> tuple[int, int]:
        """The changelog partition's offsets, records of open transactions included. Asked of a
        read_uncommitted client: a read_committed one may answer the last stable offset instead
        (Tansu answers 0 while any transaction is open), which would make a store look ahead of
        its changelog and be wiped, or look complete while it is behind."""
        probe = Consumer({**self._common(), "group.id": f"{self.s.group_id}-restore",
                          "isolation.level": "read_uncommitted", "enable.partition.eof": True})
        key = (self.s.changelog_topic, partition)
        try:
            # Read, not only asked: Tansu's high watermark can be short of the last record batch's
            # end, which made an at_least_once store (its changelog written in multi-record
            # batches) look past the end and be rebuilt from scratch on every restart.
            lows, ends = partition_ends(probe, [key])
            return lows[key], ends[key]
        finally:
            probe.close()

    def _restore(self, store: PartitionStore, partition: int) -> int:
        """Bring the local store up to the end of its changelog partition."""
        topic = self.s.changelog_topic
        # EOF, not the high watermark, ends the read: the last offsets may be transaction markers,
        # which are never delivered, and an open transaction stops a read_committed reader early.
        reader = Consumer({**self._common(), "group.id": f"{self.s.group_id}-restore",
                           "enable.auto.commit": False, "isolation.level": "read_committed",
                           "auto.offset.reset": "earliest", "enable.partition.eof": True})
        try:
            low, high = self._changelog_end(partition)
            start = store.checkpoint() or 0
            if start > high:
                log.warning("partition %d: local checkpoint %d is past the changelog end %d "
                            "(topic recreated?); rebuilding the store", partition, start, high)
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
                            self.health.beat = time.monotonic()   # a long restore is not a stall
                        yield msg.key(), msg.value(), msg.offset()
            store.restore(records())
            return count
        finally:
            reader.close()
