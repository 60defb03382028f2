"""Erasure reaches everything it should, in a bounded time: the topic configs that bound how long
an erased customer's records stay on Kafka (README, "Erasure"), and the local RocksDB store."""
from __future__ import annotations

import dataclasses
import time
import uuid

import pytest
from hypothesis import given, settings, strategies as st

from stream.faust_runtime import topics as faust_runtime
from stream.backfill.sinks import topic_spec
from stream.runtime.settings import WorkerConfig
from stream.engine.core import Engine
from stream.rules.catalog import load_catalog
from stream.runtime.topics import worker_topics
from stream.model.time import DAY_MS
from stream.storage.rocksdb_store import PartitionStore
from tests.erasure_topics import expected, personal_topics
from tests.helpers import event

_MS = st.integers(min_value=60_000, max_value=365 * DAY_MS)
_CONFIGS = st.builds(lambda lag, changes, dead, routed: WorkerConfig(
    erasure_max_lag_ms=lag, changes_retention_ms=changes, dead_letter_retention_ms=dead,
    routed_topics=("orders",) if routed else ()), _MS, _MS, _MS, st.booleans())


@settings(max_examples=50, deadline=None)
@given(_CONFIGS)
def test_every_topic_with_personal_data_has_a_bounded_lifetime(config):
    topics = personal_topics(config)
    assert set(topics) == {*config.keyed_topics, config.changes_topic, config.dead_letter_topic,
                           config.membership_topic, config.changelog_topic, faust_runtime.changelog_topic(config)}
    for name, configs in topics.items():
        wanted = expected(config, name)
        assert {k: configs.get(k) for k in wanted} == wanted, name
        # nothing else that could lengthen it (max.message.bytes and the like are fine)
        assert not {"retention.bytes", "min.compaction.lag.ms"} & configs.keys(), name


@settings(max_examples=20, deadline=None)
@given(_CONFIGS, st.integers(min_value=1, max_value=64))
def test_the_backfill_hand_off_creates_the_changelog_as_the_workers_do(config, partitions):
    target = dataclasses.replace(config, group_id="segments-v2")
    name, count, configs = topic_spec(target, target.changelog_topic, partitions)
    assert (name, count) == (target.changelog_topic, partitions)
    wanted = expected(target, name)
    assert {k: configs.get(k) for k in wanted} == wanted
    assert configs == next(c for t, _, c in worker_topics(target) if t == name)   # whatever else the workers set


# ---- the local RocksDB store ------------------------------------------------------------------------

def _raw_files_hold(directory, needle: bytes) -> list[str]:
    """The store's files (SST, WAL, manifest, ...) whose raw bytes contain `needle`."""
    return sorted(p.name for p in directory.iterdir() if p.is_file() and needle in p.read_bytes())


def _erase_one_of_many(store: PartitionStore, city: str, flush: bool) -> None:
    """Customers written and committed, then one of them (who lives in `city`) erased and committed,
    as the native worker drives the store."""
    engine = Engine(load_catalog(), store)
    for n in range(50):
        engine.apply(event("customer_updated", f"c{n}", "2025-03-01T09:00:00Z", attributes={"city": f"Town{n}"}))
    engine.apply(event("customer_updated", "c-gone", "2025-03-01T09:00:00Z", attributes={"city": city}))
    store.pending()
    store.commit(1)
    if flush:
        store._db.flush()              # the values in an SST file, not only in the write-ahead log
    engine.apply(event("customer_erased", "c-gone", "2025-03-02T09:00:00Z"))
    store.pending()
    store.commit(2)


