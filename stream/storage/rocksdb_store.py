"""A partition's customer states: RocksDB (through rocksdict) behind an in-memory write-back cache,
kept in step with a compacted changelog topic; written only after Kafka committed the transaction
(the protocol: docs/storage.md). The key layout and the packing of meta records: stream.storage.keys.
"""
from __future__ import annotations

import shutil
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from operator import itemgetter
from pathlib import Path
from typing import cast

from rocksdict import BlockBasedOptions, Options, Rdict, WriteBatch

from stream.model.state import CustomerState, dump_state, load_state
from stream.storage.erasure import DEFAULT_ERASURE_AFTER_MS, ErasureCompaction, idle_ms_of, stamp_written, wall_ms
from stream.storage.keys import (CHECKPOINT_KEY, DEFINITIONS_KEY, META, STREAM_TIME_KEY, WRITTEN_AT_KEY, Record,
                                 pack_time, stream_time_record, unpack_time)

_KEPT_META = (DEFINITIONS_KEY,)       # meta records restored as they are (besides the stream time)

def _options() -> Options:
    # raw mode: keys and values are stored as the bytes given (rocksdict would pickle otherwise)
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    table = BlockBasedOptions()
    # most gets of a new customer miss: a bloom filter answers those without reading a block
    table.set_bloom_filter(10, False)
    options.set_block_based_table_factory(table)
    options.set_keep_log_file_num(2)
    return options


def raw_items(db: Rdict, from_key: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) in key order from `from_key` on, of a database opened in raw mode, where both
    are bytes: rocksdict's types cover every mode it has (pickled keys of any type too)."""
    return cast(Iterator[tuple[bytes, bytes]], db.items(from_key=from_key))


