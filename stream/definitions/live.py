"""Segment definitions changed while a runtime runs (see stream.definitions.resolution), over a
runtime-neutral partition (LivePartition) and feed (Feed; the Kafka one is
stream.kafka.definitions_feed.DefinitionsFeed).

LiveDefinitions gives each partition the definitions it runs: on assignment (restore, a file edited
between restarts, a change missed while stopped) and whenever the topic changes. A change switches
the partition's engine at once and starts a pass over its stored customers, run a chunk per batch
in the runtime's commit like any batch: the moves, the changelog records of changed customers, and
the pass's progress (the partition's Running record, under DEFINITIONS_KEY). A worker killed
mid-pass resumes from its last committed chunk; moves already committed are not repeated (their
customers' memberships are already updated), none is lost.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Protocol
from collections.abc import Iterable, Iterator

from stream.definitions.resolution import (Rejection, Resolution, Running, TopicRecord, decode_running, encode_running,
                                           redefine, resolve, still_incomplete)
from stream.engine.core import Engine
from stream.engine.redefinition import Redefinition
from stream.model.changes import SegmentChange
from stream.model.state import CustomerState
from stream.rules.catalog import TRAIT_PREFIX, Catalog
from stream.rules.rfm import RFM_KEY
from stream.rules.compiler import valid_name
from stream.rules.trait_grammar import valid_trait_name
from stream.runtime import metrics
from stream.storage.keys import DEFINITIONS_KEY

log = logging.getLogger("segments.definitions")

_CHECK_EVERY = 1000       # customers re-evaluated between looks at the clock


class Feed(Protocol):
    """The definitions topic as read so far: the latest record per name."""

    @property
    def topic(self) -> str: ...

    @property
    def records(self) -> dict[str, TopicRecord]: ...

    def poll(self) -> bool:
        """Take what arrived since, without waiting; True when any record did."""
        ...

    def close(self) -> None:
        """Stop following it (the runtime that opened it closes it)."""
        ...


class DefinitionsStore(Protocol):
    """What a partition's store keeps for its definitions: the Running record, committed with the
    partition's state, and its customers to walk."""

    def meta(self, key: bytes) -> bytes | None: ...

    def set_meta(self, key: bytes, value: bytes) -> None: ...

    def scan(self, after: str | None, limit: int) -> Iterator[tuple[str, CustomerState]]:
        """Up to `limit` customers after `after` in key order, as they are now."""
        ...


class LivePartition(Protocol):
    """An input partition as LiveDefinitions sees it, in either runtime: its number, engine and
    store, the changes of the batch under way, and how it switches to other definitions."""

    @property
    def partition(self) -> int: ...

    @property
    def engine(self) -> Engine: ...

    @property
    def store(self) -> DefinitionsStore: ...

    @property
    def changes(self) -> list[SegmentChange]: ...

    def switch(self, catalog: Catalog) -> None:
        """Run `catalog` from now on (its engine redefined)."""
        ...


def _labelled(name: str) -> bool:
    """Whether a record's key is a segment's, a trait's (trait.<name>) or the rfm section's name,
    fit for a label."""
    if name == RFM_KEY:
        return True
    trait = name.removeprefix(TRAIT_PREFIX)
    return valid_trait_name(trait) if trait != name else valid_name(name)


