"""The native Kafka worker against a real broker: parity with replay, dead letters, membership."""
from __future__ import annotations

import msgspec

from stream.rules.catalog import load_catalog
from stream.tools.synth import shopper_events
from stream.worker.loop import Worker

from . import conformance
from .workers import PARTITIONS, Running, settings

BAD = [b"not json", b'{"type":"order_paid","event_id":"x","customer_id":"c1"}',
       b'{"type":"gift_card_bought","event_id":"g","customer_id":"c1","occurred_at":"2025-01-02T00:00:00Z"}',
       b'{"type":"product_viewed","event_id":"big","customer_id":"c1","occurred_at":"2025-01-02T00:00:00Z",'
       b'"product_id":"p","category":"' + b"x" * (1 << 20) + b'"}']


def test_worker_gives_the_same_transitions_as_replay(kafka_bootstrap, unique_topic, tmp_path):
    lines = list(shopper_events(300, 5000, seed=3))
    lines[100:100] = BAD
    s = settings(kafka_bootstrap, unique_topic, tmp_path)
    worker = Worker(s, load_catalog())
    from stream.kafka.topic_admin import ensure_topics
    ensure_topics(kafka_bootstrap, worker.topics())
    partition_of: dict[str, int] = {}
    cuts = conformance.produce(kafka_bootstrap, s.input_topics[0], lines, partition_of)
    with Running(worker) as running:
        running.wait_for(len(lines) - len(BAD))
    observed = conformance.read_all(kafka_bootstrap, s.changes_topic, PARTITIONS)
    reference = conformance.replay(lines)
    assert len(reference) > 500
    # the whole input's replay, up to the clock of each customer's partition ...
    conformance.assert_conforms(reference, observed, cuts)
    # ... and, all of it, the replay of each partition's own input
    per_partition = conformance.replay_by_partition(lines, partition_of)
    conformance.assert_conforms(per_partition, observed, dict.fromkeys(partition_of, "9999"))
    assert len(observed) == len(per_partition)
    assert len({c["change_id"] for c in observed}) == len(observed), "a change was published twice"


def test_dead_letters_keep_bytes_and_say_where_they_came_from(kafka_bootstrap, unique_topic, tmp_path):
    s = settings(kafka_bootstrap, unique_topic, tmp_path)
    worker = Worker(s, load_catalog())
    from stream.kafka.topic_admin import ensure_topics
    ensure_topics(kafka_bootstrap, worker.topics())
    good = next(iter(shopper_events(1, 1, seed=1)))
    conformance.produce(kafka_bootstrap, s.input_topics[0], BAD + [good])
    with Running(worker) as running:
        running.wait_for(1)
    letters = conformance.read_messages(kafka_bootstrap, s.dead_letter_topic, PARTITIONS)
    assert sorted(m.value() for m in letters) == sorted(BAD)
    for msg in letters:
        headers = dict(msg.headers())
        assert headers["source.topic"] == s.input_topics[0].encode()
        assert int(headers["source.offset"]) >= 0 and int(headers["source.partition"]) in range(PARTITIONS)
        assert headers["reason"]
    reasons = {m.value()[:20]: dict(m.headers())["reason"].decode() for m in letters}
    assert reasons[b"not json"].startswith("not JSON")
    assert any("over the 1048576-byte limit" in r for r in reasons.values())


def test_membership_topic_holds_current_segments(kafka_bootstrap, unique_topic, tmp_path):
    s = settings(kafka_bootstrap, unique_topic, tmp_path)
    worker = Worker(s, load_catalog())
    from stream.kafka.topic_admin import ensure_topics
    ensure_topics(kafka_bootstrap, worker.topics())
    def ev(kind, n, at, **fields):
        return msgspec.json.encode({"type": kind, "event_id": f"e{n}", "customer_id": "c-m",
                                    "occurred_at": at, **fields})
    lines = [ev("order_paid", 1, "2025-01-01T00:00:00Z", order_id="o1", amount=150000),
             ev("order_paid", 2, "2025-01-05T00:00:00Z", order_id="o2", amount=10),
             ev("customer_erased", 3, "2025-01-06T00:00:00Z")]
    conformance.produce(kafka_bootstrap, s.input_topics[0], lines[:2])
    with Running(worker) as running:
        running.wait_for(2)
        records = _membership(kafka_bootstrap, s.membership_topic)
        assert records[-1] is not None
        assert set(records[-1]["segments"]) == {"high-value", "repeat-buyer"}
        assert records[-1]["segments"]["high-value"] == "2025-01-01T00:00:00Z"
        conformance.produce(kafka_bootstrap, s.input_topics[0], lines[2:])
        running.wait_for(3)
    assert _membership(kafka_bootstrap, s.membership_topic)[-1] is None, "erasure must leave a tombstone"


def _membership(bootstrap: str, topic: str) -> list[dict | None]:
    messages = conformance.read_messages(bootstrap, topic, PARTITIONS)
    assert all(msg.key() == b"c-m" for msg in messages)
    return [None if msg.value() is None else msgspec.json.decode(msg.value()) for msg in messages]


def test_at_least_once_gives_the_same_transitions(kafka_bootstrap, unique_topic, tmp_path):
    """Without transactions the output is the same when nothing crashes (after a crash changes may
    repeat, each with its change_id: the reliability tests cover crashes under exactly_once)."""
    from stream.kafka.topic_admin import ensure_topics
    lines = list(shopper_events(200, 3000, seed=8))
    s = settings(kafka_bootstrap, unique_topic, tmp_path, guarantee="at_least_once")
    worker = Worker(s, load_catalog())
    ensure_topics(kafka_bootstrap, worker.topics())
    partition_of: dict[str, int] = {}
    conformance.produce(kafka_bootstrap, s.input_topics[0], lines, partition_of)
    with Running(worker) as running:
        running.wait_for(len(lines))
    observed = conformance.read_all(kafka_bootstrap, s.changes_topic, PARTITIONS)
    reference = conformance.replay_by_partition(lines, partition_of)
    conformance.assert_conforms(reference, observed, dict.fromkeys(partition_of, "9999"))
    assert len(observed) == len(reference)

    # A restart finds each store at its changelog's end: nothing to restore, nothing rebuilt. (On
    # Tansu the reported high watermark can stop short of the last record batch's end, which this
    # guarantee's multi-record changelog batches hit; read, the end is right.)
    again = Worker(s, load_catalog())
    for number in range(PARTITIONS):
        task = again.open_partition(number)
        assert task.store.checkpoint() > 0
        assert again._restore(task.store, number) == 0
        task.store.close()
