"""A restart with a backlog keeps event times: the native worker, stopped, its input piling up
meanwhile, started again on the same state dir with the default idle clock (1000 ms).

Opening a partition rebuilds its engine from the store (every customer decoded, timers indexed),
which takes seconds for a store of tens of thousands of customers, and the partitions open one
after another. Before the idle clock waited for a partition to be read to its end (runtime.CatchUp),
it counted from when the partition was opened: by the time the consumer fetched, the first
partitions looked idle, their clocks jumped to the wall clock, and the backlog was applied late,
stamped with the restart time (733 of 920 changes seen at the wrong `at`, 48 transitions published
twice under different change_ids).
"""
from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Callable

import msgspec
import pytest

from confluent_kafka import Producer

from stream.runtime import metrics
from stream.kafka.topic_admin import ensure_topics
from stream.engine.core import Engine
from stream.model.decoding import Decoder
from stream.rules.catalog import load_catalog
from stream.tools.synth import shopper_events
from stream.model.time import SECOND, format_rfc3339, parse_rfc3339
from stream.worker.loop import Worker

from . import conformance
from .conformance import BULK_CUSTOMERS, bulk_views
from .workers import PARTITIONS, Running, settings

_OPENED = re.compile(r"partition \d+ ready: .* in ([0-9.]+)s")


def late_events(topic: str) -> float:
    return sum(sample.value for family in metrics.EVENTS.collect() for sample in family.samples
               if sample.name.endswith("_total") and sample.labels.get("topic") == topic
               and sample.labels.get("outcome") == "late")


def replayed_late(lines: list[bytes], partition_of: dict[str, int]) -> int:
    """How many events the per-partition replay of the lines applies as late."""
    engines = {p: Engine(load_catalog()) for p in set(partition_of.values())}
    decode = Decoder().decode
    for line in lines:
        event = decode(line)
        engines[partition_of[event.customer_id]].apply(event, [])
    return sum(engine.stats.late for engine in engines.values())


@pytest.mark.timeout(300)
def test_restart_with_backlog_applies_it_at_its_own_times(kafka_bootstrap, unique_topic, tmp_path, caplog):
    bulk = bulk_views(BULK_CUSTOMERS)
    shoppers = list(shopper_events(300, 6000, seed=31))
    before, backlog = shoppers[:3000], shoppers[3000:]
    s = settings(kafka_bootstrap, unique_topic, tmp_path / "state", batch_size=5000, commit_interval_ms=100)
    topic = s.input_topics[0]
    partition_of: dict[str, int] = {}

    # the first run builds the store (no idle clock: nothing here depends on it)
    first = Worker(s, load_catalog())
    ensure_topics(kafka_bootstrap, first.topics())
    conformance.produce(kafka_bootstrap, topic, bulk + before, partition_of)
    with Running(first) as running:
        running.wait_for(len(bulk) + len(before), timeout=120)

    # the backlog arrives while no worker runs
    cuts = conformance.produce(kafka_bootstrap, topic, backlog, partition_of)

    # the restart, on the same state dir, with the default idle clock
    again = Worker(dataclasses.replace(s, idle_advance_ms=1000), load_catalog())
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="segments.worker"), Running(again) as running:
        running.wait_for(len(backlog), timeout=120)
    opened = [float(m.group(1)) for m in map(_OPENED.search, caplog.messages) if m]
    print(f"[restart-backlog] partitions opened in {opened} s")
    assert len(opened) == PARTITIONS
    # the test means something only if opening took longer than the idle threshold
    assert sum(opened) > 1.5, f"opening took {sum(opened):.2f}s in all: make the store larger"

    lines = bulk + shoppers
    observed = conformance.read_all(kafka_bootstrap, s.changes_topic, PARTITIONS)
    reference = conformance.replay_by_partition(lines, partition_of)
    ids = [c["change_id"] for c in observed]
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} change_ids published twice"
    # every change up to each partition's newest event equals the replay's (the idle clock may
    # move customers only after that, once the backlog is applied)
    conformance.assert_conforms(reference, observed, cuts)
    assert late_events(topic) == 0, "backlog events were applied as late"



class _BacklogOnRevoke(Worker):
    """A worker that, the first time its partitions are revoked, has the backlog produced before
    the callback returns: the input that piles up during a rebalance, deterministically there
    before any partition is assigned again."""

    def __init__(self, *args, backlog: Callable[[], None]):
        super().__init__(*args)
        self._backlog: Callable[[], None] | None = backlog

    def _on_revoke(self, consumer, partitions) -> None:
        super()._on_revoke(consumer, partitions)
        if self._backlog is not None and partitions:
            self._backlog()
            self._backlog = None


