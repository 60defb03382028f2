"""A customer fed oversized and heavy attributes: the worker dead-letters what breaks the contract,
sheds what is valid but over the state bound, and keeps committing (its next good events are
applied), with every changelog record within the state bound (README "State bounds")."""
from __future__ import annotations

import json

from prometheus_client import REGISTRY

from stream.faust_runtime import topics as faust_runtime
from stream.kafka.topic_admin import ensure_topics
from stream.runtime.settings import WorkerConfig
from stream.model.events import MAX_CUSTOM_KEY_CHARS, MAX_CUSTOM_KEYS, MAX_CUSTOM_TEXT_CHARS
from stream.rules.catalog import load_catalog
from stream.model.state import MAX_STATE_BYTES, load_state
from stream.storage.keys import META
from stream.worker.loop import Worker

from . import conformance
from .workers import PARTITIONS, Running, names, settings

WIDE = "\U0001F600"


def _line(kind: str, event_id: str, at: str, **fields) -> bytes:
    return json.dumps({"type": kind, "event_id": event_id, "customer_id": "c1",
                       "occurred_at": f"2025-01-01T00:{at}Z", **fields}).encode()


def _inputs() -> tuple[list[bytes], bytes, list[bytes]]:
    """The finding's ten customer_updated events under 1 MiB each (~0.9 MB of custom values apiece),
    one valid one with every name and value at its bound in four-byte characters (~82 KB of custom
    state), and an order and its payment after them."""
    oversized = [_line("customer_updated", f"big-{n}", f"00:{n:02d}",
                       attributes={"custom": {f"n{n}-k{i}": "v" * 12_000 for i in range(75)}}) for n in range(10)]
    assert all(800_000 < len(raw) < 1 << 20 for raw in oversized)
    heavy = _line("customer_updated", "heavy", "00:30", attributes={"custom": {
        f"{i:02d}" + WIDE * (MAX_CUSTOM_KEY_CHARS - 2): WIDE * MAX_CUSTOM_TEXT_CHARS for i in range(MAX_CUSTOM_KEYS)}})
    good = [_line("order_placed", "o1", "01:00", order_id="ord-1", total=10, currency="KZT",
                  items=[{"product_id": "p", "quantity": 1, "price": 10}]),
            _line("order_paid", "o1-paid", "01:10", order_id="ord-1", amount=10)]
    return oversized, heavy, good


# Sent once the rest is committed, so the rest is not in the topics' last record batch: Tansu ends a
# partition at its last batch's base offset + 1 (docs/embedded-broker.md) and a reader could stop
# short of the records this test looks for.
LATER = [b"not json", _line("product_viewed", "v1", "02:00", product_id="p", category="c")]


def _assert_bounded_and_applied(bootstrap: str, s: WorkerConfig, changelog: str, oversized: list[bytes]) -> None:
    letters = [m for m in conformance.read_messages(bootstrap, s.dead_letter_topic, PARTITIONS)
               if m.value() not in LATER]
    assert sorted(m.value() for m in letters) == sorted(oversized)
    assert all("`$.attributes.custom" in dict(m.headers())["reason"].decode() for m in letters)
    changes = conformance.read_all(bootstrap, s.changes_topic, PARTITIONS)
    assert {c["event_id"] for c in changes} >= {"o1-paid"}, changes          # applied after the rest
    records = [m for m in conformance.read_messages(bootstrap, changelog, PARTITIONS)
               if m.key()[:1] != META and m.value() is not None]
    assert records and all(len(m.value()) <= MAX_STATE_BYTES for m in records)
    last = load_state(records[-1].value())
    assert last.paid_count == 1 and 0 < len(last.custom) < MAX_CUSTOM_KEYS


def test_oversized_custom_attributes_do_not_stop_the_partition(kafka_bootstrap, unique_topic, tmp_path):
    oversized, heavy, good = _inputs()
    s = settings(kafka_bootstrap, unique_topic, tmp_path)
    worker = Worker(s, load_catalog())
    ensure_topics(kafka_bootstrap, worker.topics())
    conformance.produce(kafka_bootstrap, s.input_topics[0], [*oversized, heavy, *good])
    shed = REGISTRY.get_sample_value("segments_state_truncated_total", {"reason": "custom"}) or 0.0
    with Running(worker) as running:
        running.wait_for(1 + len(good))
        conformance.produce(kafka_bootstrap, s.input_topics[0], LATER)
        running.wait_for(2 + len(good))
    assert REGISTRY.get_sample_value("segments_state_truncated_total", {"reason": "custom"}) > shed
    _assert_bounded_and_applied(kafka_bootstrap, s, s.changelog_topic, oversized)


def test_faust_runtime_bounds_its_table_the_same_way(kafka_bootstrap, unique_topic, start):
    oversized, heavy, good = _inputs()
    s = names(unique_topic)
    ensure_topics(kafka_bootstrap, faust_runtime.topics(s))
    lines = [*oversized, heavy, *good]
    conformance.produce(kafka_bootstrap, s.input_topics[0], lines)
    worker = start(s, "--idle-advance-ms", "0")
    worker.wait_committed({s.input_topics[0]: len(lines)})
    conformance.produce(kafka_bootstrap, s.input_topics[0], LATER)
    worker.wait_committed({s.input_topics[0]: len(lines) + len(LATER)})
    assert 'segments_state_truncated_total{reason="custom"}' in worker.get("/metrics")[1]
    worker.terminate()
    _assert_bounded_and_applied(kafka_bootstrap, s, faust_runtime.changelog_topic(s), oversized)
