"""The backfill without a broker: the start offset it verifies (stream.backfill.plan) and the definitions
it evaluates and hands off (stream.backfill.definitions). The `segments backfill` command's own checks
are in tests/cli/test_backfill.py."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import DAY, product_viewed
from stream.backfill.plan import trusted_start
from stream.backfill.definitions import handoff_record, summary
from stream.definitions.resolution import file_definitions, parse_record
from stream.engine.core import Engine
from stream.definitions.live import LiveDefinitions
from stream.rules.catalog import load_catalog
from stream.storage.keys import Record
from stream.storage.rocksdb_store import PartitionStore
from stream.worker.partition import PartitionTask


@given(st.lists(st.integers(0, 50), max_size=30), st.integers(0, 5), st.integers(-1, 60), st.integers(-1, 40))
def test_a_verified_start_never_skips_a_record_at_or_after_the_target(stamps, low, target, answer):
    """Record timestamps ascending (as with LogAppendTime) from offset `low`; whatever the broker
    answers, no record stamped at or after the target lies before the start, and a right answer
    is kept (the fast path on Kafka)."""
    stamps.sort()
    end = low + len(stamps)
    asked = end if answer < 0 or answer > end else answer     # -1: no record that late, i.e. the end
    before = stamps[asked - 1 - low] if asked > low else None
    start = trusted_start(answer, low, end, before, target)
    assert low <= start <= end
    assert all(ts < target for ts in stamps[:start - low])
    right = next((low + i for i, ts in enumerate(stamps) if ts >= target), end)
    if answer == right or (answer == -1 and right == end):
        assert start == right


@pytest.mark.parametrize("answer, before, expected", [
    (0, None, 3),            # the embedded broker's 0, below the first offset: read from the first
    (3, None, 3),
    (7, 999, 7),             # the record before is older than the target: trusted
    (7, 1000, 3),            # as old as the target: the answer may skip records, read from the first
    (7, None, 3),            # nothing readable before it (a transaction marker): not trusted
    (-1, 999, 10),           # no record that late, and the last one is older: start at the end
    (-1, 1000, 3),
    (12, 999, 10),           # past the end: the end, verified like any answer
])
def test_trusted_start(answer, before, expected):
    assert trusted_start(answer, low=3, end=10, before_ms=before, target_ms=1000) == expected


# ---- the definitions a backfill evaluates and hands off ----------------------------------------------

DEEPER = {"version": 2, "when": {"repeated": {"event": "product_viewed", "per": "product", "at_least": 5,
                                             "within": "14d"}}}
ADDED = {"version": 4, "when": {"orders_placed": {"gte": 2}}}


def read_topic(records: dict) -> SimpleNamespace:
    """The definitions topic as read to its end (stream.kafka.definitions_feed.DefinitionsFeed's records),
    not changing since."""
    return SimpleNamespace(records=records, poll=lambda: False)


def _partition(path: Path, record: Record | None) -> PartitionTask:
    """A partition whose store (one customer, as handed off) holds `record` as committed."""
    store = PartitionStore(path)
    engine = Engine(load_catalog(), store)
    engine.apply(product_viewed("c1", 10 * DAY, "p1"))
    store.set_stream_time(engine.now)
    if record is not None:
        store.set_meta(*record)
    store.pending()
    store.commit(1)
    return PartitionTask(0, store, load_catalog())


def test_a_handed_off_partition_runs_the_backfills_definitions_with_no_pass_and_no_flag(tmp_path):
    """What the backfill resolves (file + topic, as a fresh worker does) is what the partition's
    record says: a worker attaching it moves nothing, flags nothing, and runs the topic versions.
    Without the record the same worker re-evaluates and flags the deeper window (the case the
    hand-off record exists for)."""
    topic = read_topic({"window-shopper": parse_record(b"window-shopper", yaml.safe_dump(DEEPER).encode(), 3),
                        "added": parse_record(b"added", yaml.safe_dump(ADDED).encode(), 4)})
    live = LiveDefinitions(file_definitions(load_catalog()), topic)
    resolution = live.resolve(live.assumed())
    assert resolution.definitions["window-shopper"] == DEEPER and resolution.definitions["added"] == ADDED
    lines = summary(resolution, "catalog + topic 't'")
    assert "added v4 (topic offset 4)" in lines[0] and "window-shopper v2 (topic offset 3)" in lines[0]

    task = _partition(tmp_path / "handed", handoff_record(resolution.catalog))
    live.attach(task)
    assert (live.running[0].redefine, live.running[0].incomplete) == ({}, {})
    assert not live.step([task]) and task.changes == []
    assert {s.name: s.version for s in task.catalog.segments}["added"] == 4
    assert {s.name: s.version for s in task.catalog.segments}["window-shopper"] == 2

    bare = LiveDefinitions(file_definitions(load_catalog()), topic)
    bare.attach(_partition(tmp_path / "bare", None))
    assert set(bare.running[0].redefine) == {"added", "window-shopper"}
    assert set(bare.running[0].incomplete) == {"window-shopper"}


def test_a_rejected_topic_record_is_named_and_the_file_definition_evaluated():
    bad = parse_record(b"loyal", b"version: 1\nwhen: {paid_orders: {gte: 9}}\n", 7)
    live = LiveDefinitions(file_definitions(load_catalog()), read_topic({"loyal": bad}))
    resolution = live.resolve(live.assumed())
    assert resolution.definitions["loyal"] == file_definitions(load_catalog())["loyal"]
    (line,) = summary(resolution, "w")[1:]
    assert line.startswith("rejected      loyal from topic offset 7: ") and "not newer" in line


class _Producer:
    """Stands for the transactional producer: records what the hand-off asks of it."""

    def __init__(self, _config: dict):
        self.calls: list[str] = []
        made.append(self)

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: self.calls.append(name) or 0


made: list[_Producer] = []


def test_a_hand_off_whose_states_fail_midway_aborts_its_transaction(monkeypatch):
    """The states come from the backfill's jobs as they are merged: a failure there (a customer in
    two jobs) must abort the transaction, not leave it open to hold back the changelog's readers."""
    from stream.backfill import handoff
    from stream.backfill.jobs import JobFailed
    from stream.backfill.plan import Span
    from stream.runtime.settings import WorkerConfig
    monkeypatch.setattr(handoff, "Producer", _Producer)
    monkeypatch.setattr(handoff, "Consumer", lambda _config: SimpleNamespace(close=lambda: None))
    monkeypatch.setattr(handoff, "ensure_topics", lambda *_: None)

    def states():
        yield "a", b"state"
        raise JobFailed("customer 'b' has events in partitions of two jobs")

    made.clear()
    with pytest.raises(JobFailed):
        handoff.hand_off(WorkerConfig(bootstrap_servers="127.0.0.1:1", input_topics=("t",)), "g", states(), 1,
                         [Span("t", 0, 0, 1)], 1, load_catalog())
    (producer,) = made
    assert producer.calls[:3] == ["init_transactions", "begin_transaction", "produce"]
    assert "abort_transaction" in producer.calls and "commit_transaction" not in producer.calls
