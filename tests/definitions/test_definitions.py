"""Which definitions run (stream.definitions.resolution) and how a partition takes a change up
(stream.definitions.live with a real PartitionStore, no Kafka): precedence of topic over file,
rejections that keep the previous version, history that was not kept, and a pass interrupted by a
crash that resumes without losing or repeating a move."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from confluent_kafka import Message

from tests.definition_records import OneRecordFeed, record
from tests.helpers import DAY, order_paid, product_viewed
from stream.definitions.resolution import (Running, decode_running, encode_running, file_definitions,
                                parse_record, redefine, resolve)
from stream.engine.core import Engine
from stream.engine.redefinition import Redefinition
from stream.definitions.live import LiveDefinitions
from stream.rules.catalog import compile_catalog, load_catalog
from stream.runtime.settings import WorkerConfig
from stream.storage.keys import DEFINITIONS_KEY
from stream.storage.rocksdb_store import PartitionStore
from stream.worker.loop import Worker
from stream.worker.partition import PartitionTask

FILE = file_definitions(load_catalog())
LOYAL3 = {"version": 2, "when": {"all": [{"paid_orders": {"gte": 3}}, {"last_paid_at": {"within": "90d"}}]}}


# ---- records ---------------------------------------------------------------------------------------

def test_parse_record_reads_yaml_json_and_tombstones():
    assert record("vip", LOYAL3).definition == LOYAL3
    assert parse_record(b"vip", b'{"version": 3, "when": {"city": {"eq": "Almaty"}}}', 5).definition["version"] == 3
    tombstone = parse_record(b"vip", None, 7)
    assert (tombstone.definition, tombstone.problems, tombstone.offset) == (None, (), 7)
    assert parse_record(None, b"x", 1) is None and parse_record(b"\xff", b"x", 1) is None


@pytest.mark.parametrize("value, reason", [
    (b"when: [unclosed", "not valid YAML or JSON"),
    (b"- a list", "expected one segment definition"),
    (b"when: {city: {eq: Almaty}}", "needs `version:`"),
    (b"version: 0\nwhen: {city: {eq: Almaty}}", "needs `version:`"),
    (b"\xff\xfe", "not valid YAML or JSON"),
])
def test_parse_record_names_what_is_wrong(value, reason):
    parsed = parse_record(b"vip", value, 3)
    assert len(parsed.problems) == 1 and reason in parsed.problems[0] and "offset 3" in parsed.problems[0]


# ---- resolution ------------------------------------------------------------------------------------

def test_topic_overrides_and_extends_the_file_and_a_tombstone_falls_back_to_it():
    new = {"version": 1, "when": {"city": {"eq": "Almaty"}}}
    resolution = resolve(FILE, {"loyal": record("loyal", LOYAL3, 4), "almaty": record("almaty", new, 5)}, FILE)
    assert resolution.definitions["loyal"] == LOYAL3 and resolution.sources["loyal"] == "topic offset 4"
    assert resolution.definitions["almaty"] == new and resolution.definitions["churned"] == FILE["churned"]
    assert not resolution.rejected
    back = resolve(FILE, {"loyal": record("loyal", None, 6), "almaty": record("almaty", None, 7)},
                   resolution.definitions)
    # loyal: the file's definition again, as version 3 (a version never goes down); almaty: gone
    assert back.definitions == {**FILE, "loyal": {**FILE["loyal"], "version": 3}} and back.sources["loyal"] == "file"
    assert resolve(FILE, {}, back.definitions).definitions == back.definitions      # stable after a restart


def test_invalid_definition_is_rejected_with_every_reason_and_the_running_one_kept():
    bad = {"version": 3, "when": {"all": [{"paid_ordrs": {"gte": 3}}, {"last_paid_at": {"within": "9x"}}]}}
    running = {**FILE, "loyal": LOYAL3}
    resolution = resolve(FILE, {"loyal": record("loyal", bad, 9)}, running)
    assert resolution.definitions["loyal"] == LOYAL3 and resolution.sources["loyal"] == "running (kept)"
    rejection = resolution.rejected["loyal"]
    assert (rejection.source, rejection.version) == ("topic offset 9", 3)
    assert len(rejection.problems) == 2 and "did you mean 'paid_orders'" in rejection.problems[0]
    assert "9x" in rejection.problems[1]


def test_a_changed_definition_needs_a_newer_version_and_an_identical_one_is_no_change():
    stale = {**LOYAL3, "version": 1}                         # the file's loyal is version 1
    resolution = resolve(FILE, {"loyal": record("loyal", stale)}, FILE)
    assert resolution.definitions["loyal"] == FILE["loyal"]
    assert "is not newer" in resolution.rejected["loyal"].problems[0]
    same = resolve(FILE, {"loyal": record("loyal", {**FILE["loyal"], "version": 1})}, FILE)
    assert not same.rejected and Redefinition.between(load_catalog(), same.catalog).segments == {}
    edited = resolve({**FILE, "loyal": {"when": LOYAL3["when"]}}, {},
                     {**FILE, "loyal": {**FILE["loyal"], "version": 4}})
    assert not edited.rejected and edited.definitions["loyal"] == {"when": LOYAL3["when"], "version": 5}


def test_a_partition_with_nothing_running_takes_every_valid_definition():
    resolution = resolve(FILE, {"loyal": record("loyal", {**LOYAL3, "version": 1}),
                                "bad": record("bad", {"version": 1, "when": {"nope": {}}})}, None)
    assert resolution.definitions["loyal"]["version"] == 1 and "bad" not in resolution.definitions
    assert set(resolution.rejected) == {"bad"}


def test_every_segment_removed_leaves_an_empty_catalog_that_runs():
    resolution = resolve({}, {}, FILE)
    assert resolution.definitions == {} and resolution.catalog.segments == []
    assert Redefinition.between(load_catalog(), resolution.catalog).segments == {n: 1 for n in sorted(FILE)}


# ---- history the state never kept ------------------------------------------------------------------

def deeper_window_shopper(version: int = 2) -> dict:
    return {"version": version, "when": {"repeated": {"event": "product_viewed", "per": "product",
                                                      "at_least": 5, "within": "14d"}}}


def test_a_definition_reading_history_not_kept_is_accepted_and_flagged_until_its_window_passed():
    now = 100 * DAY
    moved = redefine(Running(FILE), resolve(FILE, {"window-shopper": record("window-shopper", deeper_window_shopper())},
                                            FILE), now)
    (flag,) = moved.incomplete["window-shopper"]
    assert (flag.stream, flag.needs, flag.kept, flag.complete_at) == (
        "product_viewed:product", (5, 14 * DAY), (3, 7 * DAY), now + 14 * DAY)
    assert flag.describe()["complete_at"] == "1970-04-25T00:00:00Z"
    # a window within what was kept needs nothing; another change later keeps the earlier shortfall
    shallow = {"version": 3, "when": {"repeated": {"event": "product_viewed", "per": "product",
                                                   "at_least": 2, "within": "3d"}}}
    assert not redefine(Running(FILE), resolve(FILE, {"window-shopper": record("window-shopper", shallow)}, FILE),
                        now).incomplete
    again = redefine(moved, resolve(FILE, {"window-shopper": record("window-shopper", deeper_window_shopper(3))},
                                    moved.definitions), now + DAY)
    assert again.incomplete["window-shopper"][0].kept == (3, 7 * DAY)
    assert again.incomplete["window-shopper"][0].complete_at == now + 15 * DAY
    assert decode_running(encode_running(again)) == again


# ---- a partition taking a change up, crash included ------------------------------------------------

def filled_store(path: Path) -> PartitionStore:
    """Forty customers with 0..4 paid orders each, committed."""
    store = PartitionStore(path)
    engine = Engine(load_catalog(), store)
    for n in range(40):
        for k in range(n % 5):
            engine.apply(order_paid(f"c{n:02d}", DAY * (k + 1), f"o{n}-{k}", 100.0))
        engine.apply(product_viewed(f"c{n:02d}", 10 * DAY, "p1"))
    store.set_stream_time(engine.now)
    store.pending()
    store.commit(1)
    return store


def run_pass(live: LiveDefinitions, task: PartitionTask, stop_after: int | None = None) -> list:
    """Chunks committed one by one (as the worker's transactions); the moves of committed chunks."""
    committed, chunks = [], 0
    while live.step([task]):
        if stop_after is not None and chunks == stop_after:
            return committed                 # killed: this chunk's transaction never commits
        task.store.pending()
        task.store.commit(10 + chunks)
        committed += task.changes
        task.changes.clear()
        chunks += 1
    return committed


def test_a_pass_killed_midway_resumes_after_restart_without_losing_or_repeating_a_move(tmp_path):
    store = filled_store(tmp_path / "p0")
    live = LiveDefinitions(FILE, None, chunk=7)
    task = PartitionTask(0, store, load_catalog())
    live.attach(task)
    assert decode_running(store.meta(DEFINITIONS_KEY)).definitions == FILE
    store.pending()
    store.commit(2)
    live.file = {**FILE, "loyal": LOYAL3}
    live.refresh([task])
    before_kill = run_pass(live, task, stop_after=3)
    store.close()                            # kill -9: the open chunk is lost

    store = PartitionStore(tmp_path / "p0")
    live = LiveDefinitions({**FILE, "loyal": LOYAL3}, None, chunk=7)
    task = PartitionTask(0, store, load_catalog())
    live.attach(task)
    assert live.running[0].redefine == {"loyal": None} and live.running[0].after is not None
    after_restart = run_pass(live, task)
    moves = before_kill + after_restart
    assert moves and all(c.segment == "loyal" and c.cause == "definition" and c.definition_version == 2
                         for c in moves)
    assert len({c.customer_id for c in moves}) == len(moves), "a move repeated"

    # the same as evaluating every customer at once under the new definitions
    reference = Engine(compile_catalog({**FILE, "loyal": LOYAL3}, "new"))
    reference.now = task.engine.now
    expected, states = [], dict(filled_store(tmp_path / "again").items())
    for customer_id, state in states.items():
        reference.reevaluate(customer_id, state, Redefinition({"loyal": None}), expected)
    assert sorted((c.customer_id, c.change) for c in moves) == sorted((c.customer_id, c.change) for c in expected)
    assert {c: "loyal" in s.member for c, s in store.items()} == {c: "loyal" in s.member for c, s in states.items()}
    assert not live.step([task]) and decode_running(store.meta(DEFINITIONS_KEY)).redefine == {}


def test_a_file_edited_between_restarts_is_taken_up_on_assignment(tmp_path):
    store = filled_store(tmp_path / "p0")
    live = LiveDefinitions(FILE, None)
    task = PartitionTask(0, store, load_catalog())
    live.attach(task)
    store.pending()
    store.commit(2)
    store.close()
    edited = {k: v for k, v in FILE.items() if k != "repeat-buyer"}
    store = PartitionStore(tmp_path / "p0")
    live = LiveDefinitions(edited, None)
    task = PartitionTask(0, store, load_catalog())
    live.attach(task)
    moves = run_pass(live, task)
    assert moves and {(c.segment, c.change, c.definition_version) for c in moves} == {("repeat-buyer", "exited", 1)}
    assert not any("repeat-buyer" in s.member for _, s in store.items())


def test_a_backfill_flag_clears_once_its_window_has_passed(tmp_path):
    store = filled_store(tmp_path / "p0")
    live = LiveDefinitions(FILE, None)
    task = PartitionTask(0, store, load_catalog())
    live.attach(task)
    live.file = {**FILE, "window-shopper": deeper_window_shopper()}
    live.refresh([task])
    run_pass(live, task)
    (flag,) = live.running[0].incomplete["window-shopper"]
    assert flag.complete_at == task.engine.now + 14 * DAY
    assert live.describe()["segments"]["window-shopper"]["needs_backfill"] == [flag.describe()]
    task.engine.advance(flag.complete_at - 1)
    assert not live.step([task]) and live.running[0].incomplete
    task.engine.advance(flag.complete_at)
    assert live.step([task]) and not live.running[0].incomplete
    assert decode_running(store.meta(DEFINITIONS_KEY)).incomplete == {}


# ---- the native worker's loop turn: a switch and a customer the batch creates ------------------

STRICTER = {"version": 2, "when": {"all": [{"paid_orders": {"gte": 5}}, {"last_paid_at": {"within": "60d"}}]}}


def paid(customer: str, order: str, day: int) -> Message:
    value = json.dumps({"type": "order_paid", "event_id": f"e-{order}", "customer_id": customer,
                        "occurred_at": f"2026-01-{day:02d}T00:00:00Z", "order_id": order, "amount": 10}).encode()
    return Message(topic="shop-events", partition=0, offset=day, key=customer.encode(), value=value)


def test_a_customer_created_by_the_batch_of_a_switch_runs_the_new_definitions(tmp_path):
    config = WorkerConfig(bootstrap_servers="localhost:1", instance_id="i", partitions=1, idle_advance_ms=None,
                          metrics_port=None)
    worker = Worker(config, load_catalog())
    store = PartitionStore(tmp_path / "p0")
    task = worker.tasks[0] = PartitionTask(0, store, worker.catalog)
    worker.live.attach(task)
    committed = []

    def publish(batch):                       # the transaction, committed: as Worker._publish after it
        store.set_stream_time(task.engine.now)
        store.pending()
        store.commit(len(committed) + 1)
        committed.extend(task.changes)
        task.changes.clear()
        return None                           # (no failure)
    worker._publish = publish
    worker.live.feed = OneRecordFeed(record("repeat-buyer", STRICTER))
    # one commit of 3 paid orders: v1 member, not v2
    worker._commit_turns([[paid("new", f"o{day}", day) for day in range(1, 4)]])
    for _ in range(3):
        worker._commit_turns([[]])
    assert "repeat-buyer" not in store.get("new").member
    assert [c.change for c in committed if c.segment == "repeat-buyer"] in ([], ["entered", "exited"])


def test_the_time_for_re_evaluation_is_shared_by_the_partitions_of_one_commit(tmp_path, monkeypatch):
    """One commit's chunks have chunk_seconds between them, not each: with many partitions mid-pass
    a commit (and the input waiting behind it) stays short. Past the time, each partition still
    takes its first thousand customers, so every pass moves."""
    tasks = []
    for p in (0, 1):
        store = PartitionStore(tmp_path / f"p{p}")
        engine = Engine(load_catalog(), store)
        for n in range(2500):
            engine.apply(order_paid(f"c{p}-{n:04d}", DAY, f"o{p}-{n}", 100.0))
        store.set_stream_time(engine.now)
        store.pending()
        store.commit(1)
        tasks.append(PartitionTask(p, store, load_catalog()))
    live = LiveDefinitions(FILE, None, chunk_seconds=0.5)
    for task in tasks:
        live.attach(task)
        task.store.pending()
        task.store.commit(2)
    live.file = {**FILE, "loyal": LOYAL3}
    live.refresh(tasks)

    class Clock:                 # each look at the clock finds 0.3 s more gone
        now = 0.0

        @classmethod
        def perf_counter(cls) -> float:
            cls.now += 0.3
            return cls.now
    monkeypatch.setattr("stream.definitions.live.time", Clock)
    assert live.work(tasks)
    # the deadline is 0.8: partition 0 looks at 0.6 (goes on) and 0.9 (stops after 2000);
    # partition 1 looks at 1.2, past the same deadline, after its first 1000
    assert [live.running[p].after for p in (0, 1)] == ["c0-1999", "c1-0999"]
    for task in tasks:
        task.store.close()
