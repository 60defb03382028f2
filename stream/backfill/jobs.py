"""A backfill over several processes ("jobs", `--jobs`): each job runs one engine over its own input
partitions, and this process merges what they send into the very bytes one engine writes (the
changes, the dead letters, the hand-off). docs/backfill.md ("Jobs") says why at length; in short:

- The merge (reader.MergedHistory: the partitions' next events by (occurred_at, topic, partition,
  offset)) puts every event at (P, partition, offset), P being the newest occurred_at of its
  partition up to it: an event on time has P = its own time, a late one follows its partition's
  newest. Sorted by that, a job's own events come in the order they have in the whole merge.
- P is also one engine's stream time after the event, and the job's: an event on time sets both
  clocks to its time; a late one finds its partition's newest event applied before it, in the job
  as in one engine, and nothing newer, so both evaluate it at P.
- A customer's events are all in one partition (keyed by customer id), so its state, timers and
  changes depend only on that partition's events and the clock at each: the same in its job. A
  timer due at d fires, in one engine, before the first event whose P reaches d; in the job
  before its own first such event, with the same state (no event of that customer in between).
- The order: one engine writes the changes of the timers due by an event's time, by (deadline,
  customer), then the event's. So each change a job sends carries its place: (deadline, 0,
  customer) for a timer's, (P, 1, source, offset) for an event's; a dead letter the place of the
  partition's event it follows (one engine writes it on taking that event). Each job sends in that
  order, and this process merges the jobs' streams by it.
- At the end one engine's clock is the newest event of all: each job advances to it (firing what
  one engine fired after the job's last event: it is merged in by deadline), then to --until. The
  states come back for the hand-off, merged by customer id into one transaction, as one engine's.

Processes (spawn), not threads: the engine is pure Python and would hold one core between them.
"""
from __future__ import annotations

import contextlib
import heapq
import multiprocessing
import os
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from multiprocessing.connection import Connection, wait
from multiprocessing.reduction import ForkingPickler
from operator import itemgetter
from types import MappingProxyType
from typing import Any, BinaryIO

from confluent_kafka import KafkaError, KafkaException

from stream.runtime.garbage import rare_full_collections
from stream.backfill.handoff import dumped
from stream.backfill.plan import Span
from stream.backfill.reader import Counts, MergedHistory, Source, sources, started_clock
from stream.backfill.request import Request
from stream.backfill.sinks import Encoded, FileSink, TopicSink
from stream.definitions.resolution import file_definitions
from stream.engine.core import STATS_FIELDS, Engine, Stats
from stream.engine.store import MemoryStore
from stream.errors import SegmentsError
from stream.kafka.partition_ends import Key
from stream.model.changes import SegmentChange, encode_change
from stream.model.events import Event
from stream.model.time import parse_rfc3339
from stream.rules.catalog import Catalog, compile_catalog
from stream.runtime import metrics

# What a job sends: records (with its partitions' progress), then READ (its clock, once its history
# is read), then, told to ADVANCE to the clock of all, the last records and DONE (its outcome), and
# for a hand-off its STATES (chunks, then None). FAILED (the reason) instead, whenever it fails.
RECORDS, READ, ADVANCE, DONE, STATES, FAILED = range(6)
# A record: (place, kind, key, value); a change's key is its customer id, a dead letter's empty.
CHANGE, DEAD = 0, 1
Record = tuple[tuple, int, bytes, bytes]

_CHUNK = 2048              # records per message
_STATES_CHUNK = 1000       # states per message (a state is some KB: a chunk is a few MB)
_SEND_EVERY = 0.25         # seconds: a job with few records still reports its progress this often
_AHEAD = 64                # messages taken ahead from a job while the merge waits for another one
_FLUSH_EVERY = 4096        # changes per write to the sink


def _read_only(contents: dict) -> MappingProxyType:
    return MappingProxyType(contents)


def _mapping_proxy(proxy: MappingProxyType) -> tuple[Callable[[dict], MappingProxyType], tuple[dict]]:
    return _read_only, (dict(proxy),)


# A job's settings (WorkerConfig.kafka) hold a read-only mapping, which pickles as its contents.
ForkingPickler.register(MappingProxyType, _mapping_proxy)


class JobFailed(SegmentsError):
    """A job of a backfill failed or died: the backfill fails with its reason, nothing handed off."""


