"""Erasure on a real broker. The topics the runtimes create carry the configs that bound how long
an erased customer's records stay (segment.ms, max.compaction.lag.ms, delete.retention.ms,
retention.ms). Tansu does not compact its memory storage (docs/embedded-broker.md), so compaction
itself is Kafka's; what is checked here, on Tansu and on an external Kafka alike, is that the
broker holds every config as specified. And both runtimes compact an erased customer's values out
of their local RocksDB files."""
from __future__ import annotations

import time
import uuid
from pathlib import Path

import msgspec
import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType
from rocksdict import AccessType, Options, Rdict

from stream.faust_runtime import topics as faust_runtime
from stream.kafka.topic_admin import ensure_topics
from stream.runtime.settings import WorkerConfig
from stream.rules.catalog import load_catalog
from stream.runtime.topics import worker_topics
from stream.model.state import CustomerState, dump_state, load_state
from stream.storage.keys import META, WRITTEN_AT_KEY, pack_time
from stream.worker.loop import Worker
from tests.erasure_topics import expected, personal_topics

from . import conformance
from .workers import Running, names, settings


def test_the_broker_holds_the_erasure_bounds_of_every_topic(kafka_bootstrap, unique_topic):
    config = WorkerConfig(
        bootstrap_servers=kafka_bootstrap, group_id=unique_topic, partitions=2,
        input_topics=(f"{unique_topic}-in",), routed_topics=(f"{unique_topic}-orders",),
        changes_topic=f"{unique_topic}-changes", membership_topic=f"{unique_topic}-membership",
        dead_letter_topic=f"{unique_topic}-dead", definitions_topic=f"{unique_topic}-defs",
        erasure_max_lag_ms=3_600_000, changes_retention_ms=2 * 86_400_000, dead_letter_retention_ms=86_400_000)
    specs = {spec[0]: spec for spec in [*worker_topics(config), *faust_runtime.topics(config)]}
    ensure_topics(kafka_bootstrap, specs.values())
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    wanted = personal_topics(config)
    futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, name) for name in wanted])
    for resource, future in futures.items():
        held = {key: entry.value for key, entry in future.result(timeout=30).items()}
        bound = expected(config, resource.name)
        assert {key: held.get(key) for key in bound} == {k: str(v) for k, v in bound.items()}, resource.name


# ---- the runtimes reach their local stores ---------------------------------------------------------

_OTHERS = [uuid.uuid4().hex for _ in range(6)]


def _lines(city: str) -> list[bytes]:
    def ev(kind: str, cid: str, n: int, **fields) -> bytes:
        return msgspec.json.encode({"type": kind, "event_id": f"e{n}", "customer_id": cid,
                                    "occurred_at": f"2025-03-0{1 + n // 10}T00:00:00Z", **fields})
    others = [ev("customer_updated", f"c{n}", n, attributes={"city": town}) for n, town in enumerate(_OTHERS)]
    return [*others, ev("customer_updated", "c-gone", 7, attributes={"city": city}),
            ev("customer_erased", "c-gone", 12)]


