"""The native worker's input partition p: its RocksDB store (stream.storage.rocksdb_store), the engine
over its committed state, its keyed topic-partitions for the idle clock, and what the current batch
produced; reset to the committed state when a transaction fails."""
from __future__ import annotations

from stream.engine.core import Engine
from stream.rules.catalog import Catalog
from stream.runtime.idle_clock import CatchUp
from stream.runtime.partition import EnginePartition
from stream.storage.rocksdb_store import PartitionStore


class PartitionTask(EnginePartition):
    """Input partition p: its store, its engine, and what the current batch produced."""

    def __init__(self, partition: int, store: PartitionStore, catalog: Catalog):
        super().__init__(partition, catalog)
        self.store = store
        self.catch_up = CatchUp()         # its keyed topic-partitions (the idle clock's rule)
        self.hits_reported = self.misses_reported = 0
        self.engine = self._fresh_engine()

    def _fresh_engine(self) -> Engine:
        """An engine over the committed state, its members counted (EnginePartition.restored_engine)."""
        return self.restored_engine(self.store, self.store.items(), self.store.stream_time())

    def reset(self) -> None:
        """The transaction failed: back to the last committed state."""
        self.store.abort()
        self.changes.clear()
        self.engine = self._fresh_engine()
        self.catch_up.rewind()            # its input is read again from the committed offsets