@dataclass(frozen=True)
class Job:
    """What one job is given (it crosses to a fresh process, so the catalog goes as its definitions)."""
    number: int
    request: Request
    definitions: dict[str, dict[str, Any]]
    source: str
    spans: list[Span]
    places: dict[Key, int]      # each span's source index in the whole merge (its tie-break)
    clock: int                  # the run's wall clock, for events too far ahead (one for all jobs)

    def describe(self) -> str:
        return f"job {self.number} ({', '.join(f'{s.topic}:{s.partition}' for s in self.spans)})"


@dataclass
class Outcome:
    """What a run's engines did, summed over its jobs: for the summary and the hand-off."""
    counts: Counts
    stats: Stats
    now: int
    states: Iterable[tuple[str, bytes]] = ()       # for a hand-off: (customer id, dumped state) by customer id


def cores() -> int:
    """The cores this process may run on (its affinity, where the system says): --jobs by default."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


def split(request: Request, spans: list[Span], jobs: int) -> list[list[Span]]:
    """The spans in at most `jobs` disjoint sets, every topic's partition p in the same set (a
    customer is in partition p of each keyed topic), balanced by records to read. One set when
    the topics include routed ones: their partitions hold any customer's events."""
    if request.config.routed_topics or jobs <= 1:
        return [spans]
    by_partition: dict[int, list[Span]] = {}
    for span in sorted(spans, key=lambda s: s.key):
        by_partition.setdefault(span.partition, []).append(span)
    size = {p: sum(s.end - s.start for s in group) for p, group in by_partition.items()}
    sets: list[list[Span]] = [[] for _ in range(min(jobs, len(by_partition)))]
    load = [0] * len(sets)
    for p in sorted(by_partition, key=lambda p: (-size[p], p)):       # largest first, to the least loaded
        lightest = min(range(len(sets)), key=lambda j: (load[j], j))
        sets[lightest] += by_partition[p]
        load[lightest] += size[p]
    return [group for group in sets if group] or [spans]


@contextlib.contextmanager
def run_jobs(request: Request, catalog: Catalog, groups: list[list[Span]], sink: TopicSink | FileSink,
             dead: BinaryIO, progress: Callable[[Jobs], contextlib.AbstractContextManager] | None
             ) -> Iterator[Outcome]:
    """The backfill over one job per group of spans, merged into `sink` and `dead`; its outcome,
    whose states (for a hand-off) the jobs send as they are taken. The jobs end on leaving."""
    spans = [span for group in groups for span in group]
    places = {source.span.key: source.index for source in sources(spans)}
    definitions, clock = file_definitions(catalog), started_clock()
    jobs = Jobs([Job(n, request, definitions, catalog.source, group, places, clock)
                 for n, group in enumerate(groups)], spans)
    try:
        with progress(jobs) if progress else contextlib.nullcontext():
            jobs.merge(sink, dead)
        yield jobs.outcome(request.handoff is not None)
    finally:
        jobs.close()


