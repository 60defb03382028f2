"""`segments worker --runtime faust` run as a user runs it (a subprocess, stopped with SIGTERM)
against the session broker, its output read back with read_committed and held to the conformance
check: for the same input, the same segment changes as `replay_by_partition` (and so as the
native worker), customer by customer, with dead letters for bad input.

Why identical duplicates are allowed: the Faust runtime is at-least-once only. Faust's
exactly_once cannot publish this worker's output (faust-streaming 0.15 looks every output topic up
among the consumed ones, faust-streaming#440, and sends some records outside any transaction,
#177), and on Tansu aiokafka does not even get a producer id. At-least-once lets a change that was
published before a failure be published again after it, with the same change_id; these runs stop
cleanly and show none, but the guarantee does not promise that, so the check drops repeats of a
change_id (nothing else) and counts them.
"""
from __future__ import annotations

import contextlib
import dataclasses
import random
import shutil
import signal
import time
from collections import defaultdict
from pathlib import Path

import msgspec
import pytest
from confluent_kafka import Producer

from stream.faust_runtime import app as faust_runtime
from stream.faust_runtime.topics import topics as faust_topics
from stream.kafka.topic_admin import ensure_topics
from stream.runtime.settings import WorkerConfig
from stream.rules.catalog import load_catalog
from stream.tools.synth import shopper_events

from . import conformance
from .conformance import BULK_CUSTOMERS, bulk_views
from .workers import PARTITIONS, FaustProcess, names

BAD = [b"not json", b'{"type":"order_paid","event_id":"x","customer_id":"c1"}',
       b'{"type":"gift_card_bought","event_id":"g","customer_id":"c1","occurred_at":"2025-01-02T00:00:00Z"}',
       b'{"type":"product_viewed","event_id":"big","customer_id":"c1","occurred_at":"2025-01-02T00:00:00Z",'
       b'"product_id":"p","category":"' + b"x" * (1 << 20) + b'"}']


def assert_changes_conform(bootstrap: str, s: WorkerConfig, lines: list[bytes],
                           partition_of: dict[str, int]) -> list[dict]:
    """The changes topic equals replay_by_partition customer by customer, all of it (no cut: each
    partition's engine saw exactly its own input); repeats of a change_id aside (module docstring)."""
    observed = conformance.read_all(bootstrap, s.changes_topic, PARTITIONS)
    reference = conformance.replay_by_partition(lines, partition_of)
    conformance.assert_conforms(reference, observed, dict.fromkeys(partition_of, "9999"),
                                allow_identical_duplicates=True)
    repeats = len(observed) - len({c["change_id"] for c in observed})
    print(f"[faust] {len(observed)} changes published, {len(reference)} expected, {repeats} repeated")
    return reference


