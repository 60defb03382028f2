"""The idle clock both runtimes run: an idle partition's stream time follows the wall clock, and
"idle" means caught up (CatchUp) with no input for the idle threshold."""
from __future__ import annotations

import time
from collections.abc import Iterable

from stream.engine.core import Engine
from stream.model.changes import SegmentChange
from stream.model.time import SECOND

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
