"""The batch step both runtimes run: each input message decoded (or dead-lettered), re-keyed (from a
routed topic) or applied to its partition's engine, and tallied; then each partition's changes and
membership records; and, once the batch is in Kafka, its metrics, counted per batch. The runtimes
keep only what differs between them: how messages arrive, the state's changelog and the commit.
"""
from __future__ import annotations

import time
from collections import Counter
from typing import Protocol
from collections.abc import Callable, Iterable

from stream.engine.core import Engine
from stream.model.changes import SegmentChange, encode_change
from stream.model.events import EVENT_TYPES, DeadLetter, Event
from stream.model.state import CustomerState
from stream.model.time import SECOND, format_rfc3339
from stream.rules.catalog import Catalog
from stream.runtime import metrics
from stream.runtime.intake import Intake, dead_letter
from stream.runtime.records import Record, membership
from stream.runtime.settings import WorkerConfig

TYPE_OF = {cls: tag for tag, cls in EVENT_TYPES.items()}


class Target(Protocol):
    """An input partition as the batch step sees it: its engine, and the changes of the batch."""

    @property
    def engine(self) -> Engine: ...

    @property
    def changes(self) -> list[SegmentChange]: ...


class BatchStep:
    """What every batch of one runtime shares: the intake and the output topics."""

    def __init__(self, config: WorkerConfig):
        self.admit = Intake(config).admit
        self.routed = frozenset(config.routed_topics)
        self.repartition_topic = config.repartition_topic
        self.changes_topic = config.changes_topic
        self.membership_topic = config.membership_topic
        self.dead_letter_topic = config.dead_letter_topic

    def batch(self) -> Batch:
        return Batch(self)


class Batch:
    """One batch: the records to publish besides the state (`output`: dead letters, re-keyed events,
    changes, membership records) and what its metrics count. The wall clock is taken once, at its
    start."""

    def __init__(self, step: BatchStep):
        self._step = step
        self.started = time.perf_counter()
        self.wall = int(time.time() * SECOND)
        self.output: list[Record] = []
        self.outcomes: Counter[tuple[str, str, str]] = Counter()
        self.caused: list[float] = []       # event times (s) of the events whose changes it publishes
        self.changes: list[SegmentChange] = []
        self.events = 0                     # applied to an engine (duplicates and late ones included)

    def take(self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None,
             target: Target | None) -> None:
        """One input message: a dead letter, or re-keyed by customer id (a routed topic), or applied
        to `target`'s engine (None: its partition was revoked within the batch, the message is
        skipped)."""
        step = self._step
        event = step.admit(topic, key, value, self.wall)
        if isinstance(event, DeadLetter):
            letter_key, letter, headers = dead_letter(event, key, topic, partition, offset)
            self.output.append((step.dead_letter_topic, letter_key, letter, None, headers))
            self.outcomes[(topic, "invalid", "dead_letter")] += 1
            return
        if topic in step.routed:
            # Keyed by customer id, as the repartition topic's reader (Intake) requires.
            self.output.append((step.repartition_topic, event.customer_id.encode(), value, None, None))
            self.outcomes[(topic, TYPE_OF[type(event)], "routed")] += 1
            return
        if target is None:
            return
        out = target.changes
        before = len(out)
        outcome = apply_counted(target.engine, event, out)
        self.outcomes[(topic, TYPE_OF[type(event)], outcome)] += 1
        if len(out) != before:
            self.caused.append(event.occurred_at.timestamp())
        self.events += 1

    def publish(self, changes: list[SegmentChange], now: int, get: Callable[[str], CustomerState | None]) -> None:
        """A partition's changes keyed by customer id, then each touched customer's membership
        record, with its state after the batch (`get`) as of the partition's stream time `now`."""
        step, output = self._step, self.output
        touched: dict[str, None] = {}
        for change in changes:
            output.append((step.changes_topic, change.customer_id.encode(), encode_change(change), None, None))
            touched[change.customer_id] = None
        if touched:             # (a partition that changed nothing may have no stream time yet)
            topic, at = step.membership_topic, format_rfc3339(now)
            for customer_id in touched:
                output.append((topic, customer_id.encode(), membership(customer_id, get(customer_id), at), None, None))
        self.changes += changes

    def published(self, at: float) -> None:
        """Its changes are in Kafka, at `at` (wall clock seconds): how long after their events."""
        for caused in self.caused:
            metrics.EVENT_TO_CHANGE.observe(at - caused)

    def count(self, timers_fired: int = 0) -> None:
        """Its events, changes and fired timers, counted once it is in Kafka."""
        for labels, count in self.outcomes.items():
            metrics.EVENTS.labels(*labels).inc(count)
        metrics.count_changes(self.changes)
        metrics.TIMERS_FIRED.inc(timers_fired)

    def measure(self, messages: int) -> None:
        """Its size, and how long it took from its start."""
        metrics.BATCH_MESSAGES.observe(messages)
        metrics.BATCH_SECONDS.observe(time.perf_counter() - self.started)


def apply_counted(engine: Engine, event: Event, out: list[SegmentChange]) -> str:
    """Apply the event; its outcome label for segments_events_total."""
    stats = engine.stats
    duplicates, late = stats.duplicates, stats.late
    engine.apply(event, out)
    return "duplicate" if stats.duplicates != duplicates else "late" if stats.late != late else "applied"


def count_members(members: Counter[str], changes: Iterable[SegmentChange]) -> None:
    """Fold changes into a partition's member counts."""
    for change in changes:
        members[change.segment] += 1 if change.change == "entered" else -1


def set_members(catalog: Catalog, partitions: Iterable[tuple[Catalog, Counter[str]]]) -> None:
    """The members gauge over the partitions (catalog, member counts) a runtime owns: every segment
    of its catalog and of theirs, and removed ones until their members have exited."""
    partitions = list(partitions)
    names = set(catalog.by_name).union(*(c.by_name.keys() | m.keys() for c, m in partitions))
    for segment in sorted(names):
        metrics.MEMBERS.labels(segment).set(sum(m[segment] for _, m in partitions))
