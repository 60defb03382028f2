"""The storage layout every partition store shares: reserved meta keys and how their values are
packed. Plain bytes, no RocksDB, so the changelog's readers and writers (backfill, definitions, the
Faust runtime, committed reads) need not import the database binding for a constant.

Keys are customer ids in UTF-8. Reserved meta keys start with 0xFF, a byte that never occurs in
UTF-8, so they cannot collide with any customer id (a 0x00 prefix could: the event contract accepts
"\\u0000" in ids). They also sort after every customer key, so a walk in key order can stop at the
first meta key.
  STREAM_TIME_KEY  the partition's stream time, locally and in the changelog (8-byte big-endian
                   signed microseconds), so a restored partition resumes its clock;
  CHECKPOINT_KEY   local only, never produced: the next changelog offset to read on restore;
  DEFINITIONS_KEY  the segment definitions the partition's state was evaluated under, and the
                   progress of a re-evaluation (stream.definitions.resolution.Running), in the changelog too;
  WRITTEN_AT_KEY   local only: the wall-clock time (ms) until which the store is known to have
                   seen its changelog (its last commit, restore batch or close), so a store too old
                   to trust with erasures (the changelog's tombstones may be gone) is rebuilt
                   rather than caught up.
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
