"""`segments worker`: the engine behind a Kafka consumer group, one engine per input partition.

Each loop turn is one commit: it consumes for commit_interval_ms from its first message (Kafka
Streams' commit.interval.ms), applying each consumed batch to the partitions' engines as it comes,
then publishes in ONE Kafka transaction (exactly_once): segment changes, membership records, dead
letters, one changelog record per dirty customer, and the consumer offsets. Only after that
transaction commits does the partition's local RocksDB store take the same records
(stream.storage.rocksdb_store), so the local state is never ahead of Kafka. A crash anywhere loses
nothing: the input is read again from the committed offsets and the state restored from the store
plus the changelog.

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
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from stream.console.backend import Backend, Sizes
from stream.console.history import History
from stream.console.routes import console_routes
from stream.definitions.live import LiveDefinitions
from stream.definitions.resolution import file_definitions
from stream.inspect.routes import owned_stores, segment_routes
from stream.kafka.topic_admin import TopicsNotAsExpected, admin_client, ensure_topics, topic_problems
from stream.kafka.clients import (ATTEMPT_SECONDS, BrokerProbe, BrokerWatch, partition_counts, until_reachable,
                                  worker_client_config)
from stream.kafka.definitions_feed import DefinitionsFeed, caught_up_feed
from stream.kafka.publishing import Topic
from stream.kafka.partition_ends import partition_ends
from stream.model.changes import SegmentChange
from stream.rules.catalog import Catalog
from stream.runtime import garbage, metrics
from stream.runtime.batch import Batch, BatchStep, set_members
from stream.runtime.idle_clock import CatchUp, Source, advance_idle
from stream.runtime.settings import WorkerConfig
from stream.runtime.topics import PRODUCER_BATCH_BYTES, PRODUCER_MESSAGE_BYTES, Spec, worker_topics
from stream.storage.committed import CommittedStores
from stream.storage.rocksdb_store import PartitionStore
from stream.worker.partition import PartitionTask
from stream.worker.restore import restore
from stream.worker.transaction import Deliveries, aborted, commit, seek_committed

log = logging.getLogger("segments.worker")

_OBSERVE_EVERY = 5.0              # seconds between updates of the gauges that cost a look around


class _Stopping(Exception):
    """stop() came while a partition's restore waited for the brokers (raised out of consume())."""


@dataclass
class _Open:
    """A commit under way: its batch step's records and tallies, the messages consumed for it,
    how many of them were partition EOFs, and the timers fired before it began."""
    batch: Batch
    timers_fired: int
    messages: int = 0
    ends: int = 0