class PartitionStore:
    """The engine's StateStore for one input partition (see stream.engine.store.StateStore).

    The cache holds at most `cache_size` customers after each commit, evicting the least recently
    used; between commits it also holds every customer read or written since (dirty ones must stay
    until committed), so its size is bounded by cache_size plus the customers of one transaction.
    Misses are not cached. A decoded state takes about 2.5 KB of memory on the synthetic
    marketplace workload (about 200 B serialized; `segments bench engine` measures both), so the
    default 50k is about 125 MB per partition.
    """

    def __init__(self, path: str | Path, cache_size: int = 50_000, erasure_after_ms: int = DEFAULT_ERASURE_AFTER_MS):
        self.path = Path(path)
        self.cache_size = cache_size
        self.erasure_after_ms = erasure_after_ms
        self.hits = self.misses = 0          # cache lookups, for the hit-ratio metric
        self._open()

    def _open(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self._db = Rdict(str(self.path), _options())
        self.erasure = ErasureCompaction(self._db, self.erasure_after_ms, str(self.path))
        self._cache: OrderedDict[str, CustomerState] = OrderedDict()
        self._dirty: set[str] = set()
        self._deleted: set[str] = set()
        self._records: list[Record] | None = None      # pending(), until the next change
        self._meta: dict[bytes, bytes] = {}             # meta records set since the last commit
        checkpoint = self._db.get(CHECKPOINT_KEY)
        self._checkpoint = None if checkpoint is None else unpack_time(checkpoint)
        stream_time = self._db.get(STREAM_TIME_KEY)
        self._committed_time = None if stream_time is None else unpack_time(stream_time)
        self._stream_time = self._committed_time

    # -- StateStore ------------------------------------------------------------------------------

    def get(self, customer_id: str) -> CustomerState | None:
        cache = self._cache
        state = cache.get(customer_id)
        if state is not None:
            cache.move_to_end(customer_id)
            self.hits += 1
            return state
        self.misses += 1
        if customer_id in self._deleted:          # RocksDB still has the committed state
            return None
        data = self._db.get(customer_id.encode())
        if data is None:
            return None
        state = cache[customer_id] = load_state(data, customer_id)
        return state

    def put(self, customer_id: str, state: CustomerState) -> None:
        self._cache[customer_id] = state
        self._dirty.add(customer_id)
        self._deleted.discard(customer_id)
        self._records = None

    def delete(self, customer_id: str) -> None:
        self._cache.pop(customer_id, None)
        self._dirty.discard(customer_id)
        self._deleted.add(customer_id)
        self._records = None

    # -- transactions ----------------------------------------------------------------------------

    def set_stream_time(self, now: int) -> None:
        if now != self._stream_time:
            self._stream_time = now
            self._records = None

    def set_meta(self, key: bytes, value: bytes) -> None:
        """A meta record (one of _KEPT_META) to commit with the next transaction, changelog included."""
        self._meta[key] = value
        self._records = None

    def meta(self, key: bytes) -> bytes | None:
        """A meta record as last set, or as committed."""
        value = self._meta.get(key)
        return value if value is not None else self._db.get(key)

    def scan(self, after: str | None, limit: int) -> Iterator[tuple[str, CustomerState]]:
        """Up to `limit` customers after `after` in key order, as they are now (the cache's state
        where it has one; an erased one is skipped). A customer read from RocksDB is not cached, so
        a walk over the whole store does not fill memory; put() what changed."""
        start = after.encode() + b"\x00" if after is not None else b""     # the next key after `after`
        cache, deleted, count = self._cache, self._deleted, 0
        for key, value in raw_items(self._db, start):
            if key[:1] == META or count >= limit:
                break
            customer_id = key.decode()
            if customer_id in deleted:
                continue
            state = cache.get(customer_id)
            count += 1
            yield customer_id, state if state is not None else load_state(value)

    def stream_time(self) -> int | None:
        """The last stream time set (or committed, or restored); None for a new partition."""
        return self._stream_time

    def idle_ms(self) -> int | None:
        """Milliseconds since the store was last known to have seen its changelog (WRITTEN_AT_KEY);
        None if it never kept the time."""
        return idle_ms_of(self._db)

    def checkpoint(self) -> int | None:
        """The changelog offset to restore from; None: the store is empty, restore from the start."""
        return self._checkpoint

    def pending(self) -> list[Record]:
        """The changelog records for everything changed since the last commit: (customer id,
        dump_state) or (customer id, None) for a tombstone, sorted by key, then the stream time if
        it moved. These exact bytes are what commit() writes locally."""
        if self._records is None:
            cache = self._cache
            records: list[Record] = [(cid.encode(), dump_state(cache[cid])) for cid in self._dirty]
            records += [(cid.encode(), None) for cid in self._deleted]
            records.sort(key=itemgetter(0))
            # (None only before a first stream time, when the committed one is None too)
            if self._stream_time is not None and self._stream_time != self._committed_time:
                records.append(stream_time_record(self._stream_time))
            records += sorted(self._meta.items())
            self._records = records
        return list(self._records)

    def commit(self, changelog_next_offset: int) -> None:
        """The transaction carrying pending() committed; `changelog_next_offset` is the offset after
        its last changelog record. Writes the changes and the checkpoint in one batch."""
        batch = WriteBatch(raw_mode=True)
        for key, value in self.pending():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        batch.put(CHECKPOINT_KEY, pack_time(changelog_next_offset))
        batch.put(WRITTEN_AT_KEY, pack_time(wall_ms()))
        self._db.write(batch)
        if self._deleted:
            self.erasure.erased()
        self._checkpoint = changelog_next_offset
        self._committed_time = self._stream_time
        self._dirty.clear()
        self._deleted.clear()
        self._meta.clear()
        self._records = None
        cache = self._cache
        while len(cache) > self.cache_size:
            cache.popitem(last=False)

    def abort(self) -> None:
        """The transaction failed: forget every uncommitted change. The engine mutated the cached
        states in place, so they are dropped and the next get re-reads RocksDB. The engine's own
        timers and clock are stale too: rebuild it from items() and stream_time()."""
        for customer_id in self._dirty:
            del self._cache[customer_id]
        self._dirty.clear()
        self._deleted.clear()
        self._meta.clear()
        self._stream_time = self._committed_time
        self._records = None

    # -- recovery --------------------------------------------------------------------------------

    def restore(self, records: Iterable[tuple[bytes, bytes | None, int]], batch_size: int = 10_000) -> None:
        """Apply changelog records (key, value, offset) in offset order, as read from checkpoint()
        to the end of the changelog partition. Records before the checkpoint are skipped, so a
        reader that starts earlier cannot move the store back. Each batch of `batch_size` records
        is written with its checkpoint, so an interrupted restore resumes where it stopped.

        A value that is not a customer state stops the restore with a ValueError naming its key and
        offset: skipping it would silently lose that customer's segment memberships. The batches
        before it stay written; the checkpoint points at the bad record.
        Other meta keys than the stream time and _KEPT_META (from a newer version) are ignored."""
        if self._dirty or self._deleted or self._meta:
            raise RuntimeError("restore() with uncommitted changes; commit or abort first")
        self._cache.clear()         # restored records supersede anything cached
        start = self._checkpoint or 0
        batch = WriteBatch(raw_mode=True)
        last = None
        stream_time = self._stream_time
        for key, value, offset in records:
            if offset < start:
                continue
            try:
                if key[:1] == META:
                    if key == STREAM_TIME_KEY:
                        if value is None:         # a tombstone: as corrupt as a short value
                            raise TypeError("object of type 'NoneType' has no len()")
                        stream_time = unpack_time(value)
                        batch.put(key, value)
                    elif key in _KEPT_META:
                        batch.put(key, value)
                elif value is None:
                    batch.delete(key)
                    self.erasure.erased()       # an erasure this store may still hold
                else:
                    key.decode()
                    load_state(value)
                    batch.put(key, value)
            except (ValueError, TypeError) as e:      # TypeError: a None stream time
                raise ValueError(f"changelog record {key!r} at offset {offset} is corrupt: {e}") from e
            last = offset
            if len(batch) >= batch_size:
                self._write_restored(batch, last + 1, stream_time)
                batch = WriteBatch(raw_mode=True)
        if last is not None:
            self._write_restored(batch, last + 1, stream_time)

    def _write_restored(self, batch: WriteBatch, checkpoint: int, stream_time: int | None) -> None:
        batch.put(CHECKPOINT_KEY, pack_time(checkpoint))
        batch.put(WRITTEN_AT_KEY, pack_time(wall_ms()))
        self._db.write(batch)
        self._checkpoint = checkpoint
        self._stream_time = self._committed_time = stream_time

    def items(self) -> Iterator[tuple[str, CustomerState]]:
        """Every committed customer, from RocksDB (to rebuild the engine's timer index)."""
        if self._dirty or self._deleted or self._meta:
            raise RuntimeError("items() reads committed state only; commit or abort first")
        return self._committed_items()

    def _committed_items(self) -> Iterator[tuple[str, CustomerState]]:
        for key, value in raw_items(self._db):
            if key[:1] == META:
                break                               # meta keys sort after every customer
            customer_id = key.decode()
            yield customer_id, load_state(value, customer_id)

    def compact_erased(self, now: float | None = None) -> bool:
        """Start compacting away erased customers' old values once due (see ErasureCompaction)."""
        return self.erasure.run_if_due(now)

    def approximate_customers(self) -> int:
        """RocksDB's own estimate of stored keys (cheap; exact counting would scan the store)."""
        return self._db.property_int_value("rocksdb.estimate-num-keys") or 0

    def wipe(self) -> None:
        """Delete the store and start empty (checkpoint None): for a checkpoint that cannot be
        trusted, e.g. beyond the changelog's end after the topic was recreated."""
        self.erasure.wait()
        self._db.close()
        shutil.rmtree(self.path)
        self._open()

    def close(self) -> None:
        # Its owner has read (written) every changelog record of the partition up to now.
        stamp_written(self._db)
        self.erasure.wait()
        self._db.close()
