"""The history of the input partitions as one stream of events in a reproducible order: each
partition read by direct assignment, filtered by the window, and merged by a heap on
(occurred_at, topic, partition, offset)."""
from __future__ import annotations

import dataclasses
import heapq
import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol
from collections.abc import Callable, Iterator

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from stream.backfill.plan import Span, consumer_config
from stream.backfill.request import Request
from stream.kafka.partition_ends import consume_ready
from stream.model.events import DeadLetter, Event
from stream.model.time import AFTER_TIME, BEFORE_TIME, SECOND, from_datetime
from stream.runtime.intake import Intake

_PAUSE_ABOVE = 20_000        # messages buffered for one partition before its fetching pauses


@dataclass
class Source:
    """One partition's reading: what is buffered, how far it got (the progress display reads
    `position`), and its place in the merge (`index`, the tie-break after occurred_at)."""
    index: int
    span: Span
    buffer: deque = dataclasses.field(default_factory=deque)
    received: int = 0           # the offset after the last message received
    position: int = 0           # the offset after the last message taken into the merge (progress)
    done: bool = False          # every record before span.end received
    paused: bool = False
    opened: bool = False        # an event at or after --from was seen: dead letters count from here

    def __post_init__(self) -> None:
        self.received = self.position = self.span.start
        self.done = self.span.start >= self.span.end


@dataclass
class Counts:
    events: int = 0
    dead_letters: int = 0
    outside: int = 0            # valid events left out by --from / --until


class Reading(Protocol):
    """What the progress display reads: each partition's position, refreshed through on_fetch (a
    MergedHistory's own, or a parallel backfill's as its jobs report them)."""
    sources: list[Source]
    on_fetch: Callable[[], None] | None


def sources(spans: list[Span]) -> list[Source]:
    """The spans' sources, indexed in (topic, partition) order: the merge's tie-break."""
    return [Source(i, span) for i, span in enumerate(sorted(spans, key=lambda s: s.key))]


def started_clock() -> int:
    """The wall clock (microseconds) events too far ahead are judged against, taken once per run."""
    return int(time.time() * SECOND)


class MergedHistory:
    """The spans' events in merged order, each partition filtered by the window before the merge
    (so the order of the events kept does not depend on how far back reading started)."""

    def __init__(self, request: Request, spans: list[Span], on_dead: Callable[[Span, int, DeadLetter], None],
                 clock: int | None = None):
        self.request = request
        self.sources = sources(spans)
        self.by_key = {s.span.key: s for s in self.sources}
        self.on_dead = on_dead
        self.counts = Counts()
        # What a worker would make of each message (Intake: the decoder, the key of a keyed topic,
        # the clock), so a hand-off holds no event the workers refuse. Events too far ahead are
        # judged against the wall clock when the backfill started (fixed for the run, so its
        # order stays reproducible; `clock` gives it, when the run's jobs must share one).
        self._admit = Intake(request.config).admit
        self._clock = started_clock() if clock is None else clock
        self._consumer = Consumer(consumer_config(request.config, "read_committed" if request.read_committed
                                          else "read_uncommitted"))
        self.on_fetch: Callable[[], None] | None = None   # progress display

    def close(self) -> None:
        self._consumer.close()

    def __iter__(self) -> Iterator[Event]:
        return (entry[3] for entry in self.entries())

    def entries(self) -> Iterator[tuple[int, int, int, Event]]:
        """The events in merged order with their place in it: (occurred_at, source index, offset, event)."""
        reading = [s for s in self.sources if not s.done]
        if reading:
            self._consumer.assign([TopicPartition(s.span.topic, s.span.partition, s.span.start) for s in reading])
        heap: list = []
        for source in self.sources:
            self._push_next(source, heap)
        pop, push_next, sources = heapq.heappop, self._push_next, self.sources
        while heap:
            entry = pop(heap)
            yield entry
            push_next(sources[entry[1]], heap)

    def _push_next(self, source: Source, heap: list) -> None:
        """Put the source's next event inside the window on the heap (none when it has no more)."""
        request, counts = self.request, self.counts
        since = request.from_time if request.from_time is not None else BEFORE_TIME
        until = request.until if request.until is not None else AFTER_TIME
        while True:
            if not source.buffer:
                if source.done:
                    source.position = source.span.end
                    return
                self._fetch(source)
                continue
            offset, key, value = source.buffer.popleft()
            source.position = offset + 1
            event = self._admit(source.span.topic, key, value, self._clock)
            if isinstance(event, DeadLetter):
                # Before the first event of the window a bad message is left out with the events
                # around it, so what is reported does not depend on where reading started.
                if source.opened or request.from_time is None:
                    counts.dead_letters += 1
                    self.on_dead(source.span, offset, event)
                else:
                    counts.outside += 1
                continue
            t = from_datetime(event.occurred_at)
            if t < since:
                counts.outside += 1
                continue
            source.opened = True
            if t >= until:
                counts.outside += 1
                continue
            counts.events += 1
            heapq.heappush(heap, (t, source.index, offset, event))
            return

    def _fetch(self, wanted: Source) -> None:
        """Consume until `wanted` has a message or is done, buffering what arrives for the others;
        a partition that has buffered plenty pauses until it runs dry."""
        consumer = self._consumer
        if wanted.paused:
            consumer.resume([TopicPartition(wanted.span.topic, wanted.span.partition)])
            wanted.paused = False
        by_key = self.by_key
        while not wanted.buffer and not wanted.done:
            for msg in consume_ready(consumer):
                source = by_key[(msg.topic(), msg.partition())]
                error = msg.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise KafkaException(error)
                    if msg.offset() >= source.span.end:
                        self._finish(source)
                    continue
                offset = msg.offset()
                if source.done or offset >= source.span.end:
                    self._finish(source)
                    continue
                source.buffer.append((offset, msg.key(), msg.value() or b""))
                source.received = offset + 1
                if source.received >= source.span.end:
                    self._finish(source)
                elif len(source.buffer) > _PAUSE_ABOVE and source is not wanted and not source.paused:
                    consumer.pause([TopicPartition(source.span.topic, source.span.partition)])
                    source.paused = True
            if self.on_fetch is not None:
                self.on_fetch()

    def _finish(self, source: Source) -> None:
        if not source.done:
            source.done = True
            source.received = source.span.end
            if not source.paused:
                self._consumer.pause([TopicPartition(source.span.topic, source.span.partition)])
                source.paused = True
