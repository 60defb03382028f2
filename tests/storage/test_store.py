"""PartitionStore: the engine over RocksDB + write-back cache + changelog gives exactly the changes
of the in-memory engine, through commits, aborts, crashes, lost disks and restores.

A worker is simulated without Kafka: every `every` events it sets the stream time, "produces"
pending() to an in-memory changelog (offsets = list positions) and commits the store. Changes of a
batch count as published only once its commit happened (they share the Kafka transaction).
"""
from __future__ import annotations

import json
import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.model.changes import SegmentChange, encode_change
from stream.engine.core import Engine
from stream.model.decoding import Decoder
from stream.model.events import DeadLetter, Event
from stream.rules.catalog import load_catalog
from stream.model.buckets import customer_hash
from stream.model.state import CustomerState, dump_state
from stream.storage.keys import CHECKPOINT_KEY, STREAM_TIME_KEY
from stream.storage.rocksdb_store import PartitionStore
from stream.tools.synth import shopper_events
from stream.model.time import AFTER_TIME, BEFORE_TIME, DAY, from_datetime

CATALOG = load_catalog()
_decode = Decoder().decode


def decode(raw: bytes) -> Event:
    event = _decode(raw)
    assert not isinstance(event, DeadLetter), event
    return event


def history(seed: int, customers: int = 200, events: int = 3000) -> list[Event]:
    """Synthetic shoppers, plus what synth does not make: re-sent events (a recent one every 97th,
    caught by the de-duplication memory kept in state; an old one every 89th, applied late) and an
    erasure every 211th (tombstones)."""
    out = []
    for i, raw in enumerate(shopper_events(customers=customers, events=events, seed=seed), 1):
        event = decode(raw)
        out.append(event)
        if i % 97 == 0:
            out.append(out[-5])
        if i % 89 == 0:
            out.append(out[i // 2])
        if i % 211 == 0:
            out.append(decode(json.dumps({
                "type": "customer_erased", "event_id": f"erase-{i}", "customer_id": event.customer_id,
                "occurred_at": event.occurred_at.isoformat()}).encode()))
    return out


def encoded(changes: list[SegmentChange]) -> list[bytes]:
    return [encode_change(c) for c in changes]


def reference(events: list[Event], until: int) -> list[bytes]:
    engine, out = Engine(CATALOG), []
    for event in events:
        engine.apply(event, out)
    engine.advance(until, out)
    return encoded(out)


def end_of(events: list[Event]) -> int:
    return max(from_datetime(e.occurred_at) for e in events) + 60 * DAY


class Changelog:
    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes | None, int]] = []

    def produce(self, records: list[tuple[bytes, bytes | None]]) -> int:
        for key, value in records:
            self.records.append((key, value, len(self.records)))
        return len(self.records)          # the offset after the last record produced

    def compacted(self, drop_tombstones: bool = False) -> list[tuple[bytes, bytes | None, int]]:
        """The last record per key in offset order, as log compaction leaves it (and, once
        delete.retention.ms passed, without tombstones)."""
        last = {record[0]: record for record in self.records}
        return sorted((r for r in last.values() if not (drop_tombstones and r[1] is None)),
                      key=lambda r: r[2])


class Worker:
    """The Kafka worker's loop around one partition, minus Kafka."""

    def __init__(self, store: PartitionStore, changelog: Changelog, every: int):
        self.store, self.changelog, self.every = store, changelog, every
        self.engine = Engine(CATALOG, store)
        self.engine.restore(store.items(), now=store.stream_time())
        self.published: list[SegmentChange] = []
        self._batch: list[SegmentChange] = []
        self._count = 0

    def apply(self, events: list[Event]) -> None:
        for event in events:
            self.engine.apply(event, self._batch)
            self._count += 1
            if self._count % self.every == 0:
                self.commit()

    def advance(self, until: int) -> None:
        self.engine.advance(until, self._batch)
        self.commit()

    def commit(self) -> None:
        self.store.set_stream_time(self.engine.now)
        self.store.commit(self.changelog.produce(self.store.pending()))
        self.published += self._batch
        self._batch = []


def stored(store: PartitionStore) -> dict[str, bytes]:
    return {cid: dump_state(state) for cid, state in store.items()}


# ------------------------------------------------------------------------------------------------
# the engine over a PartitionStore equals the engine over a MemoryStore

@pytest.mark.parametrize("seed,every,cache_size", [(1, 1, 200_000), (2, 97, 200_000), (3, 500, 10)])
def test_same_changes_as_memory_store(tmp_path, seed, every, cache_size):
    events = history(seed)
    until = end_of(events)
    store = PartitionStore(tmp_path / "p0", cache_size=cache_size)
    worker = Worker(store, Changelog(), every)
    worker.apply(events)
    worker.advance(until)
    assert encoded(worker.published) == reference(events, until)

    memory = Engine(CATALOG)
    for event in events:
        memory.apply(event)
    memory.advance(until)
    assert stored(store) == {cid: dump_state(s) for cid, s in sorted(memory.store.items())}
    assert store.stream_time() == until