class Worker:
    def __init__(self, config: WorkerConfig, catalog: Catalog,
                 on_batch: Callable[[int, int], None] | None = None):
        if config.bootstrap_servers is None or config.instance_id is None:
            raise ValueError("the worker needs resolved bootstrap servers and instance id (see stream.cli)")
        self.s = config
        self.catalog = catalog
        self.on_batch = on_batch          # (events, changes) after each committed batch
        self.tasks: dict[int, PartitionTask] = {}
        self.step = BatchStep(config)
        self.deliveries = Deliveries(config.changelog_topic)
        self.health = metrics.Health()
        self._next_observe = 0.0
        self._failures = 0                # batches in a row that could not be committed
        self._stop = threading.Event()
        self.live = LiveDefinitions(file_definitions(catalog), None)
        # The routed topic-partitions this worker reads: any of them can feed every engine.
        self._routed = CatchUp()
        self.watch = BrokerWatch(config.bootstrap_servers)
        self.probe: BrokerProbe | None = None      # from the end of start-up on
        self._open: _Open | None = None            # the commit under way, between consume calls
        self.history = History()                   # what the web console shows of the past
        self._sizes: dict[str, int] = {}           # members per segment as of the last commit (for the console)

    # -- set-up ----------------------------------------------------------------------------------

    def topics(self) -> list[Spec]:
        """The topics the worker creates when absent (routed input topics are the producers')."""
        return worker_topics(self.s)

    def _common(self) -> dict[str, object]:
        # The one client configuration (security settings included); the watch hears every client's
        # errors, so the log says once, at a bounded rate, when the brokers cannot be reached.
        return worker_client_config(self.s, self.watch)

    def stop(self) -> None:
        self._stop.set()

    # -- the loop --------------------------------------------------------------------------------

    def run(self) -> None:
        """Until stop(). Raises TopicsNotAsExpected when the topics are missing or changed (at start,
        or found so while running: a wiped broker), so that the process exits and is restarted."""
        s = self.s
        self.health.blocked = self._blocked
        # list(dict) copies the keys in one step under the GIL: safe from the HTTP threads.
        routes = segment_routes(s.state_dir, s.group_id, self.running_catalog, lambda: list(self.tasks),
                                self.live.describe) + console_routes(self._console())
        # Served from the start, so that /readyz tells why while the brokers cannot be reached yet.
        http = metrics.serve(s.metrics_port, self.health, routes, s.http_host, s.http_token_file) \
            if s.metrics_port else None
        try:
            with garbage.rare_full_collections():
                self._serve()
        except _Stopping:
            pass                            # stopped while a restore waited for the brokers
        finally:
            self._close(http)

    def running_catalog(self) -> Catalog:
        """The definitions the partitions run now (from the topic too), for the HTTP threads."""
        tasks = list(self.tasks.values())
        return tasks[0].catalog if tasks else self.live.resolve(None).catalog

    def _console(self) -> Backend:
        s = self.s

        def stores() -> CommittedStores:
            return owned_stores(s.state_dir, s.group_id, list(self.tasks))

        def sizes() -> Sizes:
            partitions = ", ".join(f"p{n}" for n in sorted(self.tasks)) or "none yet"
            return Sizes(self._sizes, f"live: this worker's partitions ({partitions}), as of its last commit")

        assert s.bootstrap_servers is not None          # checked in __init__
        topic = None if s.definitions_topic is None else Topic(s.bootstrap_servers, dict(s.kafka),
                                                               s.definitions_topic, self.catalog)
        return Backend("worker", self.running_catalog, stores, self.live.describe, sizes, self.history, True, topic)

    def _note_for_console(self, changes: list[SegmentChange]) -> None:
        """After a commit: the sizes, and the changes, into the console's bounded history."""
        sizes: Counter[str] = Counter()
        for task in self.tasks.values():
            sizes.update({name: task.members[name] for name in task.catalog.by_name})
        self._sizes = dict(sizes)          # one reference swap: the HTTP threads read whole snapshots
        now = time.time()
        self.history.record(changes, now)
        if self.tasks:                     # owning nothing yet (joining the group) is no size of 0
            self.history.sample(self._sizes, now)

    def _serve(self) -> None:
        """Start up, then commit after commit until stop()."""
        s = self.s
        if not self._start_up():
            return                          # stopped while waiting for the brokers
        self.consumer.subscribe([*s.keyed_topics, *s.routed_topics], on_assign=self._on_assign,
                                on_revoke=self._on_revoke, on_lost=self._on_lost)
        while not self._stop.is_set():
            self._commit_turns(self._turns())
            if time.monotonic() >= self._next_observe:
                self._observe()
                self._check_faults()

    def _start_up(self) -> bool:
        """Topics, definitions feed, producer and consumer; each step waited out (with backoff, said
        at a bounded rate) while the brokers cannot be reached. False when stopped meanwhile."""
        client = self._common()
        s, specs = self.s, self.topics()
        names = [name for name, _, _ in specs]

        def topics() -> dict[str, int]:
            ensure_topics(client, specs, replication_factor=s.replication_factor, timeout=ATTEMPT_SECONDS)
            # Partition p of every keyed topic feeds engine p and restores from changelog partition p.
            exact = {name: s.partitions for name in (*s.keyed_topics, s.changelog_topic)}
            admin = admin_client(client)
            problems = topic_problems(admin, specs, exact, timeout=ATTEMPT_SECONDS)
            if problems:
                raise TopicsNotAsExpected(problems)
            return partition_counts(client, names, timeout=ATTEMPT_SECONDS)
        counts = until_reachable(topics, self.watch, self._stop, self._waiting)
        if counts is None:
            return False
        if s.definitions_topic is not None:
            self.live.feed = until_reachable(self._caught_up_feed, self.watch, self._stop, self._waiting)
            if self.live.feed is None:
                return False
        self.producer = self._new_producer()
        self.consumer = Consumer({
            **client,
            "group.id": s.group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "partition.assignment.strategy": "range",
            "session.timeout.ms": s.session_timeout_ms,
            "max.poll.interval.ms": s.max_poll_interval_ms,
            "fetch.wait.max.ms": 50,
            # A partition's EOF says it has been read to its end: only then is it idle (CatchUp).
            "enable.partition.eof": True,
        })
        self.probe = BrokerProbe(client, self.watch, specs, counts).start()
        return not self._stop.is_set()

    def _caught_up_feed(self) -> DefinitionsFeed:
        assert self.s.definitions_topic is not None         # (only called when there is one)
        return caught_up_feed(self._common(), self.s.definitions_topic)

    def _waiting(self, pause: float) -> None:
        self.health.beat = time.monotonic() + pause     # waiting on purpose is not a stall

    def _close(self, http) -> None:
        # A commit still open was cut short by an exception (a batch maybe half applied): the
        # revoke callback that the consumer's close runs must not commit it (nor the consumer's
        # position, past messages never applied). It is read again from the committed offsets.
        self._open = None
        if self.probe is not None:
            self.probe.close()
        for client in (getattr(self, "consumer", None), getattr(self, "producer", None)):
            if client is not None:
                client.close()       # a connection left open makes the broker wait at shutdown
        if http is not None:
            metrics.stop(http)
        if self.live.feed is not None:
            self.live.feed.close()
        for task in self.tasks.values():
            task.store.close()
        self.tasks.clear()

    # -- readiness and faults ----------------------------------------------------------------------

    def _blocked(self) -> str | None:
        """Why the worker is not ready, whatever its partitions' restore says (stream.runtime.metrics.Health):
        brokers out of reach, topics not as expected, or no partition owned."""
        problem = self.watch.problem() or (self.probe.topics_problem if self.probe is not None else None)
        if problem is not None:
            return problem
        if self.probe is not None and not self.tasks:
            return ("owns no partition: joining the consumer group, or the group has no partition left "
                    "for it (more workers than partitions)")
        return None

    def _show_ready(self) -> None:
        metrics.READY.set(1 if self.health.readiness()[0] else 0)

    def _check_faults(self) -> None:
        """The topics lost or changed (a wiped broker, a deleted topic): the worker cannot go on
        with them, and recreating them under a running group would mix old offsets and state with
        new topics. It stops with the reason; restarted (Kubernetes, compose), it creates them
        again at start-up and restores from what the changelog holds."""
        self._show_ready()
        problem = self.probe.topics_problem if self.probe is not None else None
        if problem is not None:
            raise TopicsNotAsExpected([problem])

    def _turns(self) -> Iterator[list[Message]]:
        """The consumed batches of one commit: the first waits up to commit_interval_ms for a
        message; the commit then takes what arrives until commit_interval_ms after that first
        batch (or stop). A commit costs two broker round trips and a RocksDB write whatever its
        size, so committing every batch made them most of the CPU at moderate load."""
        interval = self.s.commit_interval_ms / 1000
        self.health.beat = time.monotonic()
        messages = self._next_batch(interval)
        closes = time.monotonic() + interval
        yield messages
        while messages and not self._stop.is_set():
            self.health.beat = now = time.monotonic()
            if now >= closes:
                return
            messages = self._next_batch(closes - now)
            yield messages

    def _next_batch(self, timeout: float) -> list[Message]:
        """Whatever is already fetched, without waiting; only when nothing is, wait up to `timeout`
        for the first message. consume(n, timeout) alone would wait for n messages or the whole
        timeout even with messages at hand."""
        consumer, size = self.consumer, self.s.batch_size
        messages = consumer.consume(size, 0)
        if not messages:
            first = consumer.poll(timeout)
            if first is not None:
                messages = [first, *consumer.consume(size - 1, 0)]
        return messages

    def _new_producer(self) -> Producer:
        s = self.s
        config = {**self._common(), "enable.idempotence": True, "linger.ms": 5,
                  "on_delivery": self.deliveries.delivered, "partitioner": "murmur2_random",
                  "message.max.bytes": PRODUCER_MESSAGE_BYTES, "batch.size": PRODUCER_BATCH_BYTES}
        if s.exactly_once:
            config["transactional.id"] = f"{s.group_id}-{s.instance_id}"
        producer = Producer(config)
        if s.exactly_once:
            # Fences a previous incarnation of this instance and aborts its open transaction, which
            # would otherwise hold back every read_committed reader of its partitions. Waited out
            # while the brokers cannot be reached: after a timeout it may be called again.
            until_reachable(lambda: producer.init_transactions(30), self.watch, self._stop, self._waiting)
        return producer

    def _commit_turns(self, turns: Iterable[list[Message]]) -> None:
        """One commit over consumed batches: each applied as it comes, then the idle clock, a
        chunk of any re-evaluation pass, and one transaction for all of it. A rebalance inside
        a consume call commits what was applied before it (_on_revoke); the batches after it
        make a new commit."""
        for messages in turns:
            if self._open is None:
                self._open = self._begin()
            self._take(self._open, messages)
        if self._open is not None:
            open_, self._open = self._open, None
            self._end(open_)

    def _begin(self) -> _Open:
        # Definitions switched before the commit's first batch is applied (LiveDefinitions.follow says why).
        self.live.follow(self.tasks.values())
        return _Open(self.step.batch(), self._timers_fired())

    def _take(self, open_: _Open, messages: list[Message]) -> None:
        """One consumed batch applied to the partitions' engines."""
        batch = open_.batch
        now = time.monotonic()
        reading: dict[Source, bool] = {}  # per topic-partition: False once its EOF came last
        tasks = self.tasks
        for msg in messages:
            error = msg.error()
            topic, partition = msg.topic(), msg.partition()     # each call makes a new object: once per message
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    assert topic is not None and partition is not None       # an EOF names its partition
                    reading[(topic, partition)] = False
                    open_.ends += 1
                else:
                    log.warning("consume: %s", error)
                continue
            offset = msg.offset()
            assert topic is not None and partition is not None and offset is not None     # a record has all three
            reading[(topic, partition)] = True
            # (a record of a partition revoked within this batch has no task: skipped)
            batch.take(topic, partition, offset, msg.key(), msg.value(), tasks.get(partition))
        open_.messages += len(messages)
        self._note_reading(reading, now)

    def _end(self, open_: _Open, recover: bool = True) -> KafkaException | None:
        """The idle clock, a chunk of any re-evaluation pass, then the commit's one transaction.
        A failed transaction is recovered from (read again) unless `recover` is False: then the
        failure is returned, for the caller to recover once the rebalance under way is done."""
        batch = open_.batch
        # Routed events that this commit re-publishes reach the engines only once read back after
        # it: no partition is idle yet, whatever the routed topics' EOFs said (a commit may last
        # longer than the idle threshold).
        if not any(outcome == "routed" for _, _, outcome in batch.outcomes):
            self._advance_idle(time.monotonic())
        redefining = self.live.work(self.tasks.values())
        reevaluated = self.live.take_reevaluated()
        # EOFs alone moved no offset: a transaction only if the idle clock fired something.
        if not (open_.messages > open_.ends or redefining or any(t.changes for t in self.tasks.values())):
            return None
        failed = self._publish(batch)
        if failed is None:
            metrics.REEVALUATED.inc(reevaluated)
            batch.published(time.time())
            batch.count(self._timers_fired() - open_.timers_fired)
            batch.measure(open_.messages)
        elif recover:
            self._recover(failed)
        return failed

    def _timers_fired(self) -> int:
        return sum(task.engine.stats.timers_fired for task in self.tasks.values())

    def _observe(self) -> None:
        """Gauges that need a look around (offsets, RocksDB, timer heaps), and the stores' erasure
        compaction when due: every few seconds, not every batch."""
        self._next_observe = time.monotonic() + _OBSERVE_EVERY
        assignment = self.consumer.assignment()
        for tp in self.consumer.position(assignment) if assignment else ():
            low, high = self.consumer.get_watermark_offsets(tp, cached=True) or (0, 0)
            position = tp.offset if tp.offset >= 0 else low
            metrics.LAG.labels(tp.topic, str(tp.partition)).set(max(high - position, 0))
        for task in self.tasks.values():
            store = task.store
            store.compact_erased()
            metrics.STATE_CUSTOMERS.labels(str(task.partition)).set(store.approximate_customers())
            metrics.CACHE_HITS.inc(store.hits - task.hits_reported)
            metrics.CACHE_MISSES.inc(store.misses - task.misses_reported)
            task.hits_reported, task.misses_reported = store.hits, store.misses
        metrics.observe_timers(task.engine.timers for task in self.tasks.values())
        self._note_for_console([])       # sizes after assignments and restores, and samples while nothing changes

    def _set_members(self) -> None:
        set_members(self.catalog, ((task.catalog, task.members) for task in self.tasks.values()))

    def _catch_up_of(self, source: Source) -> CatchUp | None:
        if source[0] in self.s.routed_topics:
            return self._routed
        task = self.tasks.get(source[1])
        return None if task is None else task.catch_up

    def _note_reading(self, reading: dict[Source, bool], now: float) -> None:
        """What the batch showed of each topic-partition: input read, or its end reached after it."""
        for source, more in reading.items():
            catch_up = self._catch_up_of(source)
            if catch_up is None or source not in catch_up.sources:
                continue                  # revoked within this batch (a routed one would stay behind)
            if more:
                catch_up.read(source)
            else:
                catch_up.reached_end(source, now)

    def _advance_idle(self, now: float) -> None:
        idle = self.s.idle_advance_ms
        if idle:
            for task in self.tasks.values():
                advance_idle(task.engine, idle, (task.catch_up, self._routed), now, task.changes)

    def _publish(self, batch: Batch) -> KafkaException | None:
        """One transaction for everything the commit produced; its failure, if it was not committed."""
        try:
            commit(self.producer, self.consumer, self.s.exactly_once, batch, self.tasks.values(), self.deliveries)
        except KafkaException as exc:
            return exc
        self._failures = 0
        changelog_next = self.deliveries.changelog_next
        for task in self.tasks.values():
            if task.partition in changelog_next:
                task.store.commit(changelog_next[task.partition])
            task.count_members()
            task.changes.clear()
        self._set_members()
        self._note_for_console(batch.changes)
        changelog_next.clear()
        if self.on_batch is not None:
            self.on_batch(batch.events, len(batch.changes))
        return None

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
        if self.s.exactly_once and not aborted(self.producer):
            self.producer = self._new_producer()
        self.deliveries.clear()
        self._rewind(self.consumer.assignment(), pause)

    def _rewind(self, assignment: list[TopicPartition], pause: float) -> None:
        """Every partition kept back to its committed state, and after `pause` the consumer back
        to the committed offsets of `assignment`: what was applied since is read again."""
        self._routed.rewind()
        for task in self.tasks.values():
            task.reset()
            self.live.attach(task)
        self.health.beat = time.monotonic() + pause     # waiting on purpose is not a stall
        seek_committed(self.consumer, assignment, pause, self._stop, self.watch, self._waiting)

    # -- rebalance -------------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        metrics.REBALANCES.labels("assign").inc()
        for number in sorted({tp.partition for tp in partitions} - set(self.tasks)):
            self.tasks[number] = self.open_partition(number)
            metrics.ASSIGNED.set(len(self.tasks))
        for tp in partitions:             # read from the committed offsets: behind until their EOF
            catch_up = self._catch_up_of((tp.topic, tp.partition))
            if catch_up is not None:      # (every one has: its task was just opened, or it is routed)
                catch_up.assigned((tp.topic, tp.partition))
        self._set_members()
        garbage.settle()                  # the restored states: no full collection walks them again
        self.health.ready = True          # in the group, every assigned partition restored
        self._show_ready()

    def open_partition(self, number: int) -> PartitionTask:
        """The local store brought up to its changelog's end, and an engine over it."""
        started = time.monotonic()
        self.health.ready = False
        metrics.READY.set(0)
        metrics.RESTORING.inc()
        try:
            # Waited out while the brokers cannot be reached (they may go in the middle of a restore).
            opened = until_reachable(lambda: self._restored_store(number), self.watch, self._stop, self._waiting)
            if opened is None:
                raise _Stopping
            store, restored = opened
            task = PartitionTask(number, store, self.catalog)
            self.live.attach(task)
        finally:
            metrics.RESTORING.dec()
        metrics.RESTORED.inc(restored)
        log.info("partition %d ready: %d changelog records restored, %d timers, in %.2fs",
                 number, restored, len(task.engine.timers), time.monotonic() - started)
        return task

    def _restored_store(self, number: int) -> tuple[PartitionStore, int]:
        # A changelog the broker lost fails the restore like an outage would; once the probe has
        # seen the topics gone, waiting on would never end: stop with the reason instead.
        if self.probe is not None and self.probe.topics_problem is not None:
            raise TopicsNotAsExpected([self.probe.topics_problem])
        store = PartitionStore(self.s.state_dir / self.s.group_id / f"p{number}",
                               erasure_after_ms=self.s.erasure_max_lag_ms)
        try:
            return store, self._restore(store, number)
        except BaseException:
            store.close()             # opened again on the next attempt
            raise

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Called from inside consume(), maybe in the middle of a commit's batches: what they
        applied is committed first, while this worker still owns the partitions (as Kafka
        Streams does), so their new owner starts from it."""
        failed = None
        if self._open is not None:
            open_, self._open = self._open, None
            failed = self._end(open_, recover=False)
        self._drop(partitions, "revoke")
        if failed is not None:
            self._recover(failed)         # the partitions kept (if any) back to their committed state

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """The group took the partitions without a revoke (this worker was too slow or cut off):
        what the commit under way applied cannot be committed any more, and is dropped; their new
        owner reads it again. The partitions kept (if any) go back to their committed state."""
        open_, self._open = self._open, None
        self._drop(partitions, "lost")
        if open_ is not None and self.tasks:
            lost = {(tp.topic, tp.partition) for tp in partitions}
            self._rewind([tp for tp in consumer.assignment() if (tp.topic, tp.partition) not in lost], 0)

    def _drop(self, partitions: list[TopicPartition], why: str) -> None:
        metrics.REBALANCES.labels(why).inc()
        now = time.monotonic()
        for tp in partitions:
            with contextlib.suppress(KeyError):
                metrics.LAG.remove(tp.topic, str(tp.partition))
            if tp.topic in self.s.routed_topics:
                self._routed.revoked((tp.topic, tp.partition), now)
        for number in {tp.partition for tp in partitions}:
            task = self.tasks.pop(number, None)
            self.live.forget(number)
            if task is not None:
                task.store.close()
                with contextlib.suppress(KeyError):
                    metrics.STATE_CUSTOMERS.remove(str(number))
        metrics.ASSIGNED.set(len(self.tasks))
        self._set_members()
        self._show_ready()

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
        """Bring the local store up to the end of its changelog partition (stream.worker.restore)."""
        # EOF, not the high watermark, ends the read: the last offsets may be transaction markers,
        # which are never delivered, and an open transaction stops a read_committed reader early.
        reader = Consumer({**self._common(), "group.id": f"{self.s.group_id}-restore",
                           "enable.auto.commit": False, "isolation.level": "read_committed",
                           "auto.offset.reset": "earliest", "enable.partition.eof": True})
        try:
            return restore(store, reader, self.s.changelog_topic, partition, self._changelog_end(partition),
                           self.health)
        finally:
            reader.close()
