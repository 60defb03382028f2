"""The conformance check every driver passes: for the same input, the same transitions as
`segments replay`, customer by customer, with the same `at`, cause and change_id.

A Kafka driver keeps one clock per partition, where replay keeps one for the whole input; a timer
is therefore compared only up to the stream time of the customer's partition (the newest event
that partition saw). Before that instant every driver must agree exactly.

Also the input the tests of several drivers share (`paid`, `bulk_views`).
"""
from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable

import msgspec
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from stream.model.changes import encode_change
from stream.engine.core import Engine
from stream.model.decoding import Decoder
from stream.model.events import Event
from stream.rules.catalog import Catalog, load_catalog
from stream.model.time import SECOND, format_rfc3339, from_datetime
from stream.tools.synth import START

BULK_CUSTOMERS = 60_000        # makes opening three partitions take seconds (test_restart_backlog measures it)


def paid(customer: str, n: int, at: str, amount: float = 10) -> bytes:
    """The customer's n-th payment, at `at` (RFC 3339)."""
    return msgspec.json.encode({"type": "order_paid", "event_id": f"{customer}-p{n}", "customer_id": customer,
                                "occurred_at": at, "order_id": f"{customer}-o{n}", "amount": amount})


def bulk_views(customers: int) -> list[bytes]:
    """One view per customer, the day before the shopper input starts: a large store."""
    start = START - 86400 * SECOND
    return [(f'{{"type":"product_viewed","event_id":"b{n}","customer_id":"bulk{n}",'
             f'"occurred_at":"{format_rfc3339(start + n * 1000)}",'
             f'"product_id":"p{n % 500}","category":"books"}}').encode()
            for n in range(customers)]


def replay(lines: list[bytes], catalog: Catalog | None = None) -> list[dict]:
    """The reference: the engine over the lines in order, as published JSON (under `catalog`,
    default the built-in one)."""
    engine, decode, out = Engine(catalog or load_catalog()), Decoder().decode, []
    for line in lines:
        event = decode(line)
        if isinstance(event, Event):
            engine.apply(event, out)
    return [msgspec.json.decode(encode_change(c)) for c in out]


def replay_by_partition(lines: list[bytes], partition_of: dict[str, int]) -> list[dict]:
    """Replay run separately over each partition's events: exactly what a worker's engine for that
    partition sees, its clock included. Compared with it, a driver must agree on everything."""
    decode = Decoder().decode
    by_partition: dict[int, list[bytes]] = defaultdict(list)
    for line in lines:
        event = decode(line)
        if isinstance(event, Event):
            by_partition[partition_of[event.customer_id]].append(line)
    return [change for part in sorted(by_partition) for change in replay(by_partition[part])]


def produce(bootstrap: str, topic: str, lines: list[bytes],
            partition_of: dict[str, int] | None = None, transactional: bool = False) -> dict[str, str]:
    """Produce lines keyed by customer id; returns each customer's comparison cut: the newest
    event time on that customer's partition, as RFC 3339. `partition_of`, when given, is filled
    with each customer's partition. `transactional`: in one committed transaction, so that each
    partition written ends with the transaction's marker (a control record, never handed over)."""
    # murmur2: the partitioner the worker expects of every producer of customer-keyed topics
    config = {"bootstrap.servers": bootstrap, "linger.ms": 5, "message.max.bytes": 4 << 20,
              "partitioner": "murmur2_random"}
    if transactional:
        config["transactional.id"] = f"conformance-{uuid.uuid4().hex[:8]}"
    producer = Producer(config)
    if transactional:
        producer.init_transactions(30)
        producer.begin_transaction()
    partition_of = {} if partition_of is None else partition_of
    newest: dict[int, int] = defaultdict(lambda: -(1 << 62))
    decode = Decoder().decode

    def delivered(err, msg):
        assert err is None, err
        event = decode(msg.value())
        if isinstance(event, Event):
            partition_of[event.customer_id] = msg.partition()
            newest[msg.partition()] = max(newest[msg.partition()], from_datetime(event.occurred_at))

    for line in lines:
        event = decode(line)
        key = event.customer_id.encode() if isinstance(event, Event) else b"bad"
        producer.produce(topic, key=key, value=line, on_delivery=delivered)
        producer.poll(0)
    if transactional:
        producer.commit_transaction(30)
    producer.flush()
    return {customer: format_rfc3339(newest[p]) for customer, p in partition_of.items()}


