"""What erasure asks of each topic either runtime creates: which topics can hold a customer's data,
and the configs that bound how long an erased customer's records stay there (README, "Erasure").
For the check of the topic specs and the check of the topics a broker really created."""
from __future__ import annotations

from stream.faust_runtime import topics as faust_runtime
from stream.runtime.topics import INPUT_RETENTION_MS, TOMBSTONE_RETENTION_MS, worker_topics
from stream.runtime.settings import WorkerConfig


def personal_topics(config: WorkerConfig) -> dict[str, dict]:
    """Every topic either runtime creates that can hold a customer's id or data, with its configs:
    all of them but the definitions and ticks topics."""
    specs = [*worker_topics(config), *faust_runtime.topics(config)]
    skip = {config.definitions_topic, faust_runtime.ticks_topic(config)}
    return {name: configs for name, _, configs in specs if name not in skip}


def expected(config: WorkerConfig, name: str) -> dict:
    lag = config.erasure_max_lag_ms
    compacted = {"cleanup.policy": "compact", "segment.ms": lag, "max.compaction.lag.ms": lag,
                 "delete.retention.ms": TOMBSTONE_RETENTION_MS}
    retention = {config.changes_topic: config.changes_retention_ms,
                 config.dead_letter_topic: config.dead_letter_retention_ms}.get(name, INPUT_RETENTION_MS)
    if name in (config.membership_topic, config.changelog_topic, faust_runtime.changelog_topic(config)):
        return compacted
    return {"cleanup.policy": "delete", "retention.ms": retention, "segment.ms": lag}