def test_faust_runtime_gives_the_same_changes_as_replay(kafka_bootstrap, unique_topic, start):
    lines = list(shopper_events(300, 5000, seed=3))
    lines[100:100] = BAD
    s = names(unique_topic)
    ensure_topics(kafka_bootstrap, faust_topics(s))
    partition_of: dict[str, int] = {}
    conformance.produce(kafka_bootstrap, s.input_topics[0], lines, partition_of)
    worker = start(s, "--idle-advance-ms", "0")
    worker.wait_committed({s.input_topics[0]: len(lines)})

    # the native worker's endpoints and metric names
    assert worker.get("/healthz")[0] == 200 and worker.get("/readyz")[0] == 200
    status, text = worker.get("/metrics")
    assert status == 200
    counted = {outcome: 0.0 for outcome in ("applied", "duplicate", "late", "dead_letter")}
    for line in text.splitlines():
        if line.startswith("segments_events_total{"):
            counted[line.split('outcome="')[1].split('"')[0]] += float(line.rsplit(" ", 1)[1])
    assert counted["dead_letter"] == len(BAD) and sum(counted.values()) == len(lines), counted
    for name in ("segments_changes_total{", "segments_batch_duration_seconds_count", "segments_members{",
                 "segments_event_to_change_seconds_count"):
        assert name in text, name
    # the gauges refreshed every 5 s: lag comes to 0 on every input partition once all is applied
    deadline = time.monotonic() + 15
    while True:
        text = worker.get("/metrics")[1]
        lags = {line.split('partition="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
                for line in text.splitlines() if line.startswith("segments_consumer_lag{")}
        if lags == {str(p): 0.0 for p in range(PARTITIONS)}:
            break
        assert time.monotonic() < deadline, f"consumer lag {lags}"
        time.sleep(0.5)
    stored = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                 if line.startswith("segments_state_customers{"))
    assert stored >= len(partition_of) * 0.9, (stored, len(partition_of))      # RocksDB's estimate
    assert "segments_timers_pending " in text
    worker.terminate()

    reference = assert_changes_conform(kafka_bootstrap, s, lines, partition_of)
    assert len(reference) > 500

    # membership: each customer's last record holds its segments as of its last change
    expected: dict[str, dict[str, str]] = defaultdict(dict)
    for change in reference:
        if change["change"] == "entered":
            expected[change["customer_id"]][change["segment"]] = change["at"]
        else:
            expected[change["customer_id"]].pop(change["segment"])
    last: dict[str, dict | None] = {}
    for msg in conformance.read_messages(kafka_bootstrap, s.membership_topic, PARTITIONS):
        last[msg.key().decode()] = None if msg.value() is None else msgspec.json.decode(msg.value())
    assert set(last) == set(expected)
    for customer, record in last.items():
        assert (record or {}).get("segments", {}) == expected[customer], customer
        assert record is None or record["customer_id"] == customer

    # dead letters: the original bytes, and where they came from
    letters = conformance.read_messages(kafka_bootstrap, s.dead_letter_topic, PARTITIONS)
    assert sorted(m.value() for m in letters) == sorted(BAD)
    for msg in letters:
        headers = dict(msg.headers())
        assert headers["source.topic"] == s.input_topics[0].encode()
        assert int(headers["source.partition"]) in range(PARTITIONS) and int(headers["source.offset"]) >= 0
    reasons = {m.value()[:20]: dict(m.headers())["reason"].decode() for m in letters}
    assert reasons[b"not json"].startswith("not JSON")
    assert any("over the 1048576-byte limit" in r for r in reasons.values())


def test_faust_runtime_resumes_from_its_changelog_and_routes_orders(kafka_bootstrap, unique_topic, start):
    """Two lifetimes, the second with an empty state dir: whatever the first one knew, the second
    has only through Faust's restore of the table's changelog. The second reads orders keyed by
    order id from a routed topic (one partition, so in their order); they reach each customer's
    engine through the repartition topic after the rest, so per-partition replay of the rest and
    then the orders is the exact reference. (The second join can take longer on Tansu: its first
    generation is 0, and aiokafka sends no LeaveGroup from generation 0, so the first worker stays
    a member until its session times out, which costs the second one a rebalance.)"""
    lines = list(shopper_events(200, 4000, seed=5))
    orders = [line for line in lines if b'"type":"order_' in line]
    rest = [line for line in lines if b'"type":"order_' not in line]
    routed = f"{unique_topic}-orders"
    s = dataclasses.replace(names(unique_topic), routed_topics=(routed,))
    # the repartition topic too: created by the second worker only, it could be auto-created by a
    # reader asking for its offsets before that, with the broker's default partition count
    ensure_topics(kafka_bootstrap, faust_topics(s) + [(routed, 1, {})])
    partition_of: dict[str, int] = {}
    conformance.produce(kafka_bootstrap, s.input_topics[0], rest, partition_of)
    first = start(s, "--idle-advance-ms", "0")
    first.wait_committed({s.input_topics[0]: len(rest)})
    first.terminate()

    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for line in orders:
        producer.produce(routed, key=msgspec.json.decode(line)["order_id"].encode(), value=line)
    assert producer.flush(30) == 0
    second = start(s, "--idle-advance-ms", "0", "--routed-topics", routed)
    second.wait_committed({routed: len(orders), s.repartition_topic: len(orders)})
    second.terminate()

    customers = {msgspec.json.decode(line)["customer_id"] for line in orders}
    assert customers <= set(partition_of), "test data: every customer who orders also browses or carts"
    assert_changes_conform(kafka_bootstrap, s, rest + orders, partition_of)


