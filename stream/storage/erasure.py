"""Erasure reaching a RocksDB partition database's files: the compaction that rewrites deleted
customers' old values away, and the written-at stamp that tells how long a database has been idle.
Both runtimes use it (stream.storage.rocksdb_store for the native worker, stream.faust_runtime.app
for the Faust table's partition databases)."""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from rocksdict import AccessType, BottommostLevelCompaction, CompactOptions, Options, Rdict

from stream.model.time import DAY_MS
from stream.storage.keys import WRITTEN_AT_KEY, pack_time, unpack_time

log = logging.getLogger("segments.store")

DEFAULT_ERASURE_AFTER_MS = DAY_MS     # the default of WorkerConfig.erasure_max_lag_ms


def wall_ms() -> int:
    """The wall clock in milliseconds, as WRITTEN_AT_KEY holds it."""
    return int(time.time() * 1000)


def stamp_written(db: Rdict) -> None:
    """WRITTEN_AT_KEY: the database has seen its changelog up to now (PartitionStore, and the
    Faust runtime's partition databases)."""
    db.put(WRITTEN_AT_KEY, pack_time(wall_ms()))


def idle_ms_of(db: Rdict) -> int | None:
    """Milliseconds since `db` was stamped written; None if it never was."""
    written = db.get(WRITTEN_AT_KEY)
    return None if written is None else wall_ms() - unpack_time(written)


def idle_ms_at(path: Path) -> int | None:
    """As PartitionStore.idle_ms, for a database not open (read only, no lock taken)."""
    db = Rdict(str(path), Options(raw_mode=True), access_type=AccessType.read_only())
    try:
        return idle_ms_of(db)
    finally:
        db.close()


class ErasureCompaction:
    """Erasure reaching a RocksDB database's files. A delete writes a tombstone; the customer's
    old values stay in the SST files (and in the write-ahead log until the memtable is flushed)
    until a compaction rewrites them, which RocksDB alone may put off indefinitely. So once a
    delete is committed, the whole database is compacted within `after_ms`, down to the bottom
    level (where the tombstones go too). One compaction per period, however many erasures: its cost
    is a rewrite of the database, not one per erased customer. A database opened with deletions
    not yet compacted (the process stopped before) is compacted at the first check.

    The compaction runs in a thread of its own (rocksdict releases the GIL meanwhile, and RocksDB
    takes reads and writes during it), so the partition is not stalled for the seconds a large
    database takes. Both runtimes use it: PartitionStore for the native worker, stream.faust_runtime.app
    for the Faust table's partition databases. Their loops call run_if_due() every few seconds."""

    def __init__(self, db: Rdict, after_ms: int, name: str):
        self.db, self.name = db, name         # name: for the log
        self.after = after_ms / 1000
        self.due: float | None = time.monotonic() if _holds_deletions(db) else None
        self._thread: threading.Thread | None = None

    def erased(self) -> None:
        """A committed write deleted keys: compact within the period (from the first of them)."""
        if self.due is None:
            self.due = time.monotonic() + self.after

    def run_if_due(self, now: float | None = None) -> bool:
        """Start the compaction if a deletion has waited its period (`now`: monotonic seconds) and
        none is running; whether it started."""
        if self.due is None or (time.monotonic() if now is None else now) < self.due or self.running():
            return False
        self.due = None              # deletions from now on wait for the next one
        self._thread = threading.Thread(target=self._compact, name=f"compact {self.name}", daemon=True)
        self._thread.start()
        return True

    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self) -> None:
        """Until a running compaction ends: before the database is closed."""
        if self._thread is not None:
            self._thread.join()

    def _compact(self) -> None:
        started = time.monotonic()
        options = CompactOptions()
        # Force the bottom level too: otherwise a database whose files all sit in level 0 can be
        # left as it is, old values and tombstones included.
        options.set_bottommost_level_compaction(BottommostLevelCompaction.force())
        try:
            self.db.compact_range(None, None, options)
        except Exception:          # logged, and tried again next period
            log.exception("%s: compaction for erasure failed; trying again in %.0f s", self.name, self.after)
            self.erased()
            return
        log.info("%s: compacted, erased customers' values are gone from its files (%.2f s)",
                 self.name, time.monotonic() - started)


def _holds_deletions(db: Rdict) -> bool:
    """Tombstones in the memtables or in any SST file (RocksDB's own counts; no scan)."""
    in_memory = sum(db.property_int_value(f"rocksdb.num-deletes-{table}") or 0
                    for table in ("active-mem-table", "imm-mem-tables"))
    tables = db.property_value("rocksdb.aggregated-table-properties") or ""
    in_files = next((int(part.split("=")[1]) for part in tables.split(";")
                     if part.strip().startswith("# deletions=")), 0)
    return in_memory + in_files > 0