def read_messages(bootstrap: str, topic: str, partitions: int, timeout: float = 30.0) -> list:
    """Every committed message of a topic, partition by partition (read_committed, by assign)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "conformance-reader",
                         "isolation.level": "read_committed", "enable.partition.eof": True,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    messages, done, deadline = [], set(), time.monotonic() + timeout
    try:
        while len(done) < partitions and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.5):
                if msg.error() is not None:
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        done.add(msg.partition())
                    continue
                messages.append(msg)
    finally:
        consumer.close()
    assert len(done) == partitions, f"{topic}: only partitions {sorted(done)} reached their end"
    return messages


def read_all(bootstrap: str, topic: str, partitions: int, timeout: float = 30.0) -> list[dict]:
    """Every committed record of a topic, decoded from JSON."""
    return [msgspec.json.decode(msg.value()) for msg in read_messages(bootstrap, topic, partitions, timeout)]


def per_customer(changes: list[dict], cuts: dict[str, str]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = defaultdict(list)
    for change in changes:
        if change["at"] <= cuts.get(change["customer_id"], ""):
            grouped[change["customer_id"]].append(change)
    return dict(grouped)


def assert_conforms(reference: list[dict], observed: list[dict], cuts: dict[str, str],
                    allow_identical_duplicates: bool = False) -> None:
    """Per customer, `observed` equals `reference` up to the customer's cut. With
    `allow_identical_duplicates`, a change repeated with the same change_id (a retried
    transaction the broker failed to hide) is dropped before comparing; nothing else is."""
    if allow_identical_duplicates:
        seen, unique = set(), []
        for change in observed:
            if change["change_id"] not in seen:
                seen.add(change["change_id"])
                unique.append(change)
        observed = unique
    want, got = per_customer(reference, cuts), per_customer(observed, cuts)
    wrong = sorted(c for c in set(want) | set(got) if want.get(c) != got.get(c))
    assert not wrong, "\n".join(
        f"{c}:\n  want {[(x['segment'], x['change'], x['at']) for x in want.get(c, [])]}"
        f"\n  got  {[(x['segment'], x['change'], x['at']) for x in got.get(c, [])]}" for c in wrong[:5])


class Feeder(threading.Thread):
    """Produces the lines in the background at a steady rate until rush(), then the rest at once.
    Keyed by customer id with the murmur2 partitioner, like conformance.produce; records each
    customer's partition and each partition's end offset from the delivery reports."""

    def __init__(self, bootstrap: str, topic: str, lines: list[bytes], per_second: float):
        super().__init__(name=f"feeder-{topic}", daemon=True)
        self.bootstrap, self.topic, self.lines, self.per_second = bootstrap, topic, lines, per_second
        self.partition_of: dict[str, int] = {}
        self.ends: dict[int, int] = defaultdict(int)
        self.produced = 0             # handed to the client (maybe still queued there)
        self.delivered = 0
        self.errors: list[object] = []
        self._rush = threading.Event()
        self._decode = Decoder().decode

    def run(self) -> None:
        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5,
                             "partitioner": "murmur2_random"})
        try:
            started = time.monotonic()
            for n, line in enumerate(self.lines):
                if not self._rush.is_set():
                    delay = started + n / self.per_second - time.monotonic()
                    if delay > 0:
                        self._rush.wait(delay)
                event = self._decode(line)
                key = event.customer_id.encode() if isinstance(event, Event) else b"bad"
                producer.produce(self.topic, key=key, value=line, on_delivery=self._on_delivery)
                self.produced += 1
                producer.poll(0)
            left = producer.flush(60)
            if left:
                self.errors.append(f"{left} records still undelivered after 60 s")
        except BaseException as exc:            # reported by finish()
            self.errors.append(exc)

    def _on_delivery(self, err, msg) -> None:
        if err is not None:
            self.errors.append(err)
            return
        partition = msg.partition()
        self.delivered += 1
        self.ends[partition] = max(self.ends[partition], msg.offset() + 1)
        event = self._decode(msg.value())
        if isinstance(event, Event):
            before = self.partition_of.setdefault(event.customer_id, partition)
            if before != partition:
                self.errors.append(f"{event.customer_id} went to partitions {before} and {partition}")

    def rush(self) -> None:
        self._rush.set()

    def finish(self, partitions: int, timeout: float = 60) -> dict[int, int]:
        """Everything produced and delivered: the end offset of each input partition."""
        self.rush()
        self.join(timeout)
        assert not self.is_alive(), f"the input producer did not finish within {timeout}s"
        assert not self.errors, f"producing input failed: {self.errors[:3]}"
        assert self.delivered == len(self.lines)
        return {p: self.ends.get(p, 0) for p in range(partitions)}


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int] | None:
    """The group's committed offset per partition (0 where none), or None when the broker did not
    answer in time. Asked by a consumer that never subscribes, so it does not join the group."""
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        offsets = reader.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=5)
    except KafkaException:
        return None
    finally:
        reader.close()
    return {tp.partition: max(tp.offset, 0) for tp in offsets}


# A segment the idle-clock check needs: entered on a view, left by time alone 3 s later.
RECENTLY_VIEWED = "segments:\n  recently-viewed:\n    when:\n      last_viewed_at: {within: 3s}\n"


def check_idle_clock(bootstrap: str, input_topic: str, changes_topic: str, partitions: int, within: float,
                     describe: Callable[[], str], transactional: bool = False) -> float:
    """For a ready, idle worker running RECENTLY_VIEWED: a customer who views something now must
    leave the segment with no further input, caused by time, at exactly occurred_at + 3 s, and
    not before the wall clock got there. `describe` says what the worker logged, on failure.
    Returns the seconds from the view to seeing the exit."""
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": "idle-reader", "enable.auto.commit": False,
                       "isolation.level": "read_committed", "auto.offset.reset": "earliest", "fetch.wait.max.ms": 20})
    try:
        reader.assign([TopicPartition(changes_topic, p, 0) for p in range(partitions)])
        time.sleep(1.0)                          # the idle partitions' clocks now follow the wall clock
        occurred = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=time.time_ns() // 1000)
        event = {"type": "product_viewed", "event_id": "v-idle", "customer_id": "c-idle",
                 "occurred_at": occurred.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "product_id": "p1", "category": "books"}
        produce(bootstrap, input_topic, [msgspec.json.encode(event)], transactional=transactional)
        changes, exited, deadline = [], None, time.monotonic() + within
        while exited is None and time.monotonic() < deadline:
            for msg in reader.consume(100, 0.1):
                if msg.error() is None:
                    changes.append(msgspec.json.decode(msg.value()))
                    if changes[-1]["change"] == "exited":
                        exited = time.time()
        assert exited is not None, f"no exit within {within} s of the view; changes: {changes}\n{describe()}"
    finally:
        reader.close()

    def instant(text: str) -> dt.datetime:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))

    assert [(c["customer_id"], c["segment"], c["change"], c["cause"], c["event_id"]) for c in changes] == [
        ("c-idle", "recently-viewed", "entered", "event", "v-idle"),
        ("c-idle", "recently-viewed", "exited", "time", None)]
    assert instant(changes[0]["at"]) == occurred
    assert instant(changes[1]["at"]) == occurred + dt.timedelta(seconds=3)
    # never ahead of the wall clock: the move is published only once its instant has passed
    assert exited >= (occurred + dt.timedelta(seconds=3)).timestamp()
    return exited - occurred.timestamp()