def kill_twice(start, s: WorkerConfig, state: Path, rng: random.Random,
               *options: str) -> tuple[FaustProcess, dict[int, int]]:
    """Start a worker on `state`, then twice: SIGKILL it at a random moment and start another on
    the same state dir, deleted first the second time. Returns the last worker and the group's
    committed input offsets it started from (the dead one commits nothing more)."""
    worker = start(s, *options, state_dir=state)
    worker.wait_ready(timeout=60)
    for wipe in (False, True):
        time.sleep(rng.uniform(2.0, 4.0))
        worker.close()
        assert worker.proc.returncode == -signal.SIGKILL
        if wipe:
            shutil.rmtree(state)
        committed = conformance.committed_offsets(worker.bootstrap, s.group_id, s.input_topics[0], PARTITIONS)
        assert committed is not None, "the broker did not answer for the committed offsets"
        worker = start(s, *options, state_dir=state)
        # the dead member keeps its partitions until its session times out
        worker.wait_ready(timeout=60)
    return worker, committed


@pytest.mark.timeout(180)
def test_faust_runtime_sigkill_loses_nothing(kafka_bootstrap, unique_topic, start, tmp_path):
    """SIGKILL the worker twice at random moments while input flows, and restart it on the same
    state dir; the second time the state dir is deleted first, so everything it knew comes back
    only through Faust's restore of the changelog. The changes must still be the per-partition
    replay's, customer by customer: nothing lost, nothing different, identical repeats aside (the
    runtime is at-least-once; see the module docstring)."""
    rng = random.Random(2718)
    lines = list(shopper_events(300, 5000, seed=23))
    s = names(unique_topic)
    ensure_topics(kafka_bootstrap, faust_topics(s))
    state = tmp_path / "kept-state"
    feeder = conformance.Feeder(kafka_bootstrap, s.input_topics[0], lines, per_second=100)
    feeder.start()
    try:
        worker, _ = kill_twice(start, s, state, rng, "--idle-advance-ms", "0")
        produced_while_killing = feeder.produced
        ends = feeder.finish(PARTITIONS)
        worker.wait_committed({s.input_topics[0]: sum(ends.values())}, timeout=90)
        worker.terminate()
    finally:
        feeder.rush()
    assert produced_while_killing < len(lines), "the input should still be flowing during the kills"
    assert_changes_conform(kafka_bootstrap, s, lines, feeder.partition_of)


@pytest.mark.timeout(180)
def test_faust_runtime_restart_with_idle_clock_applies_and_commits_everything(kafka_bootstrap, unique_topic,
                                                                            start, tmp_path):
    """The kills of the test above with the idle clock on (its ticks share the agent with the
    input): the last worker must apply every event from the offsets it started at, and commit up
    to the end promptly. Before fixes.HoldingApp held the input partitions until the rebalance had
    ended, Faust's recovery let events in while it sought the committed offsets, then cleared them
    from the agent's queue: some were never applied, and the commits stopped short of the end for
    good, or crept on by about one offset per commit interval (see HoldingApp). The race did not show
    every run (3 runs of 5 on the embedded broker). Changes are not compared with the replay here:
    the idle clock runs this past-dated input late."""
    lines = list(shopper_events(300, 5000, seed=23))
    s = names(unique_topic)
    ensure_topics(kafka_bootstrap, faust_topics(s))
    feeder = conformance.Feeder(kafka_bootstrap, s.input_topics[0], lines, per_second=100)
    feeder.start()
    try:
        worker, started_at = kill_twice(start, s, tmp_path / "kept-state", random.Random(2718),
                                        "--idle-advance-ms", "1000")
        ends = feeder.finish(PARTITIONS)
        # all applied within a second or two once the input ends; the bound leaves room for a busy machine
        worker.wait_committed({s.input_topics[0]: sum(ends.values())}, timeout=30)
        text = worker.get("/metrics")[1]
        counted = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                      if line.startswith("segments_events_total{") and f'topic="{s.input_topics[0]}"' in line)
        # every offset from where it started counted (applied, late or duplicate); more if a
        # rebalance made it read some again
        assert counted >= sum(ends.values()) - sum(started_at.values()), (counted, ends, started_at)
        worker.terminate()
    finally:
        feeder.rush()