def _files_holding(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def _stored_cities(root: Path) -> set[str]:
    """The cities in every RocksDB database under root, read as the stores hold them."""
    cities = set()
    for current in root.rglob("CURRENT"):
        db = Rdict(str(current.parent), Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            for key, value in db.items():
                if not key.startswith(META) and not key.startswith(b"__faust"):
                    cities.add(load_state(value).city)
        finally:
            db.close()
    return cities


def _until_gone(root: Path, needle: bytes, alive, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while _files_holding(root, needle):
        assert alive(), "the worker stopped"
        assert time.monotonic() < deadline, f"still in {_files_holding(root, needle)}"
        time.sleep(0.5)


def test_the_native_worker_compacts_erased_customers_out_of_its_store(kafka_bootstrap, unique_topic, tmp_path):
    """First lifetime: a customer written (in an SST file once the store is closed). Second: the
    customer erased; the compaction is not due yet (a day), so the store's files still hold the
    value. The third opens a store holding deletions and compacts it at its first look around: the
    value is gone from every file."""
    city = uuid.uuid4().hex
    s = settings(kafka_bootstrap, unique_topic, tmp_path / "state")
    ensure_topics(kafka_bootstrap, worker_topics(s))
    lines = _lines(city)
    conformance.produce(kafka_bootstrap, s.input_topics[0], lines[:-1])
    with Running(Worker(s, load_catalog())) as running:
        running.wait_for(len(lines) - 1)
    conformance.produce(kafka_bootstrap, s.input_topics[0], lines[-1:])
    with Running(Worker(s, load_catalog())) as running:
        running.wait_for(1)
    assert _files_holding(s.state_dir, city.encode()), "expected the erased value in the store until compacted"
    with Running(Worker(s, load_catalog())) as running:
        _until_gone(s.state_dir, city.encode(), running.thread.is_alive)
    assert _stored_cities(s.state_dir) == set(_OTHERS), "the others must stay"


def test_the_faust_runtime_compacts_erased_customers_out_of_its_table(kafka_bootstrap, unique_topic, start, tmp_path):
    """The same three lifetimes for the Faust runtime's RocksDB table (one database per partition)."""
    city = uuid.uuid4().hex
    s = names(unique_topic)
    ensure_topics(kafka_bootstrap, faust_runtime.topics(s))
    lines = _lines(city)
    conformance.produce(kafka_bootstrap, s.input_topics[0], lines[:-1])
    state = tmp_path / "faust-state"
    first = start(s, state_dir=state)
    first.wait_committed({s.input_topics[0]: len(lines) - 1})
    first.terminate()
    conformance.produce(kafka_bootstrap, s.input_topics[0], lines[-1:])
    eraser = start(s, state_dir=state)
    eraser.wait_committed({s.input_topics[0]: len(lines)})
    eraser.terminate()
    assert _files_holding(state, city.encode()), "expected the erased value in the table until compacted"
    second = start(s, state_dir=state)
    second.wait_ready(timeout=60)
    _until_gone(state, city.encode(), lambda: second.proc.poll() is None)
    second.terminate()
    assert _stored_cities(state) == set(_OTHERS), "the others must stay"


@pytest.mark.parametrize("days_away, rebuilt", [(6, False), (8, True)])
def test_a_store_away_longer_than_tombstones_live_is_rebuilt(kafka_bootstrap, unique_topic, tmp_path,
                                                             days_away, rebuilt):
    """A store that has not seen its changelog for longer than the changelog keeps tombstones
    (7 days) may hold a customer erased meanwhile whose tombstone is gone: caught up from its
    checkpoint it would keep the customer for ever. Simulated: a customer only the store knows
    (what such a store holds), and its last-written time set back. Rebuilt from the changelog, the
    store forgets it; a store away for less keeps what it has (and catches up as before)."""
    s = settings(kafka_bootstrap, unique_topic, tmp_path / "state")
    ensure_topics(kafka_bootstrap, worker_topics(s))
    lines = _lines(uuid.uuid4().hex)[:-1]
    conformance.produce(kafka_bootstrap, s.input_topics[0], lines)
    with Running(Worker(s, load_catalog())) as running:
        running.wait_for(len(lines))
    _haunt(sorted((s.state_dir / s.group_id).iterdir()), days_away)
    worker = Worker(s, load_catalog())
    with Running(worker):
        deadline = time.monotonic() + 60
        while len(worker.tasks) < s.partitions:
            assert time.monotonic() < deadline, "partitions not assigned"
            time.sleep(0.1)
    _assert_rebuilt(s.state_dir, rebuilt)


def _haunt(databases: list[Path], days_away: int) -> None:
    """In each database, a customer the changelog does not know (as if its tombstone had been
    compacted away unseen), and the store's last-written time `days_away` back."""
    ghost = dump_state(CustomerState(first_seen=0, last_seen=0, city="ghost-" + uuid.uuid4().hex))
    assert databases
    for path in databases:
        db = Rdict(str(path), Options(raw_mode=True))
        db[b"c-ghost"] = ghost
        db[WRITTEN_AT_KEY] = pack_time(int(time.time() * 1000) - days_away * 86_400_000)
        db.close()


def _assert_rebuilt(state_dir: Path, rebuilt: bool) -> None:
    cities = _stored_cities(state_dir)
    assert set(_OTHERS) <= cities
    assert any(city.startswith("ghost-") for city in cities if city) is not rebuilt


@pytest.mark.parametrize("days_away, rebuilt", [(6, False), (8, True)])
def test_a_faust_table_away_longer_than_tombstones_live_is_restored_whole(kafka_bootstrap, unique_topic, start,
                                                                          tmp_path, days_away, rebuilt):
    """The same for the Faust runtime's partition databases."""
    s = names(unique_topic)
    ensure_topics(kafka_bootstrap, faust_runtime.topics(s))
    lines = _lines(uuid.uuid4().hex)[:-1]
    conformance.produce(kafka_bootstrap, s.input_topics[0], lines)
    state = tmp_path / "faust-state"
    first = start(s, state_dir=state)
    first.wait_committed({s.input_topics[0]: len(lines)})
    first.terminate()
    _haunt(sorted((state / "v1" / "tables").glob("customers-*.db")), days_away)
    second = start(s, state_dir=state)
    second.wait_ready(timeout=60)
    second.terminate()
    _assert_rebuilt(state, rebuilt)


def test_an_input_topic_segments_produce_creates_has_the_workers_erasure_bound(kafka_bootstrap, unique_topic):
    """`segments produce` before any worker creates the input topic; a topic that exists keeps its
    configs, so without the worker's segment.ms its events would outlive the README's bound."""
    from rich.console import Console

    from stream.tools.produce import produce
    assert produce(kafka_bootstrap, unique_topic, events=1, partitions=2, console=Console(quiet=True)) == 0
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    future = admin.describe_configs([ConfigResource(ResourceType.TOPIC, unique_topic)])
    held = {key: entry.value for key, entry in next(iter(future.values())).result(timeout=30).items()}
    bound = expected(WorkerConfig(input_topics=(unique_topic,)), unique_topic)
    assert {key: held.get(key) for key in bound} == {k: str(v) for k, v in bound.items()}
