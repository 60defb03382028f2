"""Hostile input against both runtimes on the real broker: a message nested 100k deep, one naming
`type` twice, one keyed by another customer, one from the year 8999. Each becomes a dead letter
with its reason, and the good events after them are applied (before, the first killed the worker
on the same offset after every restart, the second was read as an erasure, the third gave its
customer a second state, the fourth fired every timer of its partition)."""
from __future__ import annotations


import msgspec
from confluent_kafka import Producer

from stream.faust_runtime import topics as faust_runtime
from stream.kafka.topic_admin import ensure_topics
from stream.rules.catalog import load_catalog
from stream.worker.loop import Worker

from . import conformance
from .workers import PARTITIONS, Running, names, settings

CUSTOMER = "c-hostile"


def _event(kind: str, n: int, at: str, **fields) -> bytes:
    return msgspec.json.encode({"type": kind, "event_id": f"e{n}", "customer_id": CUSTOMER, "occurred_at": at,
                                **fields})


HOSTILE = [   # (key, value, what its dead letter's reason must say)
    (CUSTOMER.encode(), b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "nested deeper than 64"),
    (CUSTOMER.encode(), _event("order_paid", 1, "2025-01-01T00:00:00Z", order_id="o0", amount=1)[:-1]
     + b',"type":"customer_erased"}', "duplicate key `type`"),
    (b"c-someone-else", _event("order_paid", 2, "2025-01-01T00:00:00Z", order_id="o1", amount=5),
     "customer_id 'c-hostile'"),
    (CUSTOMER.encode(), _event("order_paid", 3, "8999-01-01T00:00:00Z", order_id="o2", amount=5),
     "max_future_skew_ms"),
]
GOOD = [_event("order_paid", 10, "2025-01-01T00:00:00Z", order_id="o10", amount=150000),
        _event("order_paid", 11, "2025-01-05T00:00:00Z", order_id="o11", amount=10)]


def _produce(bootstrap: str, topic: str) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random",
                         "message.max.bytes": 4 << 20})
    for key, value in [*((k, v) for k, v, _ in HOSTILE), *((CUSTOMER.encode(), v) for v in GOOD)]:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0


def _assert_dead_letters_and_changes(bootstrap: str, dead_topic: str, changes_topic: str) -> None:
    letters = conformance.read_messages(bootstrap, dead_topic, PARTITIONS)
    by_value = {m.value(): dict(m.headers())["reason"].decode() for m in letters}
    assert len(letters) == len(HOSTILE), [r for r in by_value.values()]
    for _, value, reason in HOSTILE:
        assert reason in by_value[value], (reason, by_value[value])
    # exactly the changes of the good events alone: nothing erased, no far-future clock, no second state
    observed = conformance.read_all(bootstrap, changes_topic, PARTITIONS)
    reference = conformance.replay(GOOD)
    assert {"high-value", "repeat-buyer"} <= {c["segment"] for c in reference if c["change"] == "entered"}
    conformance.assert_conforms(reference, observed, {CUSTOMER: "9999"}, allow_identical_duplicates=True)
    assert {c["customer_id"] for c in observed} == {CUSTOMER}


def test_native_worker_dead_letters_hostile_input_and_keeps_applying(kafka_bootstrap, unique_topic, tmp_path):
    s = settings(kafka_bootstrap, unique_topic, tmp_path)
    worker = Worker(s, load_catalog())
    ensure_topics(kafka_bootstrap, worker.topics())
    _produce(kafka_bootstrap, s.input_topics[0])
    with Running(worker) as running:
        running.wait_for(len(GOOD))
        assert running.thread.is_alive()
    _assert_dead_letters_and_changes(kafka_bootstrap, s.dead_letter_topic, s.changes_topic)


def test_faust_runtime_dead_letters_hostile_input_and_keeps_applying(kafka_bootstrap, unique_topic, start):
    s = names(unique_topic)
    ensure_topics(kafka_bootstrap, faust_runtime.topics(s))
    _produce(kafka_bootstrap, s.input_topics[0])
    worker = start(s, "--idle-advance-ms", "0")
    worker.wait_committed({s.input_topics[0]: len(HOSTILE) + len(GOOD)}, timeout=90)
    worker.terminate()
    _assert_dead_letters_and_changes(kafka_bootstrap, s.dead_letter_topic, s.changes_topic)