@pytest.mark.parametrize("transactional", [False, True], ids=["plain", "transactional-producer"])
def test_faust_runtime_idle_clock_moves_customers_without_input(kafka_bootstrap, unique_topic, start, tmp_path,
                                                                 transactional):
    """With --idle-advance-ms, an idle partition's stream time follows the wall clock (through the
    timer's ticks): a customer who viewed something now leaves `recently-viewed` (within 3s) 3 s
    later with no further input, caused by time, at exactly occurred_at + 3 s.

    The clock lags the wall clock by 1.5 s here (the native worker's test: 0.5 s): Faust's consumer
    asks for fetches that wait up to 1.5 s for data, and Tansu holds each such fetch for half of
    that even when data arrives, so the view can reach the worker 0.75 s after it happened; with a
    shorter lag the clock would already be past it, and it would be applied late.

    From a transactional producer, the partition ends with the transaction's marker, past the
    last record handed over: the partition is still caught up (it once never was, and its clock
    stopped for good)."""
    segments = tmp_path / "segments.yaml"
    segments.write_text(conformance.RECENTLY_VIEWED)
    load_catalog(segments)                      # valid, or the worker would exit 2
    s = names(unique_topic)
    ensure_topics(kafka_bootstrap, faust_topics(s))
    # A transactional producer's event is readable only at its commit: more lag for it (see the
    # native worker's test_idle_clock_moves_customers_without_input).
    idle_ms = 3500 if transactional else 1500
    worker = start(s, "--idle-advance-ms", str(idle_ms), "--segments", str(segments))
    worker.wait_ready()
    conformance.check_idle_clock(kafka_bootstrap, s.input_topics[0], s.changes_topic, PARTITIONS,
                                 8.5 + idle_ms / 1000, worker.tail, transactional)
    worker.terminate()


@pytest.mark.timeout(240)
def test_faust_runtime_restart_with_backlog_applies_it_at_its_own_times(kafka_bootstrap, unique_topic, start,
                                                                       tmp_path):
    """A clean restart on the same state dir, with the default idle clock (1000 ms), after input
    piled up while no worker ran (test_restart_backlog.py has the native worker's): each partition's
    engine is rebuilt from a store of tens of thousands of customers, which takes seconds, and
    the ticks of the idle clock must not advance a partition before its backlog is applied (it did
    when ticks went to partitions without an engine yet, or by time since the last input): every
    change at the replay's `at`, no event late."""
    bulk = bulk_views(BULK_CUSTOMERS)
    shoppers = list(shopper_events(300, 6000, seed=31))
    before, backlog = shoppers[:3000], shoppers[3000:]
    s = names(unique_topic)
    topic = s.input_topics[0]
    ensure_topics(kafka_bootstrap, faust_topics(s))
    state = tmp_path / "kept-state"
    partition_of: dict[str, int] = {}
    conformance.produce(kafka_bootstrap, topic, bulk + before, partition_of)
    first = start(s, "--idle-advance-ms", "0", state_dir=state)
    first.wait_committed({topic: len(bulk) + len(before)}, timeout=120)
    first.terminate()

    cuts = conformance.produce(kafka_bootstrap, topic, backlog, partition_of)
    second = start(s, "--idle-advance-ms", "1000", state_dir=state)
    second.wait_committed({topic: len(bulk) + len(shoppers)}, timeout=120)
    text = second.get("/metrics")[1]
    second.terminate()

    late = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("segments_events_total{") and 'outcome="late"' in line)
    observed = conformance.read_all(kafka_bootstrap, s.changes_topic, PARTITIONS)
    reference = conformance.replay_by_partition(bulk + shoppers, partition_of)
    # repeats of one change_id are the at-least-once allowance (module docstring); one transition
    # under two change_ids (once late, once not) is not
    conformance.assert_conforms(reference, observed, cuts, allow_identical_duplicates=True)
    assert late == 0, f"{late} backlog events applied as late"