def test_cache_stays_bounded_and_results_identical(tmp_path):
    events = history(4)
    until = end_of(events)
    store = PartitionStore(tmp_path / "p0", cache_size=10)
    worker = Worker(store, Changelog(), every=10**9)      # committed by hand below
    for start in range(0, len(events), 50):
        batch = events[start:start + 50]
        worker.apply(batch)
        # between commits: the bound plus the customers this batch read or wrote (events and
        # timers); after a commit: the bound
        touched = {e.customer_id for e in batch} | {k.decode() for k, _ in store.pending() if k != STREAM_TIME_KEY}
        assert len(store._cache) <= 10 + len(touched)
        worker.commit()
        assert len(store._cache) <= 10
    worker.advance(until)
    assert len({e.customer_id for e in events}) > 100
    assert encoded(worker.published) == reference(events, until)


# ------------------------------------------------------------------------------------------------
# pending / commit / abort

def view(cid: str, at: str, n: int) -> Event:
    return decode(json.dumps({"type": "product_viewed", "event_id": f"{cid}-{n}", "customer_id": cid,
                              "occurred_at": at, "product_id": f"p{n % 3}", "category": "toys"}).encode())


def test_pending_has_one_record_per_dirty_customer(tmp_path):
    store = PartitionStore(tmp_path / "p0")
    engine = Engine(CATALOG, store)
    for n in range(60):
        engine.apply(view(f"c{n % 3}", f"2025-01-01T00:{n:02d}:00Z", n))
    store.set_stream_time(engine.now)
    records = store.pending()
    assert [k for k, _ in records] == [b"c0", b"c1", b"c2", STREAM_TIME_KEY]
    assert records[-1][1] == engine.now.to_bytes(8, "big", signed=True)
    assert store.pending() == records               # stable until something changes
    store.commit(len(records))
    assert store.pending() == []                    # nothing dirty, stream time unchanged
    store.set_stream_time(engine.now + 1)           # an idle partition's clock moved
    assert store.pending() == [(STREAM_TIME_KEY, (engine.now + 1).to_bytes(8, "big", signed=True))]
    engine.apply(view("c1", "2025-01-01T01:00:00Z", 99))
    assert [k for k, _ in store.pending()] == [b"c1", STREAM_TIME_KEY]


def test_abort_discards_uncommitted_changes(tmp_path):
    store = PartitionStore(tmp_path / "p0")
    engine = Engine(CATALOG, store)
    engine.apply(view("c1", "2025-01-01T00:00:00Z", 1))
    store.set_stream_time(engine.now)
    store.commit(2)
    committed = dump_state(store.get("c1"))
    committed_time = store.stream_time()

    engine.apply(view("c1", "2025-01-02T00:00:00Z", 2))      # mutates the cached state in place
    engine.apply(view("c2", "2025-01-02T00:00:00Z", 3))
    store.delete("c3")
    store.set_stream_time(engine.now)
    assert dump_state(store.get("c1")) != committed
    store.abort()

    assert dump_state(store.get("c1")) == committed
    assert store.get("c2") is None
    assert store.stream_time() == committed_time
    assert store.pending() == []
    assert store.checkpoint() == 2
    assert stored(store) == {"c1": committed}


def test_tombstones_delete(tmp_path):
    store = PartitionStore(tmp_path / "p0")
    state = CustomerState(first_seen=1, last_seen=2)
    store.put("c1", state)
    store.put("c2", state)
    store.commit(2)
    store.delete("c1")
    assert store.get("c1") is None                  # not the committed state still in RocksDB
    assert store.pending() == [(b"c1", None)]
    store.commit(3)
    assert store.get("c1") is None
    assert list(stored(store)) == ["c2"]
    store.put("c1", state)                          # deleted and re-created in one transaction
    store.delete("c1")
    store.put("c1", state)
    assert store.pending() == [(b"c1", dump_state(state))]

    other = PartitionStore(tmp_path / "p1")
    other.restore([(b"c1", dump_state(state), 0), (b"c2", dump_state(state), 1), (b"c1", None, 2)])
    assert list(stored(other)) == ["c2"]
    assert other.checkpoint() == 3


