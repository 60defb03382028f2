"""A backfill's jobs (stream.backfill.jobs) without a broker: engines over disjoint sets of partitions,
their changes placed and merged, give one engine's output over the merge of all the partitions,
byte for byte, with its states and counts; the split of the partitions; and a job that fails or
dies failing the run with its reason. Against a broker: tests/integration/test_backfill.py."""
from __future__ import annotations

import heapq
import io
import json
import os
import random

import pytest
from confluent_kafka import KafkaError, KafkaException
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.histories import CUSTOM_YAML, ORDER_HEAVY, PROFILE_HEAVY, scenarios
from stream.backfill import jobs
from stream.backfill.handoff import dumped
from stream.backfill.jobs import CHANGE, Job, JobFailed, Jobs, finish, in_order, placed, reporting, split
from stream.backfill.plan import Span
from stream.backfill.request import Request
from stream.backfill.sinks import FileSink
from stream.engine.core import STATS_FIELDS, Engine
from stream.engine.store import MemoryStore
from stream.model.changes import encode_change
from stream.model.decoding import Decoder
from stream.model.events import Event
from stream.model.time import DAY, from_datetime
from stream.rules.catalog import load_catalog, parse_catalog
from stream.runtime.settings import WorkerConfig

_decode = Decoder().decode


def _partitions(histories: list, count: int, seed: int) -> list[list[Event]]:
    """Several scenarios' events (each with customers of its own) in `count` partitions, every
    customer in one, each partition interleaving its customers' events in their arrival order."""
    rng = random.Random(seed)
    owner: dict[str, int] = {}
    queues: list[list[list[Event]]] = [[] for _ in range(count)]
    for k, history in enumerate(histories):
        by_partition: dict[int, list[Event]] = {}
        for raw in history.raws:
            event = json.loads(raw)
            event["customer_id"] = f"s{k}-{event['customer_id']}"
            decoded = _decode(json.dumps(event).encode())
            assert isinstance(decoded, Event)
            p = owner.setdefault(decoded.customer_id, rng.randrange(count))
            by_partition.setdefault(p, []).append(decoded)
        for p, events in by_partition.items():
            queues[p].append(events)
    partitions: list[list[Event]] = []
    for streams in queues:
        merged: list[Event] = []
        while streams := [s for s in streams if s]:
            merged.append(rng.choice(streams).pop(0))
        partitions.append(merged)
    return partitions


def _entries(partitions: list[list[Event]], indices: list[int]) -> list:
    """MergedHistory's order over the partitions: their next events by (occurred_at, index, offset)."""
    return list(heapq.merge(*[[(from_datetime(e.occurred_at), i, offset, e) for offset, e in enumerate(partitions[p])]
                              for i, p in enumerate(indices)]))


def _jobs_equal_one_engine(catalog_of, histories, count: int, groups: int, seed: int, until: int | None) -> None:
    partitions = _partitions(histories, count, seed)
    one = Engine(catalog_of(), MemoryStore())
    out: list = []
    for _, _, _, event in _entries(partitions, list(range(count))):
        one.apply(event, out)
    if until is not None:
        one.advance(until, out)

    rng = random.Random(seed)
    owned: list[list[int]] = [[] for _ in range(groups)]
    for p in range(count):
        owned[rng.randrange(groups)].append(p)
    owned = [ps for ps in owned if ps]
    engines = [Engine(catalog_of(), MemoryStore()) for _ in owned]
    records: list[list] = [[] for _ in owned]
    for engine, ps, sent in zip(engines, owned, records, strict=True):
        # a job's own merge, its sources indexed from 0 (as MergedHistory indexes them), placed by `ps`
        placed(engine, _entries(partitions, ps), ps, sent, full=lambda: None)
    newest = max(engine.now for engine in engines)
    for engine, sent in zip(engines, records, strict=True):
        finish(engine, newest, until, sent)

    merged = list(in_order([iter(sent) for sent in records]))
    assert {kind for _, kind, _, _ in merged} <= {CHANGE}
    assert [value for *_, value in merged] == [encode_change(c) for c in out]
    assert [key for _, _, key, _ in merged] == [c.customer_id.encode() for c in out]
    assert list(heapq.merge(*[dumped(e.store) for e in engines])) == list(dumped(one.store))     # type: ignore[arg-type]
    summed = [sum(getattr(e.stats, name) for e in engines) for name in STATS_FIELDS]
    assert summed == [getattr(one.stats, name) for name in STATS_FIELDS]
    assert {e.now for e in engines} == {one.now}


# Late events (each partition's history out of order), duplicates, erasures, timers due between
# the events of other partitions, and --until: the jobs give one engine's bytes.
UNTIL = st.none() | st.sampled_from((1, DAY, 90 * DAY, 400 * DAY))


