"""What both worker runtimes (the native one, stream/worker.py, and Faust's, stream/faust_app.py)
do the same way: the topics they create, the records they publish besides the changes, how an
applied event is counted, and the idle clock. One place, so the runtimes cannot drift apart.
"""
from __future__ import annotations

import time

import msgspec

from .changes import SegmentChange
from .config import WorkerConfig
from .engine import Engine
from .events import EVENT_TYPES, DeadLetter, Event
from .live_definitions import TOPIC_CONFIG as DEFINITIONS_CONFIG
from .state import CustomerState
from .timeutil import SECOND, format_rfc3339

# Dead letters carry input messages back out whole, oversized ones included, up to this much.
DEAD_LETTER_BYTES = 16 << 20
TYPE_OF = {cls: tag for tag, cls in EVENT_TYPES.items()}

Spec = tuple[str, int, dict[str, str | int]]      # (topic, partitions, configs)
COMPACT = {"cleanup.policy": "compact"}
_DAY_MS = 24 * 3600 * 1000
INPUT_RETENTION_MS = 7 * _DAY_MS          # input topics the worker creates (the producers' otherwise)
# How long a tombstone outlives the compaction that removed what it deletes: a reader away for less
# (a partition store restoring from its checkpoint, a consumer of the membership topic) still sees
# every erasure.
TOMBSTONE_RETENTION_MS = 7 * _DAY_MS
_CLOCK_SKEW_MS = 3600 * 1000
_encode_json = msgspec.json.Encoder().encode


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


def output_topics(config: WorkerConfig) -> list[Spec]:
    """The keyed input topics and the outputs, with the worker's partition count and explicit
    configs (routed input topics are the producers')."""
    n = config.partitions
    dead = {**kept(config, config.dead_letter_retention_ms), "max.message.bytes": DEAD_LETTER_BYTES}
    return [*[(t, n, kept(config, INPUT_RETENTION_MS)) for t in config.keyed_topics],
            (config.changes_topic, n, kept(config, config.changes_retention_ms)), (config.dead_letter_topic, n, dead),
            (config.membership_topic, n, compacted(config))]


def worker_topics(config: WorkerConfig) -> list[Spec]:
    """The native worker's topics: the outputs, its state changelog, and the definitions topic
    (one partition: a handful of definitions, read whole by every worker)."""
    definitions = [(config.definitions_topic, 1, DEFINITIONS_CONFIG)] if config.definitions_topic is not None else []
    return [*output_topics(config), (config.changelog_topic, config.partitions, compacted(config)), *definitions]


def outlived_tombstones(idle_ms: int | None) -> bool:
    """Whether a local store that has not seen its changelog for `idle_ms` (None: unknown) may have
    missed tombstones the changelog no longer holds: a customer erased meanwhile would stay in it,
    and come back. Tombstones live at least TOMBSTONE_RETENTION_MS after they are written; an hour's
    margin covers the clocks' skew. Both runtimes rebuild such a store from the changelog."""
    return idle_ms is not None and idle_ms >= TOMBSTONE_RETENTION_MS - _CLOCK_SKEW_MS


def dead_letter(letter: DeadLetter, topic: str, partition: int, offset: int) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The dead-letter record's value (the original bytes) and headers (why, and where from)."""
    headers = [("reason", letter.reason.encode()), ("source.topic", topic.encode()),
               ("source.partition", str(partition).encode()), ("source.offset", str(offset).encode())]
    value = letter.raw
    if len(value) > DEAD_LETTER_BYTES:
        # Beyond what the topic takes: keep the head and say how large the whole was.
        headers.append(("truncated.from.bytes", str(len(value)).encode()))
        value = value[:DEAD_LETTER_BYTES]
    return value, headers


def membership(customer_id: str, state: CustomerState | None, at: str) -> bytes | None:
    """The customer's membership record: current segments with member-since instants, as of `at`
    (the partition's stream time, formatted once per batch); None (a tombstone) once erased, so
    the compacted topic forgets the customer too."""
    if state is None:
        return None
    return _encode_json({"customer_id": customer_id, "at": at,
                         "segments": {name: format_rfc3339(since) for name, since in sorted(state.member.items())}})


def apply_counted(engine: Engine, event: Event, out: list[SegmentChange]) -> str:
    """Apply the event; its outcome label for segments_events_total."""
    stats = engine.stats
    duplicates, late = stats.duplicates, stats.late
    engine.apply(event, out)
    return "duplicate" if stats.duplicates != duplicates else "late" if stats.late != late else "applied"


def advance_idle(engine: Engine, idle_ms: int, last_input: float, now: float, out: list[SegmentChange]) -> None:
    """An idle partition's clock follows the wall clock, so "60 days without an order" fires on
    the day with no event arriving. It lags the wall clock by the idle threshold: events still in
    flight from producers are not made late by it. `last_input` and `now` are monotonic seconds."""
    wall = int(time.time() * SECOND) - idle_ms * 1000
    if (now - last_input) * 1000 >= idle_ms and wall > engine.now:
        engine.advance(wall, out)
