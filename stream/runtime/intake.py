"""What both worker runtimes (the native one, stream/worker/loop.py, and Faust's, stream/faust_runtime/app.py)
do the same way: what an input message becomes (Intake), the topics they create, the records they
publish besides the changes, how an applied event is counted, and the idle clock. One place, so the
runtimes cannot drift apart.
"""
from __future__ import annotations

import time
from typing import Iterable

import msgspec

from stream.model.changes import SegmentChange
from stream.runtime.settings import WorkerConfig
from stream.engine.core import Engine
from stream.model.events import EVENT_TYPES, DeadLetter, Decoder, Event
from stream.definitions.live import TOPIC_CONFIG as DEFINITIONS_CONFIG
from stream.model.state import CustomerState
from stream.model.time import SECOND, format_rfc3339, from_datetime

# Dead letters carry input messages back out whole, oversized ones included, up to this much: the
# dead-letter topic's max.message.bytes, which the broker checks against the whole record batch
# (value, key, headers and framing), so the value kept leaves DEAD_LETTER_ROOM for the rest; the
# key (anything a producer sent) and the reason are cut to fit in it. A record over the topic's
# limit would fail its batch on every retry: the partition would stop.
DEAD_LETTER_BYTES = 16 << 20
DEAD_LETTER_ROOM = 64 << 10
DEAD_LETTER_KEY_BYTES = 16 << 10
_REASON_CHARS = 4096                     # at most 16 KiB of UTF-8
# The state changelogs' max.message.bytes, set on the topic so a broker default (Kafka's 1 MiB)
# cannot decide it. The broker checks it per record batch: every producer writing a changelog
# batches at most PRODUCER_BATCH_BYTES (librdkafka batch.size, aiokafka max_batch_size), and a
# record is one customer's state, at most MAX_STATE_BYTES (stream.model.state), so the largest batch
# (a full one, or one record that did not fit a batch) is within it with room to spare.
PRODUCER_BATCH_BYTES = 1 << 20
CHANGELOG_MESSAGE_BYTES = 2 << 20
# Every producer's own message.max.bytes: the dead letters, the largest records any of them sends.
PRODUCER_MESSAGE_BYTES = DEAD_LETTER_BYTES + 65536
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


def input_configs(config: WorkerConfig) -> dict[str, str | int]:
    """A keyed input topic's configs, whoever creates it first (a worker, `segments produce`): its
    events are personal data, gone within INPUT_RETENTION_MS + erasure_max_lag_ms."""
    return kept(config, INPUT_RETENTION_MS)


class Intake:
    """What one input message becomes, decided alike by both runtimes (and callable without a
    broker): an event to apply (or, from a routed topic, to re-key), or a dead letter with its
    reason. Never raises."""

    def __init__(self, config: WorkerConfig):
        self._decode = Decoder(config.max_message_bytes).decode
        self._keyed = frozenset(config.keyed_topics)
        self._skew = None if config.max_future_skew_ms is None else config.max_future_skew_ms * 1000

    def admit(self, topic: str, key: bytes | None, value: bytes | None, wall: int) -> Event | DeadLetter:
        """`wall`: the wall clock in microseconds (taken once per batch)."""
        raw = value or b""
        event = self._decode(raw)
        if type(event) is DeadLetter:
            return event
        if topic in self._keyed:
            letter = wrong_key(event, key, raw)
            if letter is not None:
                return letter
        return event if self._skew is None else too_far_ahead(event, raw, wall, self._skew)


def wrong_key(event: Event, key: bytes | None, raw: bytes) -> DeadLetter | None:
    """On a keyed topic the key picked the partition, and so the engine and state: a key that is
    not the customer id would give the customer a second state on another partition. (Routed
    topics are keyed otherwise and re-keyed by customer id; the repartition topic is keyed so.)"""
    customer_id = event.customer_id
    if key is not None and key == customer_id.encode():
        return None
    said = "no key" if key is None else f"key {_shown(key.decode('utf-8', 'replace'))}"
    return DeadLetter(f"{said} on a topic keyed by customer id, but customer_id {_shown(customer_id)}: "
                      f"the key must be the customer id", raw)


def too_far_ahead(event: Event, raw: bytes, reference: int, skew: int) -> Event | DeadLetter:
    """The event, or a dead letter if it occurred more than `skew` (microseconds) after
    `reference`: an event from a wrong clock would move stream time past every timer for good."""
    t = from_datetime(event.occurred_at)
    if t - reference <= skew:
        return event
    return DeadLetter(f"occurred_at {format_rfc3339(t)} is more than {skew // 1000} ms (max_future_skew_ms) "
                      f"ahead of the clock, {format_rfc3339(reference)}", raw)