@settings(max_examples=60, deadline=None)
@given(st.lists(scenarios(ORDER_HEAVY), min_size=1, max_size=8), st.integers(1, 6), st.integers(1, 4),
       st.integers(0, 2**32), UNTIL)
def test_jobs_give_one_engines_output(histories, count, groups, seed, until):
    _jobs_equal_one_engine(load_catalog, histories, count, groups, seed, None if until is None else
                           max(from_datetime(_decode(r).occurred_at) for h in histories for r in h.raws) + until)


@settings(max_examples=30, deadline=None)
@given(st.lists(scenarios(PROFILE_HEAVY), min_size=1, max_size=8), st.integers(1, 6), st.integers(1, 4),
       st.integers(0, 2**32), UNTIL)
def test_jobs_give_one_engines_output_custom_catalog(histories, count, groups, seed, until):
    _jobs_equal_one_engine(lambda: parse_catalog(CUSTOM_YAML), histories, count, groups, seed, None if until is None
                           else max(from_datetime(_decode(r).occurred_at) for h in histories for r in h.raws) + until)


# ---- how the partitions are split --------------------------------------------------------------------

def _request(**settings: object) -> Request:
    return Request(config=WorkerConfig(bootstrap_servers="127.0.0.1:1", **settings))   # type: ignore[arg-type]


def test_each_partition_number_goes_whole_to_one_job_balanced_by_records():
    spans = [Span(t, p, 0, size) for t in ("a", "b") for p, size in enumerate((100, 10, 10, 80, 0))]
    groups = split(_request(input_topics=("a", "b")), spans, 2)
    assert sorted(s.key for g in groups for s in g) == sorted(s.key for s in spans)
    assert [sorted({s.partition for s in g}) for g in groups] == [[0, 4], [1, 2, 3]]
    assert all({s.topic for s in g if s.partition == p} == {"a", "b"} for g in groups for p in {s.partition for s in g})
    assert len(split(_request(input_topics=("a", "b")), spans, 9)) == 5      # one job per partition number at most
    assert split(_request(input_topics=("a", "b")), spans, 1) == [spans]


def test_routed_topics_keep_one_job():
    """A routed topic's partitions hold any customer's events: the partitions cannot be split."""
    spans = [Span("a", p, 0, 10) for p in range(3)] + [Span("r", p, 0, 10) for p in range(3)]
    assert split(_request(input_topics=("a",), routed_topics=("r",)), spans, 3) == [spans]


# ---- a job that fails or dies fails the backfill ------------------------------------------------------

def _second_fails(job: Job, conn) -> None:
    """As a job: job 1 fails with a reason; the others wait for the backfill (and are stopped)."""
    with reporting(conn):
        if job.number == 1:
            raise RuntimeError("the reason")
        conn.recv()


def _second_dies(job: Job, conn) -> None:
    if job.number == 1:
        os._exit(3)
    conn.recv()


def _kafka_fails(job: Job, conn) -> None:
    with reporting(conn):
        raise KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART, "the topic went away"))


def _started(monkeypatch, target) -> Jobs:
    monkeypatch.setattr(jobs, "work", target)
    spans = [Span("a", p, 0, 5) for p in range(3)]
    request = _request(input_topics=("a",))
    return Jobs([Job(n, request, {}, "test", [span], {s.key: s.partition for s in spans}, 0)
                 for n, span in enumerate(spans)], spans)


@pytest.mark.parametrize("target, error, reason", [
    (_second_fails, JobFailed, "backfill job 1 (a:1): RuntimeError: the reason"),
    (_second_dies, JobFailed, "backfill job 1 (a:1) died (exit code 3)"),
    (_kafka_fails, KafkaException, "the topic went away"),
])
def test_a_job_that_fails_or_dies_fails_the_backfill_with_its_reason(monkeypatch, target, error, reason):
    running = _started(monkeypatch, target)
    written = io.BytesIO()
    try:
        with pytest.raises(error) as failed:
            running.merge(FileSink(written), io.BytesIO())
    finally:
        running.close()
    assert reason in str(failed.value)
    if error is KafkaException:
        assert failed.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    assert written.getvalue() == b""
    # every job ended: the one that failed, and those stopped after it
    assert not [r for r in running._running if r.process.is_alive()]


def test_the_jobs_states_merge_by_customer_and_a_customer_in_two_jobs_fails_the_hand_off():
    """Keyed topics partitioned otherwise than alike would put a customer in two jobs: no job holds
    the state one engine would, so the hand-off fails instead of writing either."""
    from stream.backfill.jobs import _by_customer
    assert list(_by_customer([[("a", b"1"), ("c", b"3")], [("b", b"2")]])) == [("a", b"1"), ("b", b"2"), ("c", b"3")]
    with pytest.raises(JobFailed, match="customer 'b' has events in partitions of two jobs"):
        list(_by_customer([[("a", b"1"), ("b", b"2")], [("b", b"9")]]))