class LiveDefinitions:
    """Each partition's definitions, kept up to date; what a runtime calls around its batches."""

    def __init__(self, file: dict[str, dict[str, Any]], feed: Feed | None,
                 chunk: int = 20_000, chunk_seconds: float = 0.5):
        self.file = file
        self.feed = feed
        self.chunk, self.chunk_seconds = chunk, chunk_seconds
        self.running: dict[int, Running] = {}
        self.rejected: dict[str, Rejection] = {}
        self._counted: set[tuple[str, str]] = set()      # rejections already counted in the metric
        self._reevaluated = 0          # customers the chunks re-evaluated since take_reevaluated()

    @property
    def topic(self) -> dict[str, TopicRecord]:
        return self.feed.records if self.feed is not None else {}

    def resolve(self, running: Running | None) -> Resolution:
        return resolve(self.file, self.topic, running.definitions if running is not None else None)

    def attach(self, task: LivePartition) -> None:
        """Bring a partition (just assigned, or reset to its committed state) to the current
        definitions: what its store says it ran, diffed against what runs now."""
        raw = task.store.meta(DEFINITIONS_KEY)
        running = self.assumed() if raw is None else decode_running(raw)
        self._move(task, running, first=raw is None)

    def assumed(self) -> Running:
        """What a store without a definitions record was evaluated under: a new store, or one
        written before definitions could change while running, so the segments file (the only
        source then). A backfill resolves against it too, as a fresh worker would."""
        return Running(resolve(self.file, {}, None).definitions)

    def refresh(self, tasks: Iterable[LivePartition]) -> None:
        """After the topic changed: every partition moves to the new definitions."""
        for task in tasks:
            self._move(task, self.running[task.partition])

    def _move(self, task: LivePartition, running: Running, first: bool = False) -> None:
        resolution = self.resolve(running)
        self._report(resolution)
        moved = redefine(running, resolution, task.engine.now)
        task.switch(resolution.catalog)
        self.running[task.partition] = moved
        if moved is not running or first:
            task.store.set_meta(DEFINITIONS_KEY, encode_running(moved))
        if moved.redefine and moved is not running:
            log.info("partition %d: re-evaluating %s over its stored customers (definitions changed)",
                     task.partition, ", ".join(f"{n} (removed)" if v is not None else
                                               f"{n} v{resolution.definitions[n].get('version', 1)}"
                                               for n, v in moved.redefine.items()))
            for name, flags in moved.incomplete.items():
                for flag in flags:
                    log.warning("segment %s: needs a backfill: %s", name, flag.describe())
        self._set_gauges()

    def follow(self, tasks: Iterable[LivePartition]) -> bool:
        """Follow the topic (without waiting): on a change every partition moves to the new
        definitions. Called before a batch is applied, never after: a customer the batch creates is
        then evaluated under the definitions its pass runs to, as the pass reads committed customers
        only (a customer created under the old ones and not committed yet would never be reached)."""
        if self.feed is not None and self.feed.poll():
            self.refresh(tasks)
            return True
        return False

    def step(self, tasks: Iterable[LivePartition]) -> bool:
        """follow() then work(), for a caller with no batch in between (tests, tools)."""
        tasks = list(tasks)
        self.follow(tasks)
        return self.work(tasks)

    def work(self, tasks: Iterable[LivePartition]) -> bool:
        """A chunk of each partition's pass, bounded in customers and, for all the partitions
        together, in time: the commit under way stays short (its input waits for it) and the
        partitions keep polling within max.poll.interval.ms. Past the time, each partition still
        takes a small chunk (_CHECK_EVERY customers), so every pass moves. True when a chunk ran
        (its progress must be committed)."""
        ran = False
        deadline = time.perf_counter() + self.chunk_seconds
        for task in tasks:
            running = self.running.get(task.partition)
            if running is None:
                continue
            if running.redefine:
                self._chunk(task, running, deadline)
                ran = True
            elif running.incomplete and still_incomplete(running, task.engine.now) != running.incomplete:
                # a window has passed since the change: that segment's answer is complete now
                done = Running(running.definitions, {}, None, still_incomplete(running, task.engine.now))
                self.running[task.partition] = done
                task.store.set_meta(DEFINITIONS_KEY, encode_running(done))
                self._set_gauges()
                ran = True
        return ran

    def take_reevaluated(self) -> int:
        """The customers re-evaluated since the last call. The runtime counts them in
        segments_reevaluated_customers once their commit is in, so a commit that fails, whose
        chunks run again, does not count them twice."""
        taken, self._reevaluated = self._reevaluated, 0
        return taken

    def reevaluating(self, partition: int) -> bool:
        """Whether the partition has a pass over its stored customers under way."""
        running = self.running.get(partition)
        return running is not None and bool(running.redefine)

    def _chunk(self, task: LivePartition, running: Running, deadline: float) -> None:
        engine, store = task.engine, task.store
        redefinition = Redefinition(running.redefine)
        after, seen, out_of_time = running.after, 0, False
        for customer_id, state in store.scan(after, self.chunk):
            engine.reevaluate(customer_id, state, redefinition, task.changes)
            after, seen = customer_id, seen + 1
            if not seen % _CHECK_EVERY and time.perf_counter() > deadline:
                out_of_time = True
                break
        self._reevaluated += seen
        if seen < self.chunk and not out_of_time:          # the walk reached the end of the store
            done = Running(running.definitions, {}, None, still_incomplete(running, engine.now))
            log.info("partition %d: re-evaluation of %s done", task.partition, ", ".join(running.redefine))
        else:
            done = Running(running.definitions, running.redefine, after, running.incomplete)
        self.running[task.partition] = done
        store.set_meta(DEFINITIONS_KEY, encode_running(done))
        self._set_gauges()

    def forget(self, partition: int) -> None:
        self.running.pop(partition, None)
        self._set_gauges()

    def _report(self, resolution: Resolution) -> None:
        for name, rejection in resolution.rejected.items():
            key = (name, rejection.source)
            if key not in self._counted:
                self._counted.add(key)
                # A record's key is anyone's text: a label (and a log line) only as long as a name is
                metrics.DEFINITIONS_REJECTED.labels(name if _labelled(name) else "(invalid name)").inc()
                log.error("segment %.80s: definition from %s rejected, the previous one keeps running: %s",
                          name, rejection.source, "; ".join(rejection.problems))
        self.rejected = dict(resolution.rejected)

    def _set_gauges(self) -> None:
        metrics.REEVALUATIONS_RUNNING.set(sum(1 for r in self.running.values() if r.redefine))
        versions: dict[str, float] = {}
        incomplete: set[str] = set()
        for running in self.running.values():
            for name, definition in running.definitions.items():
                versions[name] = max(versions.get(name, 0), definition.get("version", 1))
            incomplete |= running.incomplete.keys()
        metrics.set_labelled(metrics.DEFINITION_VERSION, versions)
        metrics.set_labelled(metrics.DEFINITION_INCOMPLETE, {name: 1 for name in incomplete})

    def describe(self) -> dict[str, Any]:
        """What GET /definitions answers: per segment the running version and where it came from,
        rejected candidates with their reasons, segments needing a backfill, passes under way."""
        segments: dict[str, Any] = {}
        # A copy first: the HTTP server's thread asks while the loop switches partitions.
        for partition, running in sorted(dict(self.running).items()):
            resolution_sources = self.resolve(running).sources
            for name, definition in running.definitions.items():
                entry = segments.setdefault(name, {"version": definition.get("version", 1),
                                                   "source": resolution_sources.get(name, "running"),
                                                   "definition": definition, "partitions": [],
                                                   "reevaluating_partitions": [], "needs_backfill": []})
                entry["partitions"].append(partition)
                if name in running.redefine:
                    entry["reevaluating_partitions"].append(partition)
                for flag in running.incomplete.get(name, []):
                    described = flag.describe()
                    if described not in entry["needs_backfill"]:
                        entry["needs_backfill"].append(described)
        return {"segments": segments, "rejected": [r.describe() for r in self.rejected.values()],
                "topic": self.feed.topic if self.feed is not None else None}
