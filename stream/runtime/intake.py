"""What one input message becomes, decided alike by both runtimes: an event to apply (or to re-key,
from a routed topic), or a dead letter with its reason, and the dead-letter record that carries it
back out."""
from __future__ import annotations

from stream.model.decoding import Decoder
from stream.model.events import DeadLetter, Event
from stream.model.time import LATEST, format_rfc3339, from_datetime, to_datetime
from stream.runtime.records import Headers
from stream.runtime.settings import WorkerConfig
from stream.runtime.topics import DEAD_LETTER_BYTES, DEAD_LETTER_ROOM

# Of a dead letter's DEAD_LETTER_ROOM, at most this much goes to the key and the reason.
DEAD_LETTER_KEY_BYTES = 16 << 10
_REASON_CHARS = 4096                     # at most 16 KiB of UTF-8
_LATEST_ACCEPTED = to_datetime(LATEST)


class Intake:
    """What one input message becomes, decided alike by both runtimes (and callable without a
    broker): an event to apply (or, from a routed topic, to re-key), or a dead letter with its
    reason. Never raises."""

    def __init__(self, config: WorkerConfig):
        self._decode = Decoder(config.max_message_bytes).decode
        self._keyed = frozenset(config.keyed_topics)
        self._skew = None if config.max_future_skew_ms is None else config.max_future_skew_ms * 1000
        self._wall: int | None = None
        self._latest = _LATEST_ACCEPTED            # the latest occurred_at accepted at self._wall

    def admit(self, topic: str, key: bytes | None, value: bytes | None, wall: int) -> Event | DeadLetter:
        """`wall`: the wall clock in microseconds (taken once per batch)."""
        raw = value or b""
        event = self._decode(raw)
        if isinstance(event, DeadLetter):
            return event
        if topic in self._keyed and key != event.customer_id.encode():
            letter = wrong_key(event, key, raw)
            if letter is not None:
                return letter
        skew = self._skew
        if skew is None:
            return event
        if wall != self._wall:         # once per batch: comparing datetimes costs less than converting each
            self._wall, self._latest = wall, to_datetime(min(wall + skew, LATEST))
        return event if event.occurred_at <= self._latest else too_far_ahead(event, raw, wall, skew)


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

def dead_letter(letter: DeadLetter, key: bytes | None, topic: str, partition: int,
                offset: int) -> tuple[bytes | None, bytes, Headers]:
    """The dead-letter record's key and value (the original bytes) and headers (why, and where
    from); all of it within the topic's DEAD_LETTER_BYTES."""
    headers: Headers = [("reason", letter.reason[:_REASON_CHARS].encode()), ("source.topic", topic.encode()),
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

