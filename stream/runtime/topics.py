"""The topics the runtimes create, with their configs: the outputs, the state changelogs and the
definitions topic, each with its partition count and explicit configs (a broker's defaults must not
decide a record size limit or how long personal data stays)."""
from __future__ import annotations

from collections.abc import Mapping

from stream.model.time import DAY_MS
from stream.runtime.settings import WorkerConfig

# Dead letters carry input messages back out whole, oversized ones included, up to this much: the
# dead-letter topic's max.message.bytes, which the broker checks against the whole record batch
# (value, key, headers and framing), so the value kept leaves DEAD_LETTER_ROOM for the rest; the
# key (anything a producer sent) and the reason are cut to fit in it. A record over the topic's
# limit would fail its batch on every retry: the partition would stop.
DEAD_LETTER_BYTES = 16 << 20
DEAD_LETTER_ROOM = 64 << 10
# The state changelogs' max.message.bytes, set on the topic so a broker default (Kafka's 1 MiB)
# cannot decide it. The broker checks it per record batch: every producer writing a changelog
# batches at most PRODUCER_BATCH_BYTES (librdkafka batch.size, aiokafka max_batch_size), and a
# record is one customer's state, at most MAX_STATE_BYTES (stream.model.state), so the largest batch
# (a full one, or one record that did not fit a batch) is within it with room to spare.
PRODUCER_BATCH_BYTES = 1 << 20
CHANGELOG_MESSAGE_BYTES = 2 << 20
# Every producer's own message.max.bytes: the dead letters, the largest records any of them sends.
PRODUCER_MESSAGE_BYTES = DEAD_LETTER_BYTES + 65536

Spec = tuple[str, int, Mapping[str, str | int]]      # (topic, partitions, configs)
COMPACT: dict[str, str | int] = {"cleanup.policy": "compact"}
INPUT_RETENTION_MS = 7 * DAY_MS          # input topics the worker creates (the producers' otherwise)
# How long a tombstone outlives the compaction that removed what it deletes: a reader away for less
# (a partition store restoring from its checkpoint, a consumer of the membership topic) still sees
# every erasure.
TOMBSTONE_RETENTION_MS = 7 * DAY_MS
_CLOCK_SKEW_MS = 3600 * 1000
DEFINITIONS_CONFIG = COMPACT             # the definitions topic: the latest record per name counts


def erasure_bound(config: WorkerConfig) -> dict[str, int]:
    """What bounds an erased customer's stay in a topic: a segment rolls within erasure_max_lag_ms
    (only closed segments are compacted or deleted) and a compacted log is cleaned at the latest
    erasure_max_lag_ms after its oldest uncleaned record (Kafka's max.compaction.lag.ms, which
    overrides min.cleanable.dirty.ratio)."""
    lag = config.erasure_max_lag_ms
    return {"segment.ms": lag, "max.compaction.lag.ms": lag}


def compacted(config: WorkerConfig) -> dict[str, str | int]:
    """A compacted topic holding personal data (changelog, membership): an erased customer's
    records are gone within erasure_max_lag_ms, their tombstones TOMBSTONE_RETENTION_MS later."""
    return {**COMPACT, **erasure_bound(config), "delete.retention.ms": TOMBSTONE_RETENTION_MS}


def kept(config: WorkerConfig, retention_ms: int) -> dict[str, str | int]:
    """A topic of records deleted by age: each is gone within retention_ms + erasure_max_lag_ms
    (its segment rolls within the lag, and is deleted once its newest record is retention_ms old)."""
    return {"cleanup.policy": "delete", "retention.ms": retention_ms, "segment.ms": config.erasure_max_lag_ms}


def input_configs(config: WorkerConfig) -> dict[str, str | int]:
    """A keyed input topic's configs, whoever creates it first (a worker, `segments produce`): its
    events are personal data, gone within INPUT_RETENTION_MS + erasure_max_lag_ms."""
    return kept(config, INPUT_RETENTION_MS)


def output_topics(config: WorkerConfig) -> list[Spec]:
    """The keyed input topics and the outputs, with the worker's partition count and explicit
    configs (routed input topics are the producers')."""
    n = config.partitions
    dead = {**kept(config, config.dead_letter_retention_ms), "max.message.bytes": DEAD_LETTER_BYTES}
    keyed = [(t, n, input_configs(config)) for t in config.input_topics]
    if config.routed_topics:
        keyed.append((config.repartition_topic, n, {**input_configs(config),
                                                    "max.message.bytes": repartition_message_bytes(config)}))
    return [*keyed,
            (config.changes_topic, n, kept(config, config.changes_retention_ms)), (config.dead_letter_topic, n, dead),
            (config.membership_topic, n, compacted(config))]


def repartition_message_bytes(config: WorkerConfig) -> int:
    """The repartition topic's max.message.bytes: a routed event goes there whole (up to
    max_message_bytes), re-keyed by a customer id that may be longer than its key, so a broker
    default (Kafka's 1 MiB) would refuse some, and the batch holding one would fail on every retry.
    A producer batch is at most PRODUCER_BATCH_BYTES, or one larger record alone."""
    return max(PRODUCER_BATCH_BYTES, config.max_message_bytes) + DEAD_LETTER_ROOM


def worker_topics(config: WorkerConfig) -> list[Spec]:
    """The native worker's topics: the outputs, its state changelog, and the definitions topic."""
    return [*output_topics(config), (config.changelog_topic, config.partitions, changelog_configs(config)),
            *definitions_topics(config)]


def definitions_topics(config: WorkerConfig) -> list[Spec]:
    """The definitions topic, if any (one partition: a handful of definitions, read whole by every
    worker)."""
    return [(config.definitions_topic, 1, DEFINITIONS_CONFIG)] if config.definitions_topic is not None else []


def changelog_configs(config: WorkerConfig) -> dict[str, str | int]:
    """A state changelog's configs (both runtimes'): compacted with the erasure bound, and records
    up to CHANGELOG_MESSAGE_BYTES, whatever the broker's default."""
    return {**compacted(config), "max.message.bytes": CHANGELOG_MESSAGE_BYTES}


def outlived_tombstones(idle_ms: int | None) -> bool:
    """Whether a local store that has not seen its changelog for `idle_ms` (None: unknown) may have
    missed tombstones the changelog no longer holds: a customer erased meanwhile would stay in it,
    and come back. Tombstones live at least TOMBSTONE_RETENTION_MS after they are written; an hour's
    margin covers the clocks' skew. Both runtimes rebuild such a store from the changelog."""
    return idle_ms is not None and idle_ms >= TOMBSTONE_RETENTION_MS - _CLOCK_SKEW_MS