def test_meta_keys_never_in_items_and_cannot_collide(tmp_path):
    store = PartitionStore(tmp_path / "p0")
    # the contract accepts NUL in ids, which is why meta keys start with 0xFF (never in UTF-8)
    tricky = "\x00meta:stream_time"
    store.put(tricky, CustomerState(first_seen=1, last_seen=1))
    store.put("c1", CustomerState(first_seen=2, last_seen=2))
    store.set_stream_time(123)
    store.commit(3)
    store.restore([(b"\xffmeta:from_a_newer_version", b"?", 3), (b"\xff", None, 4)])
    assert [cid for cid, _ in store.items()] == [tricky, "c1"]
    assert store.stream_time() == 123
    assert store.checkpoint() == 5
    store.close()
    reopened = PartitionStore(tmp_path / "p0")
    assert (reopened.stream_time(), reopened.checkpoint()) == (123, 5)
    assert [cid for cid, _ in reopened.items()] == [tricky, "c1"]


# ------------------------------------------------------------------------------------------------
# crashes and restores

@pytest.mark.parametrize("log", ["full", "compacted", "compacted_without_tombstones"])
def test_lost_store_restores_from_changelog(tmp_path, log):
    events = history(5)
    until = end_of(events)
    every, committed_batches = 100, 17
    cut = every * committed_batches
    changelog = Changelog()
    worker = Worker(PartitionStore(tmp_path / "p0"), changelog, every)
    worker.apply(events[:cut + 60])          # 60 events past the last commit: never committed
    published = list(worker.published)
    worker.store.close()                     # crash

    store = PartitionStore(tmp_path / "p0")
    assert store.checkpoint() == len(changelog.records)       # what was committed survived
    assert store.stream_time() == worker.store.stream_time() != worker.engine.now
    store.wipe()                             # the disk is lost
    assert (store.checkpoint(), store.stream_time(), list(store.items())) == (None, None, [])
    records = {"full": changelog.records, "compacted": changelog.compacted(),
               "compacted_without_tombstones": changelog.compacted(drop_tombstones=True)}[log]
    store.restore(records)
    assert store.checkpoint() == len(changelog.records)

    resumed = Worker(store, changelog, every)    # rebuilds timers and the clock from the store
    resumed.apply(events[cut:])                  # input resumes at the committed consumer offset
    resumed.advance(until)
    assert encoded(published + resumed.published) == reference(events, until)


def test_store_behind_restores_from_its_checkpoint(tmp_path):
    """The Kafka transaction committed but the process died before the local batch was written:
    the store on disk is behind the changelog and catches up from its checkpoint."""
    events = history(6)
    until = end_of(events)
    every, behind_at, cut = 100, 900, 1500
    changelog = Changelog()
    ahead = Worker(PartitionStore(tmp_path / "ahead"), changelog, every)
    ahead.apply(events[:behind_at])
    checkpoint = len(changelog.records)
    ahead.apply(events[behind_at:cut])
    published = list(ahead.published)

    behind = PartitionStore(tmp_path / "behind")
    behind.restore(changelog.records[:checkpoint])
    behind.close()
    behind = PartitionStore(tmp_path / "behind")            # the checkpoint survives a reopen
    assert behind.checkpoint() == checkpoint
    behind.restore(changelog.records)                      # read from the start: the prefix is skipped
    assert stored(behind) == stored(ahead.store)
    assert behind.stream_time() == ahead.store.stream_time()

    resumed = Worker(behind, changelog, every)
    resumed.apply(events[cut:])
    resumed.advance(until)
    assert encoded(published + resumed.published) == reference(events, until)


def test_restore_applies_only_records_after_the_checkpoint(tmp_path):
    def old(cid): return dump_state(CustomerState(first_seen=1, last_seen=1, id_hash=customer_hash(cid)))
    def new(cid): return dump_state(CustomerState(first_seen=2, last_seen=2, id_hash=customer_hash(cid)))
    store = PartitionStore(tmp_path / "p0")
    store.restore([(b"c1", new("c1"), 0), (b"c2", new("c2"), 1)])
    assert store.checkpoint() == 2
    # offsets 0 and 1 again, with values the store must not go back to, then one new record
    store.restore([(b"c1", old("c1"), 0), (b"c2", None, 1), (b"c3", new("c3"), 2)])
    assert stored(store) == {"c1": new("c1"), "c2": new("c2"), "c3": new("c3")}
    assert store.checkpoint() == 3


def test_restore_writes_in_batches_with_their_checkpoint(tmp_path):
    state = dump_state(CustomerState(first_seen=1, last_seen=1))
    store = PartitionStore(tmp_path / "p0")
    store.restore(((f"c{i}".encode(), state, i) for i in range(25)), batch_size=10)
    assert store.checkpoint() == 25
    assert len(list(store.items())) == 25