def _shown(text: str) -> str:
    """A key or id in a reason: quoted, and cut short (either may be anything a producer sent)."""
    return repr(text if len(text) <= 64 else text[:64] + "...")


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
    """The native worker's topics: the outputs, its state changelog, and the definitions topic
    (one partition: a handful of definitions, read whole by every worker)."""
    definitions = [(config.definitions_topic, 1, DEFINITIONS_CONFIG)] if config.definitions_topic is not None else []
    return [*output_topics(config), (config.changelog_topic, config.partitions, changelog_configs(config)), *definitions]


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


def dead_letter(letter: DeadLetter, key: bytes | None, topic: str, partition: int,
                offset: int) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    """The dead-letter record's key and value (the original bytes) and headers (why, and where
    from); all of it within the topic's DEAD_LETTER_BYTES."""
    headers = [("reason", letter.reason[:_REASON_CHARS].encode()), ("source.topic", topic.encode()),
               ("source.partition", str(partition).encode()), ("source.offset", str(offset).encode())]
    if key is not None and len(key) > DEAD_LETTER_KEY_BYTES:
        headers.append(("truncated.key.from.bytes", str(len(key)).encode()))
        key = key[:DEAD_LETTER_KEY_BYTES]
    value, size = letter.raw, letter.size if letter.size is not None else len(letter.raw)
    if size > DEAD_LETTER_BYTES - DEAD_LETTER_ROOM or letter.size is not None:
        # Beyond what the topic takes (or held only in part): keep the head, say how large the whole was.
        headers.append(("truncated.from.bytes", str(size).encode()))
        value = value[:DEAD_LETTER_BYTES - DEAD_LETTER_ROOM]
    return key, value, headers


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


Source = tuple[str, int]          # (topic, partition): a topic-partition an engine reads


class CatchUp:
    """Whether everything a set of sources holds has been read and applied, and since when.

    A source is behind from its assignment (or a seek back to committed offsets) and after every
    message read from it, until the runtime has seen its end with everything fetched from it
    drained: the native worker on the consumer's PARTITION_EOF (delivered after the partition's
    messages, at the real end even where Tansu reports a short high watermark; at the last stable
    offset for read_committed), Faust when the applied position reached aiokafka's high watermark.
    `since` (monotonic seconds) is when the last behind source caught up, with no input after it;
    None while any source is behind. The idle clock counts from it: never from when a partition was
    opened or assigned, so a backlog read after a long restore or a rebalance keeps its own times."""

    def __init__(self, sources: Iterable[Source] = ()) -> None:
        self.sources: set[Source] = set()
        self.behind: set[Source] = set()
        self.since: float | None = 0.0     # no source yet: nothing unread (no routed topic, say)
        for source in sources:
            self.assigned(source)

    def assigned(self, source: Source) -> None:
        """Reading starts from a committed offset: unread input may follow."""
        self.sources.add(source)
        self.read(source)

    def read(self, source: Source) -> None:
        self.behind.add(source)
        self.since = None

    def reached_end(self, source: Source, now: float) -> None:
        self.behind.discard(source)
        if not self.behind and self.since is None:
            self.since = now

    def revoked(self, source: Source, now: float) -> None:
        """No longer read here: what it holds is its new owner's."""
        self.sources.discard(source)
        self.reached_end(source, now)

    def rewind(self) -> None:
        """Every source read again from its committed offset (a failed batch)."""
        if self.sources:                  # none (no routed topic, say): nothing to read again
            self.behind = set(self.sources)
            self.since = None


def idle(catch_ups: Iterable[CatchUp], idle_ms: int, now: float) -> bool:
    """All of an engine's sources caught up (see CatchUp), with no input for `idle_ms` since the
    last of them did. `now` is monotonic seconds."""
    since = 0.0
    for catch_up in catch_ups:
        if catch_up.since is None:
            return False
        since = max(since, catch_up.since)
    return (now - since) * 1000 >= idle_ms


def advance_idle(engine: Engine, idle_ms: int, catch_ups: Iterable[CatchUp], now: float,
                 out: list[SegmentChange]) -> None:
    """An idle partition's clock follows the wall clock, so "60 days without an order" fires on
    the day with no event arriving. Idle means caught up (every source the engine reads, see
    CatchUp) with no input for `idle_ms`: a partition with unread input is never idle, however
    long it waited. The clock lags the wall clock by the idle threshold: events still in flight
    from producers are not made late by it. `now` is monotonic seconds."""
    if not idle(catch_ups, idle_ms, now):
        return
    wall = int(time.time() * SECOND) - idle_ms * 1000
    if wall > engine.now:
        engine.advance(wall, out)
