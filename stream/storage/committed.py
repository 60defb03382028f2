"""Read the worker's partition stores from outside the worker loop: what each partition committed,
through RocksDB secondary instances that take no lock (docs/storage.md). `segments members`,
`segments explain` and the worker's HTTP routes read here; every answer is as of each partition's
last committed batch.
"""
from __future__ import annotations

import heapq
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from rocksdict import AccessType, Options, Rdict

from stream.errors import SegmentsError
from stream.model.state import CustomerState, load_state
from stream.model.time import BEFORE_TIME
from stream.storage.keys import META, STREAM_TIME_KEY, unpack_time
from stream.storage.rocksdb_store import raw_items

_PARTITION_DIR = re.compile(r"p(\d+)")


class NoStores(SegmentsError, LookupError):
    """No partition store where the settings point."""


def store_root(state_dir: Path, group_id: str) -> Path:
    return Path(state_dir) / group_id


def partition_paths(state_dir: Path, group_id: str) -> dict[int, Path]:
    """Partition number -> store directory, for every store that RocksDB wrote (has CURRENT)."""
    root = store_root(state_dir, group_id)
    found = {}
    if root.is_dir():
        for child in root.iterdir():
            match = _PARTITION_DIR.fullmatch(child.name)
            if match and (child / "CURRENT").is_file():
                found[int(match.group(1))] = child
    return dict(sorted(found.items()))


@dataclass
class Partition:
    number: int
    db: Rdict
    # As of its last committed batch; None: no event time yet (nothing committed, or only batches
    # without an event: a partition's clock starts at BEFORE_TIME, which no instant format can write).
    stream_time: int | None

    def approximate_customers(self) -> int:
        """RocksDB's own estimate of the stored keys (cheap; counting would read the store)."""
        return self.db.property_int_value("rocksdb.estimate-num-keys") or 0

    def meta(self, key: bytes) -> bytes | None:
        """One of the partition's meta records (stream.storage.keys), as committed."""
        value = self.db.get(key)
        return None if value is None else bytes(value)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """(key, stored state) of every customer, in key order."""
        for key, value in raw_items(self.db):
            if key[:1] == META:
                break                               # meta keys sort after every customer
            yield key, value


class CommittedStores:
    """Secondary instances of some partition stores; a context manager (closes and cleans up)."""

    def __init__(self, state_dir: Path, group_id: str, only: Iterable[int] | None = None):
        paths = partition_paths(state_dir, group_id)
        if only is not None:
            wanted = set(only)
            paths = {n: p for n, p in paths.items() if n in wanted}
        if not paths:
            raise NoStores(f"no partition stores under {store_root(state_dir, group_id)} "
                           f"(from the state dir and group id settings)")
        self._scratch = Path(tempfile.mkdtemp(prefix="segments-read-"))
        self.partitions: list[Partition] = []
        try:
            for number, path in paths.items():
                db = Rdict(str(path), Options(raw_mode=True),
                           access_type=AccessType.secondary(str(self._scratch / f"p{number}")))
                time = db.get(STREAM_TIME_KEY)
                now = None if time is None else unpack_time(time)
                self.partitions.append(Partition(number, db, None if now == BEFORE_TIME else now))
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> CommittedStores:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for partition in self.partitions:
            partition.db.close()
        self.partitions = []
        shutil.rmtree(self._scratch, ignore_errors=True)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every stored customer of every partition, merged into one key order (the bytes of the
        UTF-8 ids), so the order does not depend on how customers are partitioned."""
        return heapq.merge(*(p.items() for p in self.partitions))

    def find(self, customer_id: str) -> tuple[Partition, CustomerState] | None:
        """The customer's committed state and its partition. Stores of partitions this worker no
        longer owns may be stale copies: of several, the one with the latest stream time wins."""
        key = customer_id.encode()
        found = None
        for partition in self.partitions:
            data = partition.db.get(key)
            if data is not None and (found is None or (partition.stream_time or 0) > (found[0].stream_time or 0)):
                found = partition, data
        return None if found is None else (found[0], load_state(found[1], customer_id))
