"""The Faust runtime's state: a Faust table (faust.stores.rocksdb, one RocksDB database per partition)
as the engine's StateStore for one partition (BatchStore, written back once per batch, changelog
first), and the input partition's engine over it (Partition), restored from the partition's database.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from faust.types import TP

from stream.model.state import CustomerState, dump_state, load_state
from stream.model.time import EARLIEST
from stream.rules.catalog import Catalog
from stream.runtime.partition import EnginePartition
from stream.runtime.records import Record
from stream.storage.keys import META, STREAM_TIME_KEY, stream_time_record, unpack_time
from stream.storage.erasure import ErasureCompaction, stamp_written
from stream.storage.rocksdb_store import raw_items

# Faust's own key in every partition's RocksDB database: the changelog offset it holds up to.
_FAUST_OFFSET_KEY = b"__faust\0offset__"


class TableData(Protocol):
    """A Faust table's RocksDB store (faust.stores.rocksdb.Store, raw bytes) as this runtime uses it:
    not in faust's types, which give a table's data no type of its own."""

    # A rocksdict Rdict in raw mode: a type only stream.storage may name (tests/test_layers.py), so
    # what this runtime does with it goes through stream.storage (raw_items, ErasureCompaction, stamp_written).
    def _db_for_partition(self, partition: int) -> Any: ...

    def get(self, key: bytes) -> bytes | None: ...

    def __setitem__(self, key: bytes, value: bytes) -> None: ...

    def __delitem__(self, key: bytes) -> None: ...

    def set_persisted_offset(self, tp: TP, offset: int) -> None: ...


class FaustTable(Protocol):
    """A Faust table over its RocksDB store: the parts of it this runtime uses (faust's TableT has
    neither)."""

    @property
    def data(self) -> TableData: ...

    @property
    def changelog_topic_name(self) -> str: ...


class BatchStore:
    """The engine's StateStore for one partition: the Faust table behind a write-back dict, so a
    batch writes each customer it touched once, however many of its events it applied. Reads and
    writes go to the table's store, under `_current` for this partition."""

    def __init__(self, table: FaustTable, partition: int, erasure_after_ms: int):
        self.table = table
        self.partition = partition
        self.dirty: dict[str, CustomerState | None] = {}     # None: erased
        self.dirty_meta: dict[bytes, bytes] = {}
        self.saved_time: int | None = None
        self._written: list[tuple[bytes, bytes | None]] = []
        # Faust's RocksDB store keeps one database per partition; reading it is the only way to
        # see exactly partition p's customers (iterating the table spans every partition).
        self.db = table.data._db_for_partition(partition)
        # Faust's own restore deletes too: a database holding deletions is compacted at the first check.
        self.erasure = ErasureCompaction(self.db, erasure_after_ms, f"faust table partition {partition}")

    def get(self, customer_id: str) -> CustomerState | None:
        if customer_id in self.dirty:
            return self.dirty[customer_id]
        data = self.table.data.get(customer_id.encode())
        return None if data is None else load_state(data, customer_id)

    def put(self, customer_id: str, state: CustomerState) -> None:
        self.dirty[customer_id] = state

    def delete(self, customer_id: str) -> None:
        self.dirty[customer_id] = None

    def meta(self, key: bytes) -> bytes | None:
        """A reserved entry (stream.storage.keys.META) as last set, or as stored."""
        value = self.dirty_meta.get(key)
        return value if value is not None else self.db.get(key)

    def set_meta(self, key: bytes, value: bytes) -> None:
        """A reserved entry to write with the next batch of this partition, changelog first."""
        self.dirty_meta[key] = value

    def scan(self, after: str | None, limit: int) -> Iterator[tuple[str, CustomerState]]:
        """Up to `limit` customers after `after` in key order, as they are now (the batch's state
        where it has one; an erased one is skipped)."""
        start = after.encode() + b"\x00" if after is not None else b""     # the next key after `after`
        dirty, count = self.dirty, 0
        for key, value in raw_items(self.db, start):
            if key[:1] == META or count >= limit:
                break
            if key == _FAUST_OFFSET_KEY:
                continue
            customer_id = key.decode()
            state = dirty[customer_id] if customer_id in dirty else load_state(value, customer_id)
            if state is None:
                continue
            count += 1
            yield customer_id, state

    def unsaved(self) -> bool:
        """Whether something waits for this partition's next batch to be written."""
        return bool(self.dirty or self.dirty_meta)

    def changelog(self, now: int) -> tuple[list[Record], Record | None]:
        """The batch's changelog records: one per touched customer (None, a tombstone, if erased)
        and per reserved entry set, and, apart, the stream time's, which must be sent alone after
        the others (see docs/faust-runtime.md); None if nothing changed."""
        topic, partition = self.table.changelog_topic_name, self.partition
        records: list[Record] = [(topic, customer_id.encode(), None if state is None else dump_state(state),
                                  partition, None) for customer_id, state in self.dirty.items()]
        records += [(topic, key, value, partition, None) for key, value in self.dirty_meta.items()]
        self._written = [(key, value) for _, key, value, _, _ in records if key is not None]
        if not records and (now == self.saved_time or now < EARLIEST):   # the latter: no event yet
            return records, None
        # The key cannot collide with a customer id: 0xFF never occurs in UTF-8.
        key, value = stream_time_record(now)
        self._written.append((key, value))
        self.saved_time = now
        return records, (topic, key, value, partition, None)

    def write_local(self) -> None:
        """Write to the local store what changelog() returned, once the broker has it: a store
        ahead of its changelog would keep, after a crash, state that a restore elsewhere never
        sees (the re-read events are then skipped as duplicates, so it would never be sent)."""
        data = self.table.data
        for key, value in self._written:
            if value is None:
                del data[key]
                self.erasure.erased()
            else:
                data[key] = value
        self._written = []
        self.dirty.clear()
        self.dirty_meta.clear()
        stamp_written(self.erasure.db)          # seen its changelog up to now (outlived_tombstones)


class Partition(EnginePartition):
    """Input partition p: its engine over the table's partition p, and what the current batch
    produced (a stream.definitions.live.LivePartition)."""

    def __init__(self, number: int, table: FaustTable, catalog: Catalog, erasure_after_ms: int):
        super().__init__(number, catalog)
        self.store = BatchStore(table, number, erasure_after_ms)
        stream_time = self.store.db.get(STREAM_TIME_KEY)
        if stream_time is not None:
            self.store.saved_time = unpack_time(stream_time)
        self.engine = self.restored_engine(self.store, self._states(), self.store.saved_time)

    def _states(self) -> Iterator[tuple[str, CustomerState]]:
        for key, value in raw_items(self.store.db):
            if key == _FAUST_OFFSET_KEY or key.startswith(META):
                continue
            customer_id = key.decode()
            yield customer_id, load_state(value, customer_id)
