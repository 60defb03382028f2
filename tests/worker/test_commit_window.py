"""The native worker's commit window without Kafka: one transaction per commit_interval_ms of
consumed batches, and a rebalance in the middle of one (stream.worker.loop)."""
from __future__ import annotations

import json
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition
from prometheus_client import REGISTRY

from stream.rules.catalog import load_catalog
from stream.runtime.batch import Batch
from stream.runtime.settings import WorkerConfig
from stream.storage.rocksdb_store import PartitionStore
from stream.worker import loop
from stream.worker.loop import Worker
from stream.worker.partition import PartitionTask
from tests.definition_records import OneRecordFeed, record

TOPIC = "shop-events"


class _Clock:
    """The loop's clock, moved only by the fake consumer."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now


class _Consumer:
    """Hands out the scripted batches, one per consume/poll call, each taking `step` seconds."""

    def __init__(self, clock: _Clock, batches: list[list[Message]], step: float):
        self.clock, self.batches, self.step = clock, batches, step
        self.waits: list[float] = []
        self.seeks: list[tuple[str, int, int]] = []

    def consume(self, n: int, timeout: float) -> list[Message]:
        self.clock.now += self.step
        return self.batches.pop(0) if self.batches else []

    def poll(self, timeout: float) -> Message | None:
        self.waits.append(timeout)
        return None

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(TOPIC, p) for p in (0, 1)]

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, 7) for tp in partitions]

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.topic, tp.partition, tp.offset))


def paid(customer: str, n: int, partition: int = 0) -> Message:
    value = json.dumps({"type": "order_paid", "event_id": f"e-{customer}-{n}", "customer_id": customer,
                        "occurred_at": f"2026-01-{n + 1:02d}T00:00:00Z", "order_id": f"o-{customer}-{n}",
                        "amount": 60000}).encode()
    return Message(topic=TOPIC, partition=partition, offset=n, key=customer.encode(), value=value)


@pytest.fixture
def worker(tmp_path, monkeypatch):
    """A worker with partitions 0 and 1 open and a commit that writes the stores and records what
    each transaction carried: (events, changes per partition)."""
    clock = _Clock()
    monkeypatch.setattr(loop, "time", clock)
    config = WorkerConfig(bootstrap_servers="localhost:1", instance_id="i", partitions=2, idle_advance_ms=None,
                          metrics_port=None, input_topics=(TOPIC,), commit_interval_ms=100)
    w = Worker(config, load_catalog())
    for p in (0, 1):
        task = w.tasks[p] = PartitionTask(p, PartitionStore(tmp_path / f"p{p}"), w.catalog)
        w.live.attach(task)
    w.clock = clock
    w.transactions = []

    def publish(batch: Batch) -> Any:
        w.transactions.append((batch.events, {p: len(t.changes) for p, t in w.tasks.items()}))
        for task in w.tasks.values():
            task.store.set_stream_time(task.engine.now)
            task.store.pending()
            task.store.commit(len(w.transactions))
            task.changes.clear()
        return None
    w._publish = publish
    yield w
    for task in w.tasks.values():
        task.store.close()


def test_one_transaction_takes_the_batches_of_one_commit_interval(worker):
    consumer = worker.consumer = _Consumer(worker.clock, [[paid(f"c{i}", i)] for i in range(20)], step=0.03)
    turns = list(worker._turns())
    # the first batch at 0.03 s; then batches until 100 ms after it: at 0.06, 0.09, 0.12 and 0.15
    assert len(turns) == 5
    assert consumer.waits == []                     # messages were at hand: no wait
    worker._commit_turns(turns)
    assert worker.transactions == [(5, {0: 5, 1: 0})]


def test_a_commit_ends_when_the_input_stops_rather_than_waiting_out_the_interval(worker):
    consumer = worker.consumer = _Consumer(worker.clock, [[paid("a", 0)], [paid("b", 1)], []], step=0.03)
    worker._commit_turns(worker._turns())
    assert worker.transactions == [(2, {0: 2, 1: 0})]
    # the third consume came at 0.06 s, 30 ms into the window: it waited what was left of it
    assert consumer.waits == [pytest.approx(0.07)]
    consumer.batches = []
    worker._commit_turns(worker._turns())           # nothing arrives: the first wait is the whole interval
    assert consumer.waits[-1] == 0.1 and len(worker.transactions) == 1


def test_a_revoke_in_the_middle_of_a_commit_commits_what_it_applied_first(worker):
    def turns():
        yield [paid("a", 0), paid("b", 1, partition=1)]
        # consume() runs the rebalance callback: everything revoked, then partition 0 given back
        worker._on_revoke(None, [TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)])
        assert worker.tasks == {} and worker._open is None
        assert worker.transactions == [(2, {0: 1, 1: 1})]
        worker.tasks[0] = task = PartitionTask(0, PartitionStore(worker.tasks_dir / "p0"), worker.catalog)
        worker.live.attach(task)
        yield [paid("c", 2)]
    worker.tasks_dir = worker.tasks[0].store.path.parent
    worker._commit_turns(turns())
    assert worker.transactions == [(2, {0: 1, 1: 1}), (1, {0: 1})]
    assert worker.tasks[0].store.get("a").member                 # committed before the revoke, kept


def test_partitions_lost_in_the_middle_of_a_commit_drop_it_and_the_kept_ones_go_back(worker):
    kept = worker.tasks[1]
    consumer = worker.consumer = _Consumer(worker.clock, [], step=0.001)

    def turns():
        yield [paid("a", 0), paid("b", 1, partition=1)]
        worker._on_lost(consumer, [TopicPartition(TOPIC, 0)])
        yield []
    worker._commit_turns(turns())
    assert worker.transactions == []                 # the group took partition 0: nothing to commit
    assert list(worker.tasks) == [1] and worker.tasks[1] is kept
    assert kept.store.get("b") is None and not kept.changes     # back to its committed state ...
    assert consumer.seeks == [(TOPIC, 1, 7)]                   # ... and its input read again from there


def test_a_commit_cut_short_by_an_exception_is_not_committed_by_the_close_that_follows(worker, monkeypatch):
    """An exception out of the loop in the middle of a commit (a batch half applied) ends run(),
    whose _close() closes the consumer: librdkafka's close runs the revoke callback, which commits
    what the commit under way applied, with the consumer's position past every message consumed
    (the ones never applied too: they would be skipped). Nothing of it may be committed."""
    take = Batch.take

    def failing_take(self, topic, partition, offset, *rest):
        if offset == 2:
            raise RuntimeError("a bug while applying offset 2")
        take(self, topic, partition, offset, *rest)
    monkeypatch.setattr(Batch, "take", failing_take)

    class Closing(_Consumer):
        def close(self) -> None:                # as librdkafka's close: the assignment revoked first
            worker._on_revoke(self, self.assignment())
    worker.consumer = Closing(worker.clock, [[paid("a", 0)], [paid("b", 1), paid("c", 2), paid("d", 3)]], step=0.01)
    with pytest.raises(RuntimeError):            # as run(): the loop, then _close() in its finally
        worker._commit_turns(worker._turns())
    worker._close(None)
    assert worker.transactions == []


def test_the_idle_clock_waits_for_routed_input_re_published_in_the_same_commit(tmp_path, monkeypatch):
    """A routed topic's events reach the engines only once read back from the repartition topic,
    after the commit that re-publishes them. The routed topic caught up (its EOF) in a commit that
    lasts longer than idle_advance_ms must not make the partitions idle at that commit's end: the
    clock would pass events still on their way (here, an order paid months ago, then late)."""
    clock = _Clock()
    monkeypatch.setattr(loop, "time", clock)
    config = WorkerConfig(bootstrap_servers="localhost:1", instance_id="i", partitions=1, idle_advance_ms=1000,
                          metrics_port=None, input_topics=(TOPIC,), routed_topics=("orders",),
                          commit_interval_ms=2000)
    w = Worker(config, load_catalog())
    task = w.tasks[0] = PartitionTask(0, PartitionStore(tmp_path / "p0"), w.catalog)
    w.live.attach(task)
    keyed = [(TOPIC, 0), (config.repartition_topic, 0)]
    for source in keyed:
        task.catch_up.assigned(source)
    w._routed.assigned(("orders", 0))
    published: list[list[str]] = []

    def publish(batch: Batch) -> Any:
        published.append([topic for topic, *_ in batch.output])
        task.store.set_stream_time(task.engine.now)
        task.store.pending()
        task.store.commit(len(published))
        task.changes.clear()
        return None
    w._publish = publish

    class Waiting(_Consumer):
        def poll(self, timeout: float) -> Message | None:     # nothing arrives: the wait is spent
            self.clock.now += timeout
            return None

    def eof(topic: str) -> Message:
        return Message(topic=topic, partition=0, error=KafkaError(KafkaError._PARTITION_EOF))
    order = paid("a", 0)
    routed = Message(topic="orders", partition=0, offset=0, key=b"o-a-0", value=order.value())
    w.consumer = Waiting(clock, [[routed, eof("orders"), *(eof(t) for t, _ in keyed)]], step=0.01)
    before = task.engine.now
    try:
        w._commit_turns(w._turns())
        assert published == [[config.repartition_topic]]        # the order re-published, not applied yet
        assert task.engine.now == before                        # ... so the partition is not idle
        # Read back (and the partition idle for the threshold after that), the clock moves.
        repartitioned = Message(topic=config.repartition_topic, partition=0, offset=0, key=b"a", value=order.value())
        w.consumer.batches = [[repartitioned, eof(config.repartition_topic)]]
        w._commit_turns(w._turns())
        assert task.engine.now > before
    finally:
        task.store.close()


def test_a_routed_record_of_a_partition_revoked_within_the_batch_leaves_the_idle_clock_free(tmp_path):
    """consume() can return records fetched before the revoke it ran: a routed partition's record
    then marked the routed topics behind for good (its EOF never comes here any more), and no
    partition of the worker was idle again."""
    config = WorkerConfig(bootstrap_servers="localhost:1", instance_id="i", partitions=1, idle_advance_ms=1000,
                          metrics_port=None, input_topics=(TOPIC,), routed_topics=("orders",))
    w = Worker(config, load_catalog())
    w._routed.assigned(("orders", 0))
    w._routed.reached_end(("orders", 0), 1.0)
    w._on_revoke(None, [TopicPartition("orders", 0)])
    order = paid("a", 0)
    w._take(w._begin(), [Message(topic="orders", partition=0, offset=0, key=b"o-a-0", value=order.value())])
    assert w._routed.since is not None and not w._routed.behind


def _reevaluated() -> float:
    return REGISTRY.get_sample_value("segments_reevaluated_customers_total") or 0.0


def test_a_pass_counts_its_customers_once_when_its_commit_is_in(worker):
    worker._commit_turns([[paid(f"c{i}", i) for i in range(6)]])          # six stored customers
    worker.live.feed = OneRecordFeed(record("repeat-buyer", {"version": 2, "when": {"paid_orders": {"gte": 2}}}))
    published = worker._publish
    worker._publish = lambda batch: KafkaException(KafkaError(KafkaError._TRANSPORT))     # the broker gone
    worker.consumer = _Consumer(worker.clock, [], step=0.001)
    worker._recover = lambda exc: worker._rewind([], 0)     # (its backoff and new producer aside)
    before = _reevaluated()
    worker._commit_turns([[]])              # the pass's chunk runs, its commit fails: not counted
    assert _reevaluated() == before
    worker._publish = published
    worker._commit_turns([[]])              # it runs again from the committed state, and is in
    assert _reevaluated() == before + 6
