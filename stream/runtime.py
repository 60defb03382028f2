"""What both worker runtimes (the native one, stream/worker.py, and Faust's, stream/faust_app.py)
do the same way: what an input message becomes (Intake), the topics they create, the records they
publish besides the changes, how an applied event is counted, and the idle clock. One place, so the
runtimes cannot drift apart.
"""
from __future__ import annotations

import time

import msgspec

from .changes import SegmentChange
from .config import WorkerConfig
from .engine import Engine
from .events import EVENT_TYPES, DeadLetter, Decoder, Event
from .live_definitions import TOPIC_CONFIG as DEFINITIONS_CONFIG
from .state import CustomerState
from .timeutil import SECOND, format_rfc3339, from_datetime

# Dead letters carry input messages back out whole, oversized ones included, up to this much.
DEAD_LETTER_BYTES = 16 << 20
TYPE_OF = {cls: tag for tag, cls in EVENT_TYPES.items()}

Spec = tuple[str, int, dict[str, str | int]]      # (topic, partitions, configs)
COMPACT = {"cleanup.policy": "compact"}
_KEEP = {"cleanup.policy": "delete", "retention.ms": 7 * 24 * 3600 * 1000}
_encode_json = msgspec.json.Encoder().encode


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
    dead = {**_KEEP, "max.message.bytes": DEAD_LETTER_BYTES}
    return [*[(t, n, _KEEP) for t in config.keyed_topics],
            (config.changes_topic, n, _KEEP), (config.dead_letter_topic, n, dead),
            (config.membership_topic, n, COMPACT)]


def worker_topics(config: WorkerConfig) -> list[Spec]:
    """The native worker's topics: the outputs, its state changelog, and the definitions topic
    (one partition: a handful of definitions, read whole by every worker)."""
    definitions = [(config.definitions_topic, 1, DEFINITIONS_CONFIG)] if config.definitions_topic is not None else []
    return [*output_topics(config), (config.changelog_topic, config.partitions, COMPACT), *definitions]


def dead_letter(letter: DeadLetter, topic: str, partition: int, offset: int) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The dead-letter record's value (the original bytes) and headers (why, and where from)."""
    headers = [("reason", letter.reason.encode()), ("source.topic", topic.encode()),
               ("source.partition", str(partition).encode()), ("source.offset", str(offset).encode())]
    value, size = letter.raw, letter.size if letter.size is not None else len(letter.raw)
    if size > DEAD_LETTER_BYTES or letter.size is not None:
        # Beyond what the topic takes (or held only in part): keep the head, say how large the whole was.
        headers.append(("truncated.from.bytes", str(size).encode()))
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
