"""`segments worker --runtime faust`: the same product as a Faust (faust-streaming 0.15) app, at-least-once
only. One agent runs the batch step (stream.runtime.batch) over the customer-keyed input, one Engine per
input partition, its state in a Faust table; a second agent re-keys the routed topics. Why it is built
this way: docs/faust-runtime.md.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from pathlib import Path
from typing import NoReturn, TypedDict, cast

import faust
import faust.streams
from aiokafka.errors import IllegalStateError
from faust.types import TP, EventT, ProducerT, RecordMetadata, StreamT
from faust.types.core import HeadersArg

from stream.definitions.live import LiveDefinitions
from stream.definitions.resolution import file_definitions
from stream.faust_runtime.fixes import HoldingApp, refuse_auto_creation
from stream.faust_runtime.startup import (PartitionCountsWrong, drop_stale_partitions, set_up_topics,
                                          until_signalled)
from stream.faust_runtime.table_store import FaustTable, Partition
from stream.faust_runtime.topics import TABLE, ticks_topic, topics
from stream.inspect.routes import definitions_route
from stream.kafka.clients import BrokerProbe, BrokerWatch, LibraryLogBound, until_reachable, worker_client_config
from stream.kafka.definitions_feed import caught_up_feed
from stream.rules.catalog import Catalog
from stream.runtime import garbage, metrics
from stream.runtime.batch import Batch, BatchStep, set_members
from stream.runtime.idle_clock import CatchUp, advance_idle, idle
from stream.runtime.records import Record
from stream.runtime.settings import FAUST_AT_LEAST_ONCE, WorkerConfig
from stream.runtime.topics import PRODUCER_BATCH_BYTES, PRODUCER_MESSAGE_BYTES

log = logging.getLogger("segments.faust")

_OBSERVE_EVERY = 5.0                   # seconds between refreshes of the gauges that need a look around


class _Raw(TypedDict):
    """A topic's keys and values as bytes, as they are on the wire (app.topic's arguments)."""
    key_type: type[bytes]
    value_type: type[bytes]
    key_serializer: str
    value_serializer: str


_RAW = _Raw(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")


@contextlib.contextmanager
def _current(event: EventT[bytes]) -> Iterator[None]:
    """Make `event` Faust's current event, so that table reads and writes go to its partition (see
    docs/faust-runtime.md). faust.streams keeps it in a context variable, as a weak reference."""
    token = faust.streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust.streams._current_event.reset(token)


async def _or_exit(work: Awaitable[object]) -> None:
    """A batch that fails (an undeliverable record, a bug) ends the process at once, like an
    exception out of the native worker's loop: Faust would ack the batch's events on the way out
    (take_events acks in a `finally`) and commit them while stopping, so the batch would count as
    done. Exiting instead, nothing of it is committed and a restart reads it again."""
    try:
        await work
    except Exception:
        _exit_failed("batch failed; exiting without committing it")


def _exit_failed(why: str) -> NoReturn:
    """Log the exception being handled and end the process at once, with nothing more committed."""
    log.exception(why)
    logging.shutdown()
    os._exit(1)


async def _deliver(producer: ProducerT, records: list[Record]) -> list[RecordMetadata]:
    """Send through Faust's producer and wait until the broker has every record."""
    send = producer.send
    # (cast: faust types header values as bytes only; the batch step's are: stream.runtime.intake.dead_letter)
    pending = [await send(topic, key, value, partition, None, cast(HeadersArg, headers))
               for topic, key, value, partition, headers in records]
    return list(await asyncio.gather(*pending))