def test_the_faust_runtimes_clients_create_no_topic_by_looking_it_up(kafka_bootstrap, unique_topic, monkeypatch):
    """aiokafka asks the broker to create a missing topic it looks up; the embedded broker (and
    Kafka by default) does. The Faust runtime's clients must not: a wiped or deleted topic would
    come back under the running group with the broker's defaults (no compaction)."""
    import asyncio

    from aiokafka import AIOKafkaProducer
    from confluent_kafka.admin import AdminClient

    import aiokafka.admin.client
    import aiokafka.client

    from stream.faust_runtime.fixes import refuse_auto_creation

    for module in (aiokafka.client, aiokafka.admin.client):      # restored after the test
        monkeypatch.setattr(module, "MetadataRequest", module.MetadataRequest)
    refuse_auto_creation()

    async def look_up() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(producer.client._wait_on_metadata(unique_topic), 3)
        finally:
            await producer.stop()
    asyncio.run(look_up())
    assert unique_topic not in AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10).topics


def test_faust_runtime_follows_the_definitions_topic(kafka_bootstrap, unique_topic, start, tmp_path):
    """As the native worker (tests/integration/test_definitions.py; the steps are definition_steps.py'):
    a definition changed with `segments define` while the Faust runtime runs moves the customers it stores, exactly the
    moves of the engine per partition redefined over its whole store, change id for change id; a
    segment added and then removed (`segments undefine`) makes its members enter, then exit."""
    from .definition_steps import Reference, add_and_remove_buyer, change_loyal, ids
    lines = list(shopper_events(300, 4000, seed=11))
    s = dataclasses.replace(names(unique_topic), definitions_topic=f"{unique_topic}-definitions")
    defs = s.definitions_topic
    ensure_topics(kafka_bootstrap, faust_topics(s))
    partition_of: dict[str, int] = {}
    conformance.produce(kafka_bootstrap, s.input_topics[0], lines, partition_of)
    worker = start(s, "--idle-advance-ms", "0", "--definitions-topic", defs)
    worker.wait_committed({s.input_topics[0]: len(lines)})
    reference = Reference(lines, partition_of)

    path = tmp_path / "loyal.yaml"
    expected = change_loyal(kafka_bootstrap, s.changes_topic, defs, path, reference)
    added_and_removed, moves = add_and_remove_buyer(kafka_bootstrap, s.changes_topic, defs, path, reference)
    assert ids(moves) == ids(expected) | ids(added_and_removed), "a definition move too many or missing"

    text = worker.get("/metrics")[1]
    assert 'segments_definition_version{segment="loyal"} 2.0' in text
    assert 'segments_reevaluations_running 0.0' in text
    worker.terminate()


def test_faust_runtime_refuses_input_topics_with_another_partition_count(kafka_bootstrap, unique_topic, tmp_path,
                                                                          capsys):
    """Partition p of every input topic feeds engine p: a topic with another partition count stops
    the start with exit 1, naming it (the runtime's error, turned into the status by its command)."""
    s = names(unique_topic)
    ensure_topics(kafka_bootstrap, [(s.input_topics[0], PARTITIONS + 1, {})])
    config = dataclasses.replace(s, bootstrap_servers=kafka_bootstrap, guarantee="at_least_once",
                                 state_dir=tmp_path / "state", metrics_port=None, definitions_topic=None)
    assert faust_runtime.run(config, load_catalog()) == 1
    assert capsys.readouterr().err == (f"segments worker: input topics must have {PARTITIONS} partitions "
                                       f"(--partitions): {s.input_topics[0]} has {PARTITIONS + 1}\n")