class Jobs:
    """The running jobs, and the merge of what they send. `sources` and `on_fetch` are what the
    progress display reads (as of a MergedHistory): each partition's position, as the jobs report it."""

    def __init__(self, jobs: list[Job], spans: list[Span]):
        self.sources: list[Source] = sources(spans)
        self.on_fetch: Callable[[], None] | None = None
        self._advanced = False
        context = multiprocessing.get_context("spawn")
        self._running: list[_Running] = []
        try:
            for job in jobs:
                ours, theirs = context.Pipe()
                process = context.Process(target=work, args=(job, theirs), name=f"segments-backfill-{job.number}",
                                          daemon=True)
                process.start()
                theirs.close()           # ours alone: the pipe ends (EOFError) when the job does
                self._running.append(_Running(job, process, ours, self))
        except BaseException:
            self.close()
            raise

    def merge(self, sink: TopicSink | FileSink, dead: BinaryIO) -> None:
        """The jobs' records in the order one engine writes them: changes to `sink`, dead letters to `dead`."""
        batch: list[Encoded] = []
        for _, kind, key, value in in_order([r.records() for r in self._running]):
            if kind == CHANGE:
                batch.append((key, value))
                if len(batch) >= _FLUSH_EVERY:
                    sink.write_encoded(batch)
                    batch = []
            else:
                dead.write(value)
        sink.write_encoded(batch)

    def outcome(self, handoff: bool) -> Outcome:
        """The jobs' outcomes summed; with a hand-off, their states as they send them."""
        outcomes = [r.outcome for r in self._running]
        assert all(o is not None for o in outcomes), "the merge ran to every job's end"
        done = [o for o in outcomes if o is not None]
        counts, stats = Counts(), Stats()
        for o in done:
            for total, part, names in ((counts, o.counts, [f.name for f in fields(counts)]),
                                       (stats, o.stats, STATS_FIELDS)):
                for name in names:
                    setattr(total, name, getattr(total, name) + getattr(part, name))
        states = _by_customer([r.states() for r in self._running]) if handoff else iter(())
        return Outcome(counts, stats, max(o.now for o in done), states)

    def close(self) -> None:
        """Every job ended: those still running (after a failure elsewhere) are stopped."""
        for running in self._running:
            running.conn.close()
            if running.process.is_alive():
                running.process.terminate()
            running.process.join()

    def wait_for(self, wanted: _Running) -> None:
        """Until `wanted` has a message: meanwhile what the others have ready is taken too (a bounded
        way ahead), so that a job is not held up by a full pipe while the merge waits for another."""
        others = [r for r in self._running if r is not wanted and not r.finished and len(r.pending) < _AHEAD]
        while not wanted.pending:
            ready = wait([wanted.conn, *(r.conn for r in others)])
            for running in [wanted, *others]:
                if running.conn in ready:
                    running.take()
            others = [r for r in others if not r.finished and len(r.pending) < _AHEAD]

    def advance(self) -> None:
        """Once every job has read its history: each advances to the newest event time of all."""
        if self._advanced:
            return
        for running in self._running:
            while running.read_at is None:
                running.take()
        now = max(r.read_at for r in self._running if r.read_at is not None)
        for running in self._running:
            running.conn.send((ADVANCE, now))
        self._advanced = True

    def reported(self, positions: list[tuple[int, int]]) -> None:
        for index, position in positions:
            self.sources[index].position = position
        if self.on_fetch is not None:
            self.on_fetch()


class _Running:
    """One job's process, its pipe, and the messages taken from it but not merged yet."""

    def __init__(self, job: Job, process: Any, conn: Connection, jobs: Jobs):
        self.job, self.process, self.conn, self.jobs = job, process, conn, jobs
        self.pending: deque[tuple[int, Any]] = deque()
        self.read_at: int | None = None
        self.finished = False           # DONE taken: nothing more comes
        self.outcome: Outcome | None = None

    def take(self) -> None:
        """The job's next message, into `pending`; a job that failed or died fails the backfill."""
        try:
            message = self.conn.recv()
        except (EOFError, OSError):
            self.process.join(10)
            raise JobFailed(f"backfill {self.job.describe()} died (exit code {self.process.exitcode})") from None
        kind, body = message
        if kind == FAILED:
            code, reason = body
            text = f"backfill {self.job.describe()}: {reason}"
            if code is not None:
                raise KafkaException(KafkaError(code, text))
            raise JobFailed(text)
        if kind == RECORDS:
            self.jobs.reported(body[1])
        elif kind == READ:
            self.read_at = body
        elif kind == DONE:
            self.finished = True
        self.pending.append(message)

    def states(self) -> Iterator[tuple[str, bytes]]:
        """The job's states, dumped, by customer id, as it sends them after DONE."""
        while True:
            self.take()
            _, chunk = self.pending.popleft()
            if chunk is None:
                return
            yield from chunk

    def records(self) -> Iterator[Record]:
        while True:
            if not self.pending:
                self.jobs.wait_for(self)
            kind, body = self.pending.popleft()
            if kind == RECORDS:
                yield from body[0]
            elif kind == READ:
                self.jobs.advance()
            else:
                self.outcome = body
                return


def _by_customer(parts: list[Iterable[tuple[str, bytes]]]) -> Iterator[tuple[str, bytes]]:
    """The jobs' states, each job's by customer id, as one sequence by customer id. A customer in
    two jobs would mean its events are in two partition numbers (keyed topics not partitioned
    alike): then one engine's state of it is not what either job holds, and the backfill fails."""
    last = None
    for customer_id, state in heapq.merge(*parts, key=itemgetter(0)):
        if customer_id == last:
            raise JobFailed(f"customer {customer_id!r} has events in partitions of two jobs: the keyed input "
                            f"topics are not partitioned alike by customer id; run with --jobs 1")
        last = customer_id
        yield customer_id, state


# ---- in the job's process ---------------------------------------------------------------------------

def work(job: Job, conn: Connection) -> None:
    """A job's process: its engine over its partitions, every record sent to `conn`."""
    with reporting(conn), rare_full_collections():
        _work(job, conn)


