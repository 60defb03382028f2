"""The Faust runtime's BatchStore as stream.definitions.live uses it (no Kafka, no Faust worker): a
table partition's RocksDB database opened as Faust opens it (raw mode), behind a stand-in for the
table. The Running record as last set or as stored, the walk in chunks with the batch's state laid
over the database's, and the switch's record in the batch's changelog."""
from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

from rocksdict import Options, Rdict

from stream.engine.core import Engine
from stream.faust_runtime.table_store import _FAUST_OFFSET_KEY, BatchStore, Partition
from stream.model.changes import make_change
from stream.model.state import dump_state, load_state
from stream.rules.catalog import load_catalog
from stream.storage.keys import META, DEFINITIONS_KEY, STREAM_TIME_KEY, stream_time_record
from tests.helpers import DAY, order_paid


class Data(dict):
    """The table's data as BatchStore reads and writes it (its partition database, and keys)."""

    def __init__(self, db: Rdict):
        super().__init__()
        self.db = db

    def _db_for_partition(self, partition: int) -> Rdict:
        return self.db

    def get(self, key):                   # type: ignore[override]
        return self.db.get(key)

    def __setitem__(self, key, value):
        self.db.put(key, value)

    def __delitem__(self, key):
        self.db.delete(key)


def table_of(tmp_path, customers: int) -> SimpleNamespace:
    """A table whose partition 0 holds `customers` customers, Faust's offset key and a stream time."""
    db = Rdict(str(tmp_path / "p0.db"), Options(raw_mode=True))
    engine = Engine(load_catalog())
    for n in range(customers):
        engine.apply(order_paid(f"c{n:02d}", DAY, f"o{n}", 10.0))
    for customer_id, state in engine.store.items():
        db.put(customer_id.encode(), dump_state(state))
    db.put(_FAUST_OFFSET_KEY, b"17")
    db.put(STREAM_TIME_KEY, b"\0" * 8)
    return SimpleNamespace(data=Data(db), changelog_topic_name="app-customers-changelog")


def store_of(tmp_path, customers: int) -> BatchStore:
    return BatchStore(table_of(tmp_path, customers), 0, 3_600_000)


def test_the_walk_goes_in_chunks_over_customers_only_with_the_batchs_state_laid_over(tmp_path):
    store = store_of(tmp_path, 12)
    store.delete("c03")                       # erased in this batch: skipped
    changed = store.get("c05")
    assert changed is not None
    store.put("c05", changed)
    seen, after = [], None
    while True:
        chunk = list(store.scan(after, 5))
        seen += [customer_id for customer_id, _ in chunk]
        if len(chunk) < 5:
            break
        after = chunk[-1][0]
    assert seen == [f"c{n:02d}" for n in range(12) if n != 3]
    assert dict(store.scan("c04", 1))["c05"] is changed


def test_the_running_record_as_set_then_as_written_goes_to_the_changelog(tmp_path):
    store = store_of(tmp_path, 2)
    assert store.meta(DEFINITIONS_KEY) is None
    store.set_meta(DEFINITIONS_KEY, b"running")
    assert store.meta(DEFINITIONS_KEY) == b"running" and store.unsaved()
    records, end = store.changelog(5 * DAY)
    assert [(key, value) for _, key, value, _, _ in records] == [(DEFINITIONS_KEY, b"running")]
    assert end is not None and end[1] == STREAM_TIME_KEY
    store.write_local()
    assert not store.unsaved() and store.db.get(DEFINITIONS_KEY) == b"running"
    assert store.meta(DEFINITIONS_KEY) == b"running"


def test_a_partition_restores_its_engine_from_the_database_and_counts_its_members(tmp_path):
    table = table_of(tmp_path, 4)
    table.data.db.put(*stream_time_record(3 * DAY))
    stored = {key.decode(): load_state(value, key.decode()) for key, value in table.data.db.items()
              if key != _FAUST_OFFSET_KEY and not key.startswith(META)}
    part = Partition(0, table, load_catalog(), 3_600_000)
    assert part.engine.now == 3 * DAY and part.store.saved_time == 3 * DAY
    assert len(part.engine.timers) == sum(1 for state in stored.values() if state.deadline() is not None)
    expected = Counter(name for state in stored.values() for name in state.member)
    assert part.members == expected and sum(expected.values()) > 0
    segment = next(iter(expected))
    part.changes.append(make_change("c00", segment, False, 3 * DAY, None, 1))
    part.count_members()
    assert part.members[segment] == expected[segment] - 1
