"""Erasure reaches everything it should, in a bounded time: the topic configs that bound how long
an erased customer's records stay on Kafka (README, "Erasure"), and the local RocksDB store."""
from __future__ import annotations

import dataclasses

from hypothesis import given, settings, strategies as st

from stream import faust_app
from stream.backfill import _topic_spec
from stream.config import WorkerConfig
from stream.runtime import INPUT_RETENTION_MS, TOMBSTONE_RETENTION_MS, worker_topics

_MS = st.integers(min_value=60_000, max_value=365 * 24 * 3600 * 1000)
_CONFIGS = st.builds(lambda lag, changes, dead, routed: WorkerConfig(
    erasure_max_lag_ms=lag, changes_retention_ms=changes, dead_letter_retention_ms=dead,
    routed_topics=("orders",) if routed else ()), _MS, _MS, _MS, st.booleans())


def personal_topics(config: WorkerConfig) -> dict[str, dict]:
    """Every topic either runtime creates that can hold a customer's id or data, with its configs:
    all of them but the definitions and ticks topics."""
    specs = [*worker_topics(config), *faust_app.topics(config)]
    skip = {config.definitions_topic, faust_app.ticks_topic(config)}
    return {name: configs for name, _, configs in specs if name not in skip}


def expected(config: WorkerConfig, name: str) -> dict:
    lag = config.erasure_max_lag_ms
    compacted = {"cleanup.policy": "compact", "segment.ms": lag, "max.compaction.lag.ms": lag,
                 "delete.retention.ms": TOMBSTONE_RETENTION_MS}
    retention = {config.changes_topic: config.changes_retention_ms,
                 config.dead_letter_topic: config.dead_letter_retention_ms}.get(name, INPUT_RETENTION_MS)
    if name in (config.membership_topic, config.changelog_topic, faust_app.changelog_topic(config)):
        return compacted
    return {"cleanup.policy": "delete", "retention.ms": retention, "segment.ms": lag}


@settings(max_examples=50, deadline=None)
@given(_CONFIGS)
def test_every_topic_with_personal_data_has_a_bounded_lifetime(config):
    topics = personal_topics(config)
    assert set(topics) == {*config.keyed_topics, config.changes_topic, config.dead_letter_topic,
                           config.membership_topic, config.changelog_topic, faust_app.changelog_topic(config)}
    for name, configs in topics.items():
        wanted = expected(config, name)
        assert {k: configs.get(k) for k in wanted} == wanted, name
        # nothing else that could lengthen it (max.message.bytes and the like are fine)
        assert not {"retention.bytes", "min.compaction.lag.ms"} & configs.keys(), name


@settings(max_examples=20, deadline=None)
@given(_CONFIGS, st.integers(min_value=1, max_value=64))
def test_the_backfill_hand_off_creates_the_changelog_as_the_workers_do(config, partitions):
    target = dataclasses.replace(config, group_id="segments-v2")
    name, count, configs = _topic_spec(target, target.changelog_topic, partitions)
    assert (name, count) == (target.changelog_topic, partitions)
    assert configs == expected(target, name)
