"""`segments backfill`: the engine over the history of the input topics, in one reproducible order.

Every partition of the input topics (keyed and routed) is assigned directly, without a consumer
group, and read from its start (the beginning, a time, or given offsets) to its end (the end it had
when the backfill started, so a backfill ends while producers keep writing). Partitions are merged
by a heap over their next events keyed (occurred_at, topic, partition, offset): within a partition
the log order stays, across partitions the earliest event goes first. The order depends only on
what the topics hold, never on how fetches interleave, so two runs give the same bytes, and the
segment changes are exactly those of `segments replay` over the events in that order: one engine,
one clock, as replay keeps.

The window filters by `occurred_at` (event time), each partition on its own before the merge:
--from TIME drops events that occurred before TIME, --until TIME those at or after it (and then
advances stream time to TIME, firing every timer due by then, as `replay --until` does). Record
timestamps serve only to find where to start reading: offsets_for_times(TIME - margin), trusted
only when the record before the answer is older (the embedded broker answers 0 for every time,
which is safe but slow; an answer that is too late would silently skip events, so an untrusted one
is replaced by the partition's beginning). Events before --from do not fold into the state: a
backfill from a time starts from nothing at that time.

With --handoff GROUP the rebuilt state goes to a fresh namespace for the workers: each customer's
state into partition murmur2(customer id) of `<GROUP>-state-changelog`, the stream time into every
partition, and GROUP's input offsets at where the backfill stopped, all in ONE Kafka transaction
(so the namespace is either complete or absent). `segments worker --group-id GROUP` then restores
from that changelog and continues from those offsets. The segments evaluated are those a worker
with the same settings runs (segments file + definitions topic, stream.backfill.definitions), and
the hand-off tells the workers so: each changelog partition starts with their definitions record.

Speed: one engine on one core bounds a backfill (README, `segments bench backfill`). Engines over
disjoint partition sets in separate processes can give the very same bytes, though not by simply
splitting the input: one clock per engine evaluates a late event at a different "now". What keeps
them identical (designed, not built: this machine has no cores to spare for it): the merging
process sends each event with G, the global stream time before it; its engine first calls
advance(G), then apply(event), so every evaluation sees the global clock. Each change then carries
a key that orders it as one engine would have: (G after its event, 1, event's merge index) for an
event's changes, (deadline, 0, customer id) for a timer's, since one engine fires timers in
(deadline, customer id) order right before the first event that moves the clock to the deadline.
Every engine's output is sorted by that key, so a heap merge of their outputs gives one engine's.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import heapq
import logging
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterator

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from stream.backfill.definitions import evaluated, handoff_record, summary
from stream.kafka.broker import ensure_topics
from stream.model.changes import SegmentChange, encode_change
from stream.kafka.clients import kafka_problems, worker_client_config
from stream.runtime.settings import WorkerConfig, add_worker_arguments
from stream.engine.core import Engine, MemoryStore
from stream.model.events import DeadLetter
from stream.kafka.partition_ends import Key, consume_ready, partition_ends, peek
from stream.replay.driver import ReplaySummary, write_changes
from stream.rules.compiler import Catalog
from stream.runtime.intake import Intake
from stream.runtime.topics import PRODUCER_BATCH_BYTES, worker_topics
from stream.model.state import dump_state
from stream.storage.rocksdb_store import stream_time_record
from stream.model.time import SECOND, format_rfc3339, from_datetime, parse_duration, parse_rfc3339

log = logging.getLogger("segments.backfill")

# The worker's settings a backfill reads: where the input is, how it is decoded and evaluated, and
# which names belong to the live workers (so that a backfill never writes into them).
WORKER_SETTINGS = ("bootstrap_servers", "input_topics", "routed_topics", "changes_topic", "membership_topic",
                   "dead_letter_topic", "group_id", "segments_file", "max_message_bytes", "max_future_skew_ms",
                   "definitions_topic")
KAFKA_OUTPUT = "kafka:"
_FLUSH_EVERY = 4096
_PAUSE_ABOVE = 20_000        # messages buffered for one partition before its fetching pauses
_BEFORE_PROBE = 16           # records read before a looked-up offset to verify it
_DAY_MS = 86_400_000



class ArgumentProblems(ValueError):
    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


# ---- arguments ----------------------------------------------------------------------------------

def add_backfill_arguments(parser: argparse.ArgumentParser) -> None:
    add_worker_arguments(parser, WORKER_SETTINGS)
    parser.add_argument("--from", dest="start", default="beginning", metavar="beginning|TIME|OFFSETS",
                        help="where to start: 'beginning'; an RFC 3339 TIME (events that occurred before it are "
                             "left out and do not fold into the state: the rebuilt state knows nothing before "
                             "TIME); or OFFSETS as topic:partition=offset,... (partitions not named start at "
                             "their beginning). Default: beginning")
    parser.add_argument("--until", default="now", metavar="now|TIME",
                        help="where to stop: 'now' (each partition's end when the backfill starts, so it ends "
                             "while producers write), or an RFC 3339 TIME: events that occurred at or after it "
                             "are left out (partitions are still read to their end, so late arrivals count), "
                             "then stream time advances to TIME, firing every timer due by then. Default: now")
    parser.add_argument("--seek-margin", default="1h", metavar="DURATION",
                        help="with --from TIME, start reading at records stamped this long before TIME, for "
                             "producers whose record timestamps run behind occurred_at (default 1h)")
    parser.add_argument("--output", required=True, metavar="PATH|-|kafka:TOPIC",
                        help="where segment changes go: JSON lines to a file ('-' for stdout), or a Kafka topic "
                             "of the backfill's own (created with the input's partition count when absent; "
                             "never the live workers' topics)")
    parser.add_argument("--dead-letter", metavar="PATH",
                        help="where bad messages go, as JSON lines with reason, topic, partition and offset "
                             "(default: stderr)")
    parser.add_argument("--handoff", metavar="GROUP",
                        help="write the rebuilt state for workers of the new consumer group GROUP: its changelog "
                             "<GROUP>-state-changelog and its input offsets at where the backfill stopped, in "
                             "one transaction; needs --until now and a GROUP never used. Without it: only report")
    parser.add_argument("--isolation", choices=("read_committed", "read_uncommitted"), default="read_committed",
                        help="which input records are read (default read_committed)")
    parser.add_argument("--no-progress", action="store_true", help="no progress display, even on a terminal")
    parser.add_argument("--ignore-definitions-topic", action="store_true",
                        help="evaluate the segments file (--segments) alone. Default: the file and the definitions "
                             "topic, resolved as a worker with these settings resolves them (the topic's latest "
                             "record wins per segment), so live-defined segments are backfilled too")


@dataclass(frozen=True)
class Request:
    config: WorkerConfig
    from_time: int | None = None                     # microseconds; None: no time filter
    from_offsets: dict[Key, int] | None = None       # None: no offsets given
    until: int | None = None                         # None: now
    seek_margin: int = 3600 * SECOND
    output: str = "-"
    dead_letter: str | None = None
    handoff: str | None = None
    read_committed: bool = True
    progress: bool = True

    @property
    def topics(self) -> tuple[str, ...]:
        """Every input topic, sorted: the merge breaks ties by this order, whatever order the
        settings named them in. Never the workers' repartition topic: routed topics are read at
        their source (the new group's repartition topic starts empty)."""
        return tuple(sorted({*self.config.input_topics, *self.config.routed_topics}))

    @property
    def output_topic(self) -> str | None:
        return self.output[len(KAFKA_OUTPUT):] if self.output.startswith(KAFKA_OUTPUT) else None


def parse_offsets(text: str) -> dict[Key, int]:
    """'topic:partition=offset,...' -> {(topic, partition): offset}; every bad item is named."""
    offsets: dict[Key, int] = {}
    problems = []
    for item in (part.strip() for part in text.split(",")):
        where, sep, offset = item.partition("=")
        topic, colon, partition = where.rpartition(":")
        try:
            if not (sep and colon and topic):
                raise ValueError
            key, value = (topic.strip(), int(partition)), int(offset)
            if key[1] < 0 or value < 0:
                raise ValueError
        except ValueError:
            problems.append(f"--from: {item!r} is not topic:partition=offset (whole numbers, 0 or more)")
            continue
        if key in offsets:
            problems.append(f"--from: {key[0]}:{key[1]} is given more than once")
        offsets[key] = value
    if problems:
        raise ArgumentProblems(problems)
    return offsets


def parse_request(args: argparse.Namespace, config: WorkerConfig | None, problems: list[str]) -> Request | None:
    """The backfill's request from parsed flags; problems (each naming its flag) go to `problems`.
    `config` is None when the worker settings themselves had problems (already listed)."""
    fields: dict = {"output": args.output, "dead_letter": args.dead_letter, "handoff": args.handoff,
                    "read_committed": args.isolation == "read_committed", "progress": not args.no_progress}
    start = args.start.strip()
    if start == "beginning":
        pass
    elif "=" in start:
        try:
            fields["from_offsets"] = parse_offsets(start)
        except ArgumentProblems as exc:
            problems += exc.problems
    else:
        try:
            fields["from_time"] = parse_rfc3339(start)
        except ValueError as exc:
            problems.append(f"--from: {exc}; or 'beginning', or topic:partition=offset,...")
    if args.until.strip() != "now":
        try:
            fields["until"] = parse_rfc3339(args.until)
        except ValueError as exc:
            problems.append(f"--until: {exc}; or 'now'")
    try:
        fields["seek_margin"] = parse_duration(args.seek_margin)
    except ValueError as exc:
        problems.append(f"--seek-margin: {exc}")
    if fields.get("from_time") is not None and fields.get("until") is not None \
            and fields["until"] <= fields["from_time"]:
        problems.append(f"--until {args.until} is not after --from {args.start}: the window is empty")
    if args.handoff is not None:
        if not args.handoff.strip():
            problems.append("--handoff: must name a consumer group")
        elif fields.get("until") is not None:
            problems.append("--handoff needs --until now: the workers continue from where the backfill stopped "
                            "reading, so events after --until would never be applied")
    if config is None:
        return None
    if config.bootstrap_servers is None:
        problems.append("--bootstrap-servers: a backfill reads the history of an existing cluster; name it "
                        "(flag, SEGMENTS_BOOTSTRAP_SERVERS or the config file)")
    if args.handoff is not None and args.handoff.strip() == config.group_id:
        problems.append(f"--handoff {args.handoff}: that is the live workers' group (--group-id); hand off to "
                        f"a new group and switch the workers over to it")
    request = Request(config=config, **fields)
    topic = request.output_topic
    if topic is not None:
        live = _live_topics(config) | ({WorkerConfig(group_id=request.handoff).changelog_topic}
                                       if request.handoff else set())
        if not topic:
            problems.append(f"--output {args.output}: name the topic after {KAFKA_OUTPUT}")
        elif topic in live:
            problems.append(f"--output {args.output}: {topic!r} is an input or a live worker topic; a backfill "
                            f"writes its changes to a topic of its own")
    elif args.output != "-" and not args.output.strip():
        problems.append("--output: must not be empty")
    return request


def _live_topics(config: WorkerConfig) -> set[str]:
    return {*config.input_topics, *config.routed_topics, config.changes_topic, config.membership_topic,
            config.dead_letter_topic, config.changelog_topic, config.repartition_topic,
            *([config.definitions_topic] if config.definitions_topic else [])}


# ---- where each partition is read from and to -----------------------------------------------------

@dataclass
class Span:
    """A partition's records to read: offsets start .. end (exclusive)."""
    topic: str
    partition: int
    start: int
    end: int

    @property
    def key(self) -> Key:
        return self.topic, self.partition


def trusted_start(answer: int, low: int, end: int, before_ms: int | None, target_ms: int) -> int:
    """Where to start reading a partition for the records stamped at or after `target_ms`.

    `answer` is the broker's offsets_for_times answer (-1: no record that late), `before_ms` the
    timestamp of the last record before it (None: none could be read). The answer is trusted only
    when that record is older than the target: an answer that is too late would silently skip
    records, one that is too early (the embedded broker's 0) only costs reading more. An untrusted
    answer is replaced by the partition's first offset."""
    if answer < 0 or answer > end:
        answer = end
    if answer <= low:
        return low
    if before_ms is not None and before_ms < target_ms:
        return answer
    return low


def plan(request: Request, problems: list[str]) -> list[Span]:
    """Each input partition's span; problems found on the broker (missing topics, offsets out of
    range, a namespace already used) go to `problems`."""
    config = request.config
    probe = Consumer(_client(config, "read_uncommitted"))
    try:
        metadata = probe.list_topics(timeout=30).topics
        keys: list[Key] = []
        for topic in request.topics:
            if topic not in metadata or metadata[topic].error is not None:
                problems.append(f"input topic {topic!r} does not exist on {config.bootstrap_servers}")
                continue
            keys += [(topic, p) for p in sorted(metadata[topic].partitions)]
        counts = {t: len(metadata[t].partitions) for t in config.input_topics if t in metadata}
        if len(set(counts.values())) > 1:
            problems.append("the keyed input topics differ in partition count "
                            f"({', '.join(f'{t}: {n}' for t, n in counts.items())}); the workers need one count")
        for key in sorted(set(request.from_offsets or ()) - set(keys)):
            problems.append(f"--from: {key[0]}:{key[1]} is not a partition of the input topics")
        lows, ends = partition_ends(probe, keys)
        starts = dict(lows)
        for key, offset in (request.from_offsets or {}).items():
            if key in lows:
                if not lows[key] <= offset <= ends[key]:
                    problems.append(f"--from: {key[0]}:{key[1]}={offset} is outside the partition's offsets "
                                    f"{lows[key]}..{ends[key]}")
                starts[key] = offset
        if request.from_time is not None:
            starts = _time_starts(probe, lows, ends, (request.from_time - request.seek_margin) // 1000)
        if request.handoff is not None:
            problems += _not_fresh(config, request.handoff, metadata, keys)
        return [Span(t, p, starts[(t, p)], ends[(t, p)]) for t, p in keys]
    finally:
        probe.close()


def _client(config: WorkerConfig, isolation: str) -> dict:
    return {"group.id": "segments-backfill", "enable.auto.commit": False, "enable.partition.eof": True,
            "isolation.level": isolation, "auto.offset.reset": "error", "fetch.wait.max.ms": 50,
            **worker_client_config(config)}


def _time_starts(probe: Consumer, lows: dict[Key, int], ends: dict[Key, int], target_ms: int) -> dict[Key, int]:
    answers = {(tp.topic, tp.partition): tp.offset for tp in probe.offsets_for_times(
        [TopicPartition(t, p, target_ms) for t, p in lows], timeout=30)}
    # -1 (no record that late) means the end; an answer past the end is clamped to it.
    answers = {key: min(answer if answer >= 0 else ends[key], ends[key]) for key, answer in answers.items()}
    checked = {key: answer for key, answer in answers.items() if answer > lows[key]}
    seen = peek(probe, {key: max(lows[key], answer - _BEFORE_PROBE) for key, answer in checked.items()}, checked)
    starts = {}
    for key, low in lows.items():
        before = [ts for offset, ts in seen.get(key, (0, []))[1] if offset < answers[key]]
        starts[key] = trusted_start(answers[key], low, ends[key], before[-1] if before else None, target_ms)
        if key in checked and starts[key] == low:
            log.info("%s[%d]: the broker's offset %d for the start time is not confirmed by the record before "
                     "it; reading from %d and skipping by occurred_at", key[0], key[1], answers[key], low)
    return starts


def _not_fresh(config: WorkerConfig, group: str, metadata, keys: list[Key]) -> list[str]:
    """A hand-off goes to a namespace nobody used: an empty changelog, no committed offsets."""
    problems = []
    changelog = WorkerConfig(group_id=group).changelog_topic
    if changelog in metadata:
        reader = Consumer(_client(config, "read_uncommitted"))
        try:
            if any(reader.get_watermark_offsets(TopicPartition(changelog, p), timeout=30)[1] > 0
                   for p in metadata[changelog].partitions):
                problems.append(f"--handoff {group}: {changelog} already holds records; hand off to a new group")
        finally:
            reader.close()
    member = Consumer({**_client(config, "read_uncommitted"), "group.id": group})
    try:
        committed = [tp for tp in member.committed([TopicPartition(*key) for key in keys], timeout=30)
                     if tp.offset >= 0]
    finally:
        member.close()
    if committed:
        problems.append(f"--handoff {group}: the group already has committed offsets "
                        f"({', '.join(f'{tp.topic}:{tp.partition}={tp.offset}' for tp in committed[:4])}); "
                        f"hand off to a new group")
    return problems


# ---- reading in merged order --------------------------------------------------------------------

@dataclass
class _Source:
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


class MergedHistory:
    """The spans' events in merged order, each partition filtered by the window before the merge
    (so the order of the events kept does not depend on how far back reading started)."""

    def __init__(self, request: Request, spans: list[Span], on_dead: Callable[[Span, int, DeadLetter], None]):
        self.request = request
        self.sources = [_Source(i, span) for i, span in enumerate(sorted(spans, key=lambda s: s.key))]
        self.by_key = {s.span.key: s for s in self.sources}
        self.on_dead = on_dead
        self.counts = Counts()
        # What a worker would make of each message (Intake: the decoder, the key of a keyed topic,
        # the clock), so a hand-off holds no event the workers refuse. Events too far ahead are
        # judged against the wall clock when the backfill started (fixed for the run, so its
        # order stays reproducible).
        self._admit = Intake(request.config).admit
        self._clock = int(time.time() * SECOND)
        self._consumer = Consumer(_client(request.config, "read_committed" if request.read_committed
                                          else "read_uncommitted"))
        self.on_fetch: Callable[[], None] | None = None   # progress display

    def close(self) -> None:
        self._consumer.close()

    def __iter__(self) -> Iterator:
        reading = [s for s in self.sources if not s.done]
        if reading:
            self._consumer.assign([TopicPartition(s.span.topic, s.span.partition, s.span.start) for s in reading])
        heap: list = []
        for source in self.sources:
            self._push_next(source, heap)
        pop, push_next, sources = heapq.heappop, self._push_next, self.sources
        while heap:
            _, index, _, event = pop(heap)
            yield event
            push_next(sources[index], heap)

    def _push_next(self, source: _Source, heap: list) -> None:
        """Put the source's next event inside the window on the heap (none when it has no more)."""
        request, counts = self.request, self.counts
        since = request.from_time if request.from_time is not None else -(1 << 62)
        until = request.until if request.until is not None else 1 << 62
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
            if type(event) is DeadLetter:
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

    def _fetch(self, wanted: _Source) -> None:
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

    def _finish(self, source: _Source) -> None:
        if not source.done:
            source.done = True
            source.received = source.span.end
            if not source.paused:
                self._consumer.pause([TopicPartition(source.span.topic, source.span.partition)])
                source.paused = True


# ---- output ---------------------------------------------------------------------------------------

class _TopicSink:
    """Changes to a Kafka topic, keyed by customer id (murmur2, like the workers' changes)."""

    def __init__(self, config: WorkerConfig, topic: str, partitions: int):
        shaped = dataclasses.replace(config, changes_topic=topic)
        ensure_topics(worker_client_config(config), [_topic_spec(shaped, topic, partitions)])
        self.topic, self.failed, self.error = topic, 0, None
        self._producer = Producer({"enable.idempotence": True, "linger.ms": 20, "partitioner": "murmur2_random",
                                   "on_delivery": self._delivered, **worker_client_config(config)})

    def _delivered(self, err, _msg) -> None:
        if err is not None:
            self.failed += 1
            self.error = self.error or err

    def write(self, changes: list[SegmentChange]) -> None:
        produce = self._producer.produce
        for change in changes:
            _produce(self._producer, lambda: produce(self.topic, key=change.customer_id.encode(),
                                                     value=encode_change(change)))
        changes.clear()

    def close(self) -> None:
        left = self._producer.flush(60)
        if left or self.failed:
            raise KafkaException(self.error or KafkaError(KafkaError._TIMED_OUT,
                                                          f"{left} changes not delivered to {self.topic}"))


class _FileSink:
    def __init__(self, handle: BinaryIO):
        self.handle = handle

    def write(self, changes: list[SegmentChange]) -> None:
        write_changes(self.handle, changes)

    def close(self) -> None:
        self.handle.flush()


def _produce(producer: Producer, send: Callable[[], None]) -> None:
    while True:
        try:
            send()
            producer.poll(0)
            return
        except BufferError:              # the local queue is full: let it drain
            producer.poll(0.05)


def _topic_spec(config: WorkerConfig, name: str, partitions: int):
    """The spec (partition count, configs) the workers of `config` give their topic `name`."""
    shaped = dataclasses.replace(config, partitions=partitions)
    return next(spec for spec in worker_topics(shaped) if spec[0] == name)


# ---- hand-off -------------------------------------------------------------------------------------

def hand_off(config: WorkerConfig, group: str, states: MemoryStore, now: int | None, spans: list[Span],
             partitions: int, catalog: Catalog) -> int:
    """The rebuilt state as the workers of `group` restore it (with the definitions of `catalog` it
    was evaluated under), and their input offsets at each span's end, in one transaction. Returns
    the number of changelog records."""
    target = dataclasses.replace(config, group_id=group)
    topic = target.changelog_topic
    ensure_topics(worker_client_config(config), [_topic_spec(target, topic, partitions)])
    failures: list[KafkaError] = []
    producer = Producer({"transactional.id": f"{group}-backfill", "partitioner": "murmur2_random", "linger.ms": 20,
                         "transaction.timeout.ms": 900_000,
                         "batch.size": PRODUCER_BATCH_BYTES,     # within the changelog's max.message.bytes
                         "on_delivery": lambda err, _msg: err is not None and failures.append(err),
                         **worker_client_config(config)})
    member = Consumer({**_client(config, "read_uncommitted"), "group.id": group})
    try:
        producer.init_transactions(60)
        producer.begin_transaction()
        # Keyed by customer id with the workers' partitioner: each state lands in the partition of
        # the changelog that the worker owning the customer's input partition restores.
        for customer_id in sorted(states):
            _produce(producer, lambda: producer.produce(topic, key=customer_id.encode(),
                                                        value=dump_state(states[customer_id])))
        meta = [handoff_record(catalog), *([stream_time_record(now)] if now is not None else [])]
        for partition in range(partitions):
            for key, value in meta:
                _produce(producer, lambda: producer.produce(topic, key=key, value=value, partition=partition))
        producer.flush()
        if failures:
            raise KafkaException(failures[0])
        producer.send_offsets_to_transaction([TopicPartition(s.topic, s.partition, s.end) for s in spans],
                                             member.consumer_group_metadata(), 60)
        producer.commit_transaction(120)
    except KafkaException:
        # An open transaction would hold back every read_committed reader of the changelog.
        with contextlib.suppress(KafkaException):
            producer.abort_transaction(30)
        raise
    finally:
        member.close()
        producer.flush(0)
    return len(states) + partitions * len(meta)


# ---- the command ----------------------------------------------------------------------------------

def run(request: Request, catalog: Catalog, spans: list[Span], output: BinaryIO | None, dead: BinaryIO,
        progress: Callable[[MergedHistory], contextlib.AbstractContextManager] | None = None) -> list[str]:
    """The backfill proper; returns the summary lines."""
    started = time.perf_counter()
    config = request.config
    partitions = max((s.partition for s in spans if s.topic in config.input_topics), default=0) + 1
    sink = _TopicSink(config, request.output_topic, partitions) if output is None else _FileSink(output)
    engine = Engine(catalog)

    def dead_letter(span: Span, offset: int, letter: DeadLetter) -> None:
        dead.write(letter.to_json_line(topic=span.topic, partition=span.partition, offset=offset))

    history = MergedHistory(request, spans, dead_letter)
    changes: list[SegmentChange] = []
    apply = engine.apply
    try:
        with progress(history) if progress else contextlib.nullcontext():
            for event in history:
                apply(event, changes)
                if len(changes) >= _FLUSH_EVERY:
                    sink.write(changes)
        if request.until is not None:
            engine.advance(request.until, changes)
        sink.write(changes)
        sink.close()
        dead.flush()
    finally:
        history.close()
    counts = history.counts
    lines = ReplaySummary(counts.events, counts.dead_letters, time.perf_counter() - started, engine.stats).lines()
    lines.insert(2, f"outside       {counts.outside} (before --from or from --until on)")
    lines.append(f"partitions    {len(spans)} ({sum(s.end - s.start for s in spans):,} records)")
    if engine.now > -(1 << 61):
        lines.append(f"stream time   {format_rfc3339(engine.now)}")
    if request.handoff is not None:
        records = hand_off(config, request.handoff, engine.store, engine.now if engine.stats.applied else None,
                           spans, partitions, catalog)
        lines.append(f"handed off    {len(engine.store):,} customers ({records:,} records) to group "
                     f"{request.handoff}: start the workers with --group-id {request.handoff}")
    return lines


def main(args: argparse.Namespace) -> int:
    from rich.console import Console

    from stream.runtime.settings import ConfigError, is_secret_key, load_config
    from stream.rules.compiler import DefinitionError, load_catalog

    # soft_wrap: a problem or a group name is one line, whatever the terminal's width
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    problems: list[str] = []
    config = None
    try:
        config = load_config(args)
        problems += kafka_problems(config.kafka, is_secret_key)    # as the worker checks them
    except ConfigError as exc:
        problems += exc.problems
    request = parse_request(args, config, problems)
    catalog = None
    if config is not None:
        try:
            catalog = load_catalog(config.segments_file)
        except DefinitionError as exc:
            problems.append(str(exc))
    spans: list[Span] = []
    # The broker's checks (topics, offsets, a fresh hand-off group) need usable arguments.
    if not problems:
        try:
            spans = plan(request, problems)
            if not problems:
                resolution, where = evaluated(config, catalog, not args.ignore_definitions_topic)
        except (KafkaException, TimeoutError) as exc:
            reason = exc.args[0] if isinstance(exc, KafkaException) else exc
            err.print(f"segments backfill: {config.bootstrap_servers}: {reason}", markup=False)
            return 1
    if problems:
        err.print("segments backfill: unusable arguments:\n" + "\n".join(f"  - {p}" for p in problems),
                  markup=False)
        return 2
    # Said first: what a long backfill evaluates is known before it starts.
    err.print("\n".join(summary(resolution, where)), markup=False)
    try:
        with contextlib.ExitStack() as stack:
            output = None
            if request.output_topic is None:
                output = sys.stdout.buffer if request.output == "-" else stack.enter_context(open(request.output, "wb"))
            dead = stack.enter_context(open(request.dead_letter, "wb")) if request.dead_letter else sys.stderr.buffer
            show = request.progress and err.is_terminal
            lines = run(request, resolution.catalog, spans, output, dead,
                              progress=(lambda history: _progress(err, history)) if show else None)
    except OSError as exc:
        err.print(f"segments backfill: {exc.filename or request.output}: {exc.strerror or exc}", markup=False)
        return 1
    except KafkaException as exc:
        err.print(f"segments backfill: Kafka: {exc.args[0]}", markup=False)
        return 1
    err.print("\n".join(lines), markup=False)
    return 0


@contextlib.contextmanager
def _progress(console, history: MergedHistory) -> Iterator[None]:
    """A bar per partition (records of its span taken into the merge, with ETA), refreshed from the
    fetch loop (which runs whenever a partition's buffer runs dry)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress("{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as bar:
        tasks = {s.index: bar.add_task(f"{s.span.topic}[{s.span.partition}]", total=s.span.end - s.span.start)
                 for s in history.sources}
        next_at = [0.0]

        def refresh() -> None:
            # Refreshing per fetch would cost more than the fetch: four times a second.
            now = time.monotonic()
            if now >= next_at[0]:
                next_at[0] = now + 0.25
                for source in history.sources:
                    bar.update(tasks[source.index], completed=source.position - source.span.start)
        history.on_fetch = refresh
        yield
