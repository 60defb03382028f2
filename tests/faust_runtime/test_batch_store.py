"""The Faust runtime's BatchStore as stream.definitions.live uses it (no Kafka, no Faust worker): a
table partition's RocksDB database opened as Faust opens it (raw mode), behind a stand-in for the
table. The Running record as last set or as stored, the walk in chunks with the batch's state laid
over the database's, and the switch's record in the batch's changelog."""
from __future__ import annotations

from types import SimpleNamespace

from rocksdict import Options, Rdict

from stream.engine.core import Engine
from stream.faust_runtime.table_store import _FAUST_OFFSET_KEY, BatchStore
from stream.model.state import dump_state
from stream.rules.catalog import load_catalog
from stream.storage.keys import DEFINITIONS_KEY, STREAM_TIME_KEY
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


def store_of(tmp_path, customers: int) -> BatchStore:
    db = Rdict(str(tmp_path / "p0.db"), Options(raw_mode=True))
    engine = Engine(load_catalog())
    for n in range(customers):
        engine.apply(order_paid(f"c{n:02d}", DAY, f"o{n}", 10.0))
    for customer_id, state in engine.store.items():
        db.put(customer_id.encode(), dump_state(state))
    db.put(_FAUST_OFFSET_KEY, b"17")
    db.put(STREAM_TIME_KEY, b"\0" * 8)
    table = SimpleNamespace(data=Data(db), changelog_topic_name="app-customers-changelog")
    return BatchStore(table, 0, 3_600_000)


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