class FaustWorker:
    def __init__(self, config: WorkerConfig, catalog: Catalog):
        if config.bootstrap_servers is None or config.exactly_once:
            raise ValueError("the Faust runtime needs resolved bootstrap servers and at_least_once (see run())")
        self.s = config
        self.catalog = catalog
        self.health = metrics.Health()
        self.watch = BrokerWatch(config.bootstrap_servers)
        self.probe: BrokerProbe | None = None
        self.partitions: dict[int, Partition] = {}
        self.ticking: set[int] = set()         # partitions with a tick on its way
        self.positions: dict[TP, int] = {}     # next offset to apply, per input partition
        self.catch_ups: dict[int, CatchUp] = {}   # per partition number: its keyed topic-partitions
        self.routed_catch_up = CatchUp()       # the routed topic-partitions: any can feed every engine
        self.step = BatchStep(config)
        self.live = LiveDefinitions(file_definitions(catalog), None)
        self.definitions_changed = False                # the feed got records not taken up yet
        self.app = self._app()

    def _app(self) -> HoldingApp:
        s = self.s
        assert s.bootstrap_servers is not None          # checked in __init__
        app = HoldingApp(
            s.group_id,
            broker=[f"kafka://{host.strip()}" for host in s.bootstrap_servers.split(",")],
            store="rocksdb://",
            datadir=str(s.state_dir),
            autodiscover=False,
            processing_guarantee="at_least_once",
            topic_partitions=s.partitions,
            topic_replication_factor=max(s.replication_factor, 1),
            topic_disable_leader=True,
            table_standby_replicas=0,
            consumer_auto_offset_reset="earliest",
            broker_session_timeout=s.session_timeout_ms / 1000,
            broker_heartbeat_interval=min(3.0, s.session_timeout_ms / 3000),
            # The coordinator waits up to the rebalance timeout for members to join; librdkafka (the
            # native worker) uses max.poll.interval.ms for it, and so does this runtime.
            broker_rebalance_timeout=s.max_poll_interval_ms / 1000,
            broker_max_poll_interval=s.max_poll_interval_ms / 1000,
            # aiokafka returns everything fetched at once by default (up to a fetch's size per
            # partition); Faust then feeds it to the agent without polling, and a member that does
            # not poll within max_poll_interval leaves the group.
            broker_max_poll_records=s.batch_size,
            broker_commit_interval=s.commit_interval_ms / 1000,
            # aiokafka keeps one unsent batch per partition and makes a send wait once it is full:
            # with the default 16 KB, a batch's output waits on round trips.
            # (Its batches also go to the table's changelog: stream.runtime.topics.CHANGELOG_MESSAGE_BYTES.)
            producer_max_batch_size=PRODUCER_BATCH_BYTES,
            producer_max_request_size=PRODUCER_MESSAGE_BYTES,
            web_enabled=False,
        )
        table = app.Table(TABLE, partitions=s.partitions, key_type=bytes, value_type=bytes)
        table.on_recover(self._on_recovered)
        # faust types a table's data as a plain mapping: FaustTable is what this runtime uses of it
        self.table = cast(FaustTable, table)
        self.ticks = app.topic(ticks_topic(s), partitions=s.partitions, **_RAW)
        app.agent(app.topic(*s.keyed_topics, ticks_topic(s), **_RAW), name="segments")(self._agent)
        if s.routed_topics:
            app.agent(app.topic(*s.routed_topics, **_RAW), name="segments-routing")(self._router)
        app.timer(s.commit_interval_ms / 1000, name="segments-clock")(self._clock)
        app.timer(_OBSERVE_EVERY, name="segments-gauges")(self._observe)
        # (faust types a receiver as taking the sender alone positionally; this signal sends the revoked set too)
        app.on_partitions_revoked.connect(self._on_revoked)  # type: ignore[arg-type]
        return app

    def _batches(self, stream: StreamT[bytes]) -> AsyncIterator[Sequence[EventT[bytes]]]:
        # (cast: an agent's stream is a faust.Stream; faust's StreamT does not declare take_events)
        return cast(faust.Stream[bytes], stream).take_events(self.s.batch_size, within=self.s.commit_interval_ms / 1000)

    # -- the agents ------------------------------------------------------------------------------

    async def _agent(self, stream: StreamT[bytes]) -> None:
        producer = await self.app.maybe_start_producer()
        async for events in self._batches(stream):
            await _or_exit(self._batch(producer, events))

    async def _batch(self, producer: ProducerT, events: Sequence[EventT[bytes]]) -> None:
        """Apply partition by partition (each under one of its own events), publish, then write
        each touched customer back once. Faust acks the events only after this returns."""
        batch = self.step.batch()
        self.health.beat = time.monotonic()
        assignment = self.app.consumer.assignment()
        shares: dict[int, list[EventT[bytes]]] = {}
        for event in events:
            if event.message.tp in assignment:      # else revoked while the batch was gathered
                shares.setdefault(event.message.partition, []).append(event)
        switched = self.definitions_changed     # (the clock saw it) between two batches, never within one
        if switched:
            self.definitions_changed = False
            self.live.refresh(self.partitions.values())
        fired = 0
        parts: list[tuple[Partition, EventT[bytes]]] = []
        for number, share in shares.items():
            with _current(share[-1]):
                part = self.partitions.get(number)
                if part is None:
                    part = self.partitions[number] = Partition(number, self.table, self.catalog,
                                                               self.s.erasure_max_lag_ms)
                    self.live.attach(part)
                    self._set_members()         # counted from the restored state
                parts.append((part, share[-1]))
                before = part.engine.stats.timers_fired
                self._apply(part, share, batch)
                self.live.work([part])          # a chunk of its re-evaluation pass, if one is under way
                batch.publish(part.changes, part.engine.now, part.store.get)
                part.count_members()
                part.changes.clear()
                fired += part.engine.stats.timers_fired - before
        reevaluated = self.live.take_reevaluated()      # counted once the batch is in (below)
        await _deliver(producer, batch.output)
        batch.published(time.time())
        changelog: list[Record] = []
        ends: list[Record] = []
        for part, _ in parts:
            if self.partitions.get(part.partition) is not part:
                continue        # revoked meanwhile: its new owner reads the batch again
            records, end = part.store.changelog(part.engine.now)
            changelog += records
            ends += [end] if end is not None else []
        await _deliver(producer, changelog)
        delivered = await _deliver(producer, ends)
        for part, last in parts:
            if self.partitions.get(part.partition) is part:  # else revoked meanwhile: the new owner
                with _current(last):                         # restores it from the changelog
                    part.store.write_local()
        self._persisted(delivered)
        metrics.REEVALUATED.inc(reevaluated)
        batch.count(fired)
        if batch.changes or switched:
            self._set_members()
        batch.measure(len(events))

    def _apply(self, part: Partition, share: list[EventT[bytes]], batch: Batch) -> None:
        """A partition's share of the batch: each event through the batch step, each tick moving
        the idle clock."""
        ticks = self.ticks.get_topic_name()
        catch_ups = self._catch_ups(part.partition)
        for event in share:
            msg = event.message
            if msg.topic == ticks:
                self.ticking.discard(part.partition)
                if self.s.idle_advance_ms:
                    advance_idle(part.engine, self.s.idle_advance_ms, catch_ups, time.monotonic(), part.changes)
                continue
            self.positions[msg.tp] = msg.offset + 1
            catch_ups[0].read(msg.tp)
            batch.take(msg.topic, msg.partition, msg.offset, msg.key, msg.value, part)

    def _catch_ups(self, number: int) -> tuple[CatchUp, CatchUp]:
        """What the idle clock of engine `number` waits for: its own sources, and the routed ones."""
        catch_up = self.catch_ups.get(number)
        if catch_up is None:
            # Behind until _note_caught_up has seen its sources at their ends: a tick still in
            # flight from before a rebalance or restart must not find it idle.
            catch_up = self.catch_ups[number] = CatchUp((topic, number) for topic in self.s.keyed_topics)
        return catch_up, self.routed_catch_up

    async def _note_caught_up(self, now: float) -> None:
        """Which of the assigned input partitions are read to their end, by aiokafka's high watermark
        (no EOF event in aiokafka): everything up to it handed to Faust and applied by the agents."""
        keyed, routed = set(self.s.keyed_topics), set(self.s.routed_topics)
        for tp in self.app.consumer.assignment():
            if tp.topic in keyed:
                catch_up = self._catch_ups(tp.partition)[0]
            elif tp.topic in routed:
                catch_up = self.routed_catch_up
            else:
                continue
            if await self._caught_up(tp):
                catch_up.reached_end(tp, now)
            else:
                catch_up.read(tp)

    async def _caught_up(self, tp: TP) -> bool:
        consumer = self.app.consumer
        end = consumer.highwater(tp)          # None before the first fetch answered
        if end is None:
            return False
        fetched = self.app.fetched.get(tp)
        if fetched is not None:
            # Tansu's high watermark can be short of the end (docs/embedded-broker.md): the records
            # handed over count too, and all of them must have been applied.
            if self.positions.get(tp, -1) < fetched:
                return False
            if fetched >= end:
                return True
        # Nothing handed to Faust since the assignment (aiokafka's position is where reading
        # starts), or the end is past the last record handed over: a transaction's marker, a
        # control record aiokafka reads past but never hands over, ends a transactional producer's
        # partition. Whether reading got to the end, aiokafka's position says.
        try:
            position = await asyncio.wait_for(consumer.position(tp), 1.0)
        except (TimeoutError, IllegalStateError):   # seeking, or revoked meanwhile
            return False
        # (records handed over while the position was asked for are not known to be applied)
        return position is not None and position >= end and self.app.fetched.get(tp) == fetched

    def _persisted(self, delivered: list[RecordMetadata]) -> None:
        """Move each changelog partition's restore checkpoint to its last delivered record, as
        Faust's own table writes do (faust.tables.base.Collection._on_changelog_sent)."""
        topic, data = self.table.changelog_topic_name, self.table.data
        for metadata in delivered:
            if metadata.partition in self.partitions:      # else revoked: not this worker's database
                data.set_persisted_offset(TP(topic, metadata.partition), metadata.offset)

    async def _router(self, stream: StreamT[bytes]) -> None:
        """Routed topics (keyed otherwise): each event re-published, keyed by its customer id, to
        the repartition topic, which the main agent reads like any keyed input."""
        producer = await self.app.maybe_start_producer()
        async for events in self._batches(stream):
            batch = self.step.batch()
            for event in events:
                msg = event.message
                self.positions[msg.tp] = msg.offset + 1
                self.routed_catch_up.read(msg.tp)
                batch.take(msg.topic, msg.partition, msg.offset, msg.key, msg.value, None)
            await _or_exit(_deliver(producer, batch.output))
            batch.count()

    # -- the clock, rebalances, metrics ----------------------------------------------------------

    async def _clock(self) -> None:
        """Beats the health check, follows the definitions topic, and sends a tick to every idle
        partition and to every one with definitions work waiting (see docs/faust-runtime.md): the
        agent does it when the tick arrives."""
        self.health.beat = time.monotonic()
        try:
            if self.live.feed is not None and self.live.feed.poll():
                self.definitions_changed = True
        except Exception:
            # As an error out of the native worker's loop: inside Faust's timer it would go unseen.
            _exit_failed("the definitions topic cannot be read; exiting")
        idle_ms = self.s.idle_advance_ms
        now = time.monotonic()
        if idle_ms is not None:
            await self._note_caught_up(now)
        ticks = self.ticks.get_topic_name()
        for tp in self.app.consumer.assignment():
            if tp.topic != ticks or tp.partition in self.ticking:
                continue
            if self._redefining(tp.partition) or (idle_ms is not None and idle(self._catch_ups(tp.partition),
                                                                                 idle_ms, now)):
                self.ticking.add(tp.partition)
                await self.ticks.send(value=b"", partition=tp.partition)

    def _redefining(self, number: int) -> bool:
        """Definitions changed, a re-evaluation pass under way, or a switch not yet written."""
        part = self.partitions.get(number)
        return part is not None and (self.definitions_changed or self.live.reevaluating(number)
                                     or part.store.unsaved())

    async def _observe(self) -> None:
        """The native worker's gauges that need a look around: lag, store sizes, timers; and, as
        there, the partition databases' erasure compaction when due."""
        consumer = self.app.consumer
        for tp, position in self.positions.items():
            high = consumer.highwater(tp)
            if high is not None:
                metrics.LAG.labels(tp.topic, str(tp.partition)).set(max(high - position, 0))
        for number, part in self.partitions.items():
            part.store.erasure.run_if_due()
            db = self.table.data._db_for_partition(number)
            metrics.STATE_CUSTOMERS.labels(str(number)).set(db.property_int_value("rocksdb.estimate-num-keys") or 0)
        metrics.observe_timers(part.engine.timers for part in self.partitions.values())
        metrics.READY.set(1 if self.health.readiness()[0] else 0)

    async def _on_revoked(self, app: faust.App, revoked: set[TP], *_: object, **__: object) -> None:
        """A revoked partition's engine goes: if the partition comes back, it is rebuilt from the
        table as the worker that had it in between left it. Ticks in flight may go with it."""
        metrics.REBALANCES.labels("revoke").inc()
        self.health.ready = False
        metrics.READY.set(0)
        now = time.monotonic()
        for number in {tp.partition for tp in revoked}:
            self.partitions.pop(number, None)
            self.catch_ups.pop(number, None)
            self.live.forget(number)
        for tp in revoked:
            self.app.fetched.pop(tp, None)
            if tp.topic in self.s.routed_topics:
                self.routed_catch_up.revoked(tp, now)
            if self.positions.pop(tp, None) is not None:
                metrics.LAG.remove(tp.topic, str(tp.partition))
        self.ticking.clear()
        self._set_members()

    async def _on_recovered(self) -> None:
        """Faust restored the table's assigned partitions from the changelog: ready."""
        metrics.REBALANCES.labels("assign").inc()
        ticks = self.ticks.get_topic_name()
        metrics.ASSIGNED.set(sum(1 for tp in self.app.consumer.assignment() if tp.topic == ticks))
        self.health.ready = True
        metrics.READY.set(1)

    def _set_members(self) -> None:
        set_members(self.catalog, ((part.catalog, part.members) for part in self.partitions.values()))

    # -- running ---------------------------------------------------------------------------------

    def _blocked(self) -> str | None:
        """The native worker's readiness faults (stream.worker.loop.Worker._blocked): brokers out of
        reach, topics not as at start. Faust's own recovery tells the rest."""
        return self.watch.problem() or (self.probe.topics_problem if self.probe is not None else None)

    def _start_up(self, stop: threading.Event) -> dict[str, int] | None:
        """The topics, then the definitions topic read to its end (as the native worker does before
        it processes anything); None when stopped meanwhile."""
        counts = until_reachable(lambda: set_up_topics(self.s, self.watch), self.watch, stop)
        topic = self.s.definitions_topic
        if counts is None or topic is None:
            return counts
        self.live.feed = until_reachable(
            lambda: caught_up_feed(worker_client_config(self.s, self.watch), topic), self.watch, stop)
        return None if self.live.feed is None else counts

    def run(self) -> int:
        """Until SIGINT or SIGTERM: Faust's exit status. Raises PartitionCountsWrong."""
        s = self.s
        refuse_auto_creation()
        for handler in logging.getLogger().handlers:
            handler.addFilter(LibraryLogBound())
        self.health.blocked = self._blocked
        # Served first, so that /readyz says why while the brokers cannot be reached yet. The same
        # server as the native worker's; this runtime's state is a Faust table, which the members
        # and customer routes (stream.inspect.routes) do not read: of those, /definitions only.
        http = metrics.serve(s.metrics_port, self.health, [definitions_route(self.live.describe)], s.http_host,
                             s.http_token_file) \
            if s.metrics_port else None
        try:
            with garbage.rare_full_collections():
                return self._started()
        finally:
            if self.live.feed is not None:
                self.live.feed.close()
            if http is not None:
                metrics.stop(http)

    def _started(self) -> int:
        counts = until_signalled(self._start_up)
        if counts is None:
            return 0
        probe = self.probe = BrokerProbe(worker_client_config(self.s, self.watch), self.watch, topics(self.s),
                                         counts).start()
        try:
            drop_stale_partitions(Path(self.app.conf.tabledir))
            worker = faust.Worker(self.app, loglevel="info", quiet=True, redirect_stdouts=False,
                                  override_logging=False)
            worker.spinner = None           # it writes terminal escapes to stdout, quiet or not
            try:
                worker.execute_from_commandline()
            except SystemExit as exc:       # mode's Worker always leaves through sys.exit
                return exc.code if isinstance(exc.code, int) else 1
        finally:
            probe.close()
        return 0


def run(config: WorkerConfig, catalog: Catalog) -> int:
    """Run until SIGINT or SIGTERM; the exit status. Exit 2 for exactly_once, which this runtime
    cannot give (docs/faust-runtime.md), exit 1 when the input topics' partition counts are wrong."""
    if config.exactly_once:
        print(f"segments worker: {FAUST_AT_LEAST_ONCE}", file=sys.stderr)
        return 2
    try:
        return FaustWorker(config, catalog).run()
    except PartitionCountsWrong as exc:
        print(exc, file=sys.stderr)
        return 1
