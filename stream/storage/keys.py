"""The storage layout every partition store shares: reserved meta keys (0xFF-prefixed, sorting
after every customer id) and how their values are packed. Plain bytes, no RocksDB, so the
changelog's readers and writers need not import the database binding for a constant (the keys and
what each holds: docs/storage.md).
"""
from __future__ import annotations

META = b"\xff"
STREAM_TIME_KEY = META + b"meta:stream_time"
CHECKPOINT_KEY = META + b"meta:changelog_checkpoint"
DEFINITIONS_KEY = META + b"meta:definitions"
WRITTEN_AT_KEY = META + b"meta:written_at"

# A changelog record: (key, value), a None value being a tombstone.
Record = tuple[bytes, bytes | None]


def pack_time(value: int) -> bytes:
    """Stream times and offsets as stored in meta records: 8 bytes, big-endian, signed."""
    return value.to_bytes(8, "big", signed=True)


def unpack_time(data: bytes) -> int:
    if len(data) != 8:
        raise ValueError(f"expected 8 bytes, got {len(data)}")
    return int.from_bytes(data, "big", signed=True)


def stream_time_record(now: int) -> Record:
    """The changelog record that carries a partition's stream time (also written by a backfill
    that hands its state to the workers)."""
    return STREAM_TIME_KEY, pack_time(now)