def relive(lines: list[bytes], start: int, end: int) -> list[bytes]:
    """The lines with their occurred_at moved, in the same order, onto [start, end] (microseconds)."""
    times = [parse_rfc3339(msgspec.json.decode(line)["occurred_at"]) for line in lines]
    low, span = times[0], max(times[-1] - times[0], 1)
    out = []
    for line, t in zip(lines, times, strict=True):
        event = msgspec.json.decode(line)
        event["occurred_at"] = format_rfc3339(start + (t - low) * (end - start) // span)
        out.append(msgspec.json.encode(event))
    return out


@pytest.mark.timeout(300)
def test_rebalance_with_backlog_applies_it_at_its_own_times(kafka_bootstrap, unique_topic, tmp_path, caplog):
    """A second worker joins while input flows: the first reopens the partitions it keeps (from
    its store), the second restores the others from the changelog, one partition after another,
    and then both read what arrived meanwhile. The input is dated as it is produced (a live shop),
    so the first worker's idle clock follows the wall clock before the rebalance, as it should, and
    what arrives during the rebalance must still be applied at its own times: every change at the
    replay's `at`, none twice, none late."""
    now = time.time_ns() // 1000
    bulk = relive(bulk_views(BULK_CUSTOMERS), now - 600 * SECOND, now - 300 * SECOND)
    shoppers = list(shopper_events(300, 6000, seed=37))
    before = relive(shoppers[:3000], now - 300 * SECOND, now - 60 * SECOND)
    backlog: list[bytes] = []
    s = settings(kafka_bootstrap, unique_topic, tmp_path / "state-a", batch_size=5000, commit_interval_ms=100,
                 idle_advance_ms=1000)
    topic = s.input_topics[0]
    partition_of: dict[str, int] = {}
    cuts: dict[str, str] = {}

    def pile_up() -> None:
        """During the rebalance: dated after the first worker's clock (the wall clock - 1 s)."""
        wall = time.time_ns() // 1000
        backlog.extend(relive(shoppers[3000:], wall - SECOND // 2, wall - SECOND // 10))
        cuts.update(conformance.produce(kafka_bootstrap, topic, backlog, partition_of))

    first = _BacklogOnRevoke(s, load_catalog(), backlog=pile_up)
    ensure_topics(kafka_bootstrap, first.topics())
    conformance.produce(kafka_bootstrap, topic, bulk + before, partition_of)
    second = Worker(dataclasses.replace(s, instance_id="1", state_dir=tmp_path / "state-b"), load_catalog())
    with caplog.at_level(logging.INFO, logger="segments.worker"), Running(first) as a:
        a.wait_for(len(bulk) + len(before), timeout=120)
        with Running(second) as b:
            deadline = time.monotonic() + 120
            while not cuts or a.consumed + b.consumed < len(bulk) + len(shoppers):
                assert time.monotonic() < deadline, \
                    f"consumed {a.consumed + b.consumed}; backlog produced: {bool(cuts)}"
                time.sleep(0.2)
    opened = [float(m.group(1)) for m in map(_OPENED.search, caplog.messages) if m]
    print(f"[restart-backlog] partitions opened in {opened} s")
    assert sum(opened[PARTITIONS:]) > 1.5, f"reopening took {sum(opened[PARTITIONS:]):.2f}s: make the store larger"

    observed = conformance.read_all(kafka_bootstrap, s.changes_topic, PARTITIONS)
    reference = conformance.replay_by_partition(bulk + before + backlog, partition_of)
    ids = [c["change_id"] for c in observed]
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} change_ids published twice"
    conformance.assert_conforms(reference, observed, cuts)
    assert late_events(topic) == 0, "events that arrived during the rebalance were applied as late"


@pytest.mark.timeout(300)
def test_restart_with_a_routed_backlog_waits_for_it(kafka_bootstrap, unique_topic, tmp_path):
    """The backlog is in a routed topic (orders keyed by order id, one partition): the keyed topics
    are at their ends at once after the restart, but every engine must wait until the routed
    topic is read to its end and re-published, or the orders come back through the repartition
    topic late."""
    bulk = bulk_views(BULK_CUSTOMERS)
    shoppers = list(shopper_events(200, 4000, seed=5))
    orders = [line for line in shoppers if b'"type":"order_' in line]
    rest = [line for line in shoppers if b'"type":"order_' not in line]
    routed = f"{unique_topic}-orders"
    s = settings(kafka_bootstrap, unique_topic, tmp_path / "state", batch_size=5000, commit_interval_ms=100,
                 routed_topics=(routed,))
    topic = s.input_topics[0]
    partition_of: dict[str, int] = {}
    first = Worker(s, load_catalog())
    ensure_topics(kafka_bootstrap, first.topics() + [(routed, 1, {})])
    conformance.produce(kafka_bootstrap, topic, bulk + rest, partition_of)
    with Running(first) as running:
        running.wait_for(len(bulk) + len(rest), timeout=120)

    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for line in orders:
        producer.produce(routed, key=msgspec.json.decode(line)["order_id"].encode(), value=line)
    assert producer.flush(30) == 0
    with Running(Worker(dataclasses.replace(s, idle_advance_ms=1000), load_catalog())) as running:
        running.wait_for(len(orders), timeout=120)      # applied, from the repartition topic

    assert {msgspec.json.decode(line)["customer_id"] for line in orders} <= set(partition_of)
    observed = conformance.read_all(kafka_bootstrap, s.changes_topic, PARTITIONS)
    reference = conformance.replay_by_partition(bulk + rest + orders, partition_of)
    ids = [c["change_id"] for c in observed]
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} change_ids published twice"
    newest: dict[int, int] = {}
    for line in bulk + rest + orders:
        event = msgspec.json.decode(line)
        p = partition_of[event["customer_id"]]
        newest[p] = max(newest.get(p, 0), parse_rfc3339(event["occurred_at"]))
    cuts = {customer: format_rfc3339(newest[p]) for customer, p in partition_of.items()}
    conformance.assert_conforms(reference, observed, cuts)
    # the orders come after the rest of their partitions' input, in the replay too: only as many late
    assert late_events(s.repartition_topic) == replayed_late(bulk + rest + orders, partition_of)