@pytest.mark.parametrize("bad", [b"\x01\xff\xff", b"\x07" + dump_state(CustomerState(1, 1))[1:], b""])
def test_corrupt_changelog_value_stops_restore(tmp_path, bad):
    good = dump_state(CustomerState(first_seen=1, last_seen=1))
    store = PartitionStore(tmp_path / "p0")
    with pytest.raises(ValueError, match=r"b'c2' at offset 41 is corrupt"):
        store.restore([(b"c1", good, 40), (b"c2", bad, 41), (b"c3", good, 42)], batch_size=1)
    # the batch before the bad record is written with its checkpoint; the rest is not
    assert store.checkpoint() == 41
    assert list(stored(store)) == ["c1"]


def test_corrupt_stream_time_or_key_stops_restore(tmp_path):
    store = PartitionStore(tmp_path / "p0")
    with pytest.raises(ValueError, match=r"meta:stream_time' at offset 3"):
        store.restore([(STREAM_TIME_KEY, b"\x00\x01", 3)])
    with pytest.raises(ValueError, match=r"at offset 4"):
        store.restore([(b"\xc3(", dump_state(CustomerState(1, 1)), 4)])    # not UTF-8
    assert store.checkpoint() is None


def test_checkpoint_key_is_never_produced(tmp_path):
    store = PartitionStore(tmp_path / "p0")
    store.put("c1", CustomerState(first_seen=1, last_seen=1))
    store.set_stream_time(5)
    assert CHECKPOINT_KEY not in {k for k, _ in store.pending()}


# ------------------------------------------------------------------------------------------------
# any interleaving leaves RocksDB equal to a dict of committed state

CIDS = ["a", "b", "c", "d"]
ops = st.lists(st.one_of(
    st.tuples(st.just("put"), st.sampled_from(CIDS), st.integers(0, 1000)),
    st.tuples(st.just("delete"), st.sampled_from(CIDS)),
    st.tuples(st.just("time"), st.integers(BEFORE_TIME, AFTER_TIME)),
    st.tuples(st.just("commit")),
    st.tuples(st.just("abort")),
    st.tuples(st.just("reopen")),
), max_size=30)


@settings(max_examples=100, deadline=None)
@given(ops=ops, cache_size=st.integers(0, 3))
def test_any_interleaving_matches_a_dict_model(ops, cache_size):
    with tempfile.TemporaryDirectory() as tmp:
        store = PartitionStore(f"{tmp}/p0", cache_size=cache_size)
        committed: dict[str, bytes] = {}
        pending: dict[str, bytes | None] = {}
        committed_time = time = None
        offset = 0
        for op in ops:
            if op[0] == "put":
                state = CustomerState(first_seen=op[2], last_seen=op[2], id_hash=customer_hash(op[1]))
                store.put(op[1], state)
                pending[op[1]] = dump_state(state)
            elif op[0] == "delete":
                store.delete(op[1])
                pending[op[1]] = None
            elif op[0] == "time":
                store.set_stream_time(op[1])
                time = op[1]
            elif op[0] == "commit":
                offset += len(store.pending())
                store.commit(offset)
                committed.update(pending)
                committed = {k: v for k, v in committed.items() if v is not None}
                pending, committed_time = {}, time
                assert stored(store) == dict(sorted(committed.items()))
            elif op[0] == "abort":
                store.abort()
                pending, time = {}, committed_time
            else:
                store.close()                # a restart loses whatever was not committed
                store = PartitionStore(f"{tmp}/p0", cache_size=cache_size)
                pending, time = {}, committed_time
            for cid in CIDS:
                got = store.get(cid)
                expected = pending[cid] if cid in pending else committed.get(cid)
                assert (None if got is None else dump_state(got)) == expected
            assert store.stream_time() == time
        store.close()
        reopened = PartitionStore(f"{tmp}/p0")
        assert stored(reopened) == dict(sorted(committed.items()))
        assert reopened.stream_time() == committed_time
        assert reopened.checkpoint() == (offset if any(op[0] == "commit" for op in ops) else None)
        reopened.close()


def test_a_state_stored_before_id_hash_existed_gets_it_from_its_key(tmp_path):
    """Records written by the previous build (no id_hash) load, and `bucket:` can read them."""
    legacy = dump_state(CustomerState(first_seen=1, last_seen=1))
    assert legacy.endswith(b"\xc0")                          # the new trailing field: nil
    store = PartitionStore(tmp_path / "p0")
    store.restore([(b"c1", legacy[:-1].replace(b"\xdc\x00\x1c", b"\xdc\x00\x1b"), 0)])   # 27 fields, as before
    assert store.get("c1").id_hash == customer_hash("c1")
    assert dict((cid, st.id_hash) for cid, st in store.items()) == {"c1": customer_hash("c1")}
