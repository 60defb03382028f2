"""An input partition's engine as both runtimes keep it (the native worker's PartitionTask, the Faust
runtime's Partition): its number, definitions and engine, the changes of the batch under way and its
member counts per segment. Restoring the engine counts the members in the same pass over the stored
customers; the runtimes add their store and how they read it.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator

from stream.engine.core import Engine
from stream.engine.store import StateStore
from stream.model.changes import SegmentChange
from stream.model.state import CustomerState
from stream.rules.catalog import Catalog
from stream.runtime.batch import count_members


class EnginePartition:
    """What both runtimes' partitions share (with their store, a stream.definitions.live.LivePartition)."""

    engine: Engine

    def __init__(self, partition: int, catalog: Catalog):
        self.partition = partition
        self.catalog = catalog
        self.changes: list[SegmentChange] = []
        self.members: Counter[str] = Counter()

    def restored_engine(self, store: StateStore, states: Iterable[tuple[str, CustomerState]],
                        now: int | None) -> Engine:
        """An engine over `store`, its timers and stream time restored from `states` (the stored
        customers). The same pass counts members per segment, so the members gauge is right from
        the start, not counted since the worker started."""
        members: Counter[str] = Counter()

        def counted() -> Iterator[tuple[str, CustomerState]]:
            for customer_id, state in states:
                members.update(state.member.keys())
                yield customer_id, state
        engine = Engine(self.catalog, store)
        engine.restore(counted(), now=now)
        self.members = members
        return engine

    def switch(self, catalog: Catalog) -> None:
        """Run these definitions from now on (stream.definitions.live)."""
        self.catalog = catalog
        self.engine.redefine(catalog)

    def count_members(self) -> None:
        """Fold the batch's changes into the member counts (before they are cleared)."""
        count_members(self.members, self.changes)