@contextlib.contextmanager
def reporting(conn: Connection) -> Iterator[None]:
    """In a job's process: a failure is sent as its reason (a Kafka error with its code), and the
    traceback printed, before the process ends with status 1."""
    try:
        yield
    except BaseException as exc:
        traceback.print_exc()
        error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
        code = error.code() if isinstance(error, KafkaError) else None
        reason = error.str() if isinstance(error, KafkaError) else f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(OSError):     # the backfill is gone already
            conn.send((FAILED, (code, reason)))
        raise SystemExit(1) from None
    finally:
        conn.close()


def _work(job: Job, conn: Connection) -> None:
    request = job.request
    store = MemoryStore()
    metrics.count_sheds()
    engine = Engine(compile_catalog(job.definitions, job.source), store)
    records: list[Record] = []
    places = job.places

    def dead_letter(span: Span, offset: int, letter: Any) -> None:
        # One engine writes it on taking the partition's next event after the one just applied:
        # the place of that event (P is the stream time now), or before every event at the start.
        line = letter.to_json_line(topic=span.topic, partition=span.partition, offset=offset)
        records.append(((engine.now, 1, places[span.key], offset), DEAD, b"", line))

    history = MergedHistory(request, job.spans, dead_letter, job.clock)
    index_place = [places[s.span.key] for s in history.sources]
    sent = [time.monotonic()]

    def send() -> None:
        positions = [(index_place[s.index], s.position) for s in history.sources]
        conn.send((RECORDS, (records[:], positions)))
        records.clear()
        sent[0] = time.monotonic()

    def on_fetch() -> None:
        if time.monotonic() - sent[0] >= _SEND_EVERY:
            send()

    history.on_fetch = on_fetch
    try:
        placed(engine, history.entries(), index_place, records, send)
    finally:
        history.close()
    send()
    conn.send((READ, engine.now))
    kind, now = conn.recv()
    assert kind == ADVANCE, kind
    finish(engine, now, request.until, records)
    send()
    conn.send((DONE, Outcome(history.counts, engine.stats, engine.now)))
    if request.handoff is not None:
        # A chunk at a time, as the hand-off takes them: neither process holds all the states dumped.
        chunk: list[tuple[str, bytes]] = []
        for state in dumped(store):
            chunk.append(state)
            if len(chunk) >= _STATES_CHUNK:
                conn.send((STATES, chunk))
                chunk = []
        conn.send((STATES, chunk))
        conn.send((STATES, None))


def placed(engine: Engine, entries: Iterable[tuple[int, int, int, Event]], places: list[int],
           records: list[Record], full: Callable[[], None]) -> None:
    """A job's engine over its events in merged order (`entries`, as MergedHistory.entries gives
    them; `places`: each source index's in the whole merge), each change into `records` with its
    place in one engine's output; `full` is called when they are many."""
    changes: list[SegmentChange] = []
    apply, advance, encode = engine.apply, engine.advance, encode_change
    for t, index, offset, event in entries:
        if t > engine.now:
            # The timers due by the event's time fire first (as in apply), placed by deadline.
            advance(t, changes)
            if changes:
                _timed(changes, records)
        apply(event, changes)
        if changes:
            # engine.now is P: the event's time, or for a late event its partition's newest.
            place = (engine.now, 1, places[index], offset)
            key = event.customer_id.encode()
            records.extend([(place, CHANGE, key, encode(c)) for c in changes])
            changes.clear()
            if len(records) >= _CHUNK:
                full()


def finish(engine: Engine, now: int, until: int | None, records: list[Record]) -> None:
    """After a job's last event: to `now`, the newest event time of all jobs (the timers one engine
    fired after the job's last event), then to --until; their changes into `records`, placed."""
    changes: list[SegmentChange] = []
    engine.advance(now, changes)
    if until is not None:
        engine.advance(until, changes)
    _timed(changes, records)


def in_order(streams: list[Iterator[Record]]) -> Iterator[Record]:
    """The jobs' records (each job's in order) in one engine's order."""
    return heapq.merge(*streams, key=itemgetter(0))


def _timed(changes: list[SegmentChange], records: list[Record]) -> None:
    """Changes of timers firing, with their places: (deadline, 0, customer), as one engine fires them."""
    at, deadline = "", 0
    for change in changes:
        if change.at != at:
            at, deadline = change.at, parse_rfc3339(change.at)
        records.append(((deadline, 0, change.customer_id), CHANGE, change.customer_id.encode(), encode_change(change)))
    changes.clear()