@pytest.mark.parametrize("flush", [False, True], ids=["in-wal", "in-sst"])
def test_an_erased_customer_is_gone_from_the_store_files_within_the_bound(tmp_path, flush):
    city = "Erasureville-" + uuid.uuid4().hex
    store = PartitionStore(tmp_path / "p0", erasure_after_ms=60_000)
    _erase_one_of_many(store, city, flush)
    assert store.get("c-gone") is None
    assert _raw_files_hold(store.path, city.encode()), "the deleted value was expected to linger until compacted"
    assert not store.compact_erased(time.monotonic() + 59)      # not yet due: one compaction per period
    assert store.compact_erased(time.monotonic() + 60)
    store.erasure.wait()
    assert _raw_files_hold(store.path, city.encode()) == []
    assert not store.compact_erased(time.monotonic() + 600)     # nothing erased since
    # the others are all there, also after a reopen
    store.close()
    store = PartitionStore(tmp_path / "p0", erasure_after_ms=60_000)
    assert {cid: s.city for cid, s in store.items()} == {f"c{n}": f"Town{n}" for n in range(50)}
    assert not store.compact_erased(time.monotonic() + 600)     # its deletions were compacted away
    store.close()


def test_a_store_reopened_before_its_compaction_compacts_at_once(tmp_path):
    city = "Erasureville-" + uuid.uuid4().hex
    store = PartitionStore(tmp_path / "p0", erasure_after_ms=60_000)
    _erase_one_of_many(store, city, flush=True)
    store.close()                        # stopped before the compaction was due
    store = PartitionStore(tmp_path / "p0", erasure_after_ms=60_000)
    assert _raw_files_hold(store.path, city.encode())
    assert store.compact_erased()        # due at the first check
    store.erasure.wait()
    assert _raw_files_hold(store.path, city.encode()) == []
    store.close()


def test_a_tombstone_restored_from_the_changelog_is_compacted_too(tmp_path):
    city = "Erasureville-" + uuid.uuid4().hex
    store = PartitionStore(tmp_path / "p0", erasure_after_ms=60_000)
    engine = Engine(load_catalog(), store)
    engine.apply(event("customer_updated", "c-gone", "2025-03-01T09:00:00Z", attributes={"city": city}))
    store.pending()
    store.commit(1)
    store._db.flush()
    store.restore([(b"c-gone", None, 1)])     # the erasure, committed elsewhere (another worker)
    assert store.get("c-gone") is None and _raw_files_hold(store.path, city.encode())
    assert store.compact_erased(time.monotonic() + 60)
    store.erasure.wait()
    assert _raw_files_hold(store.path, city.encode()) == []
    store.close()


def test_the_store_takes_commits_while_it_compacts(tmp_path):
    """The compaction runs beside the partition's work: commits during it land, erasures made
    during it wait for the next period, and nothing is lost."""
    store = PartitionStore(tmp_path / "p0", erasure_after_ms=60_000)
    engine = Engine(load_catalog(), store)
    for n in range(20_000):
        engine.apply(event("customer_updated", f"c{n:05d}", "2025-03-01T09:00:00Z", attributes={"city": f"T{n}"}))
    store.pending()
    store.commit(1)
    store._db.flush()
    engine.apply(event("customer_erased", "c00000", "2025-03-02T09:00:00Z"))
    store.pending()
    store.commit(2)
    assert store.compact_erased(time.monotonic() + 60)
    committed = 2
    while store.erasure.running() or committed < 5:
        committed += 1
        engine.apply(event("customer_erased", f"c{committed:05d}", "2025-03-02T09:00:00Z"))
        engine.apply(event("customer_updated", f"n{committed}", "2025-03-02T09:00:00Z", attributes={"city": "New"}))
        store.pending()
        store.commit(committed)
    store.erasure.wait()
    assert store.erasure.due is not None           # the erasures made meanwhile: the next period
    cities = {cid: s.city for cid, s in store.items()}
    erased = {"c00000", *(f"c{n:05d}" for n in range(3, committed + 1))}
    assert set(cities) == ({f"c{n:05d}" for n in range(20_000)} - erased) | {f"n{n}" for n in range(3, committed + 1)}
    store.close()
