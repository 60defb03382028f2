"""The per-message path both runtimes share (stream.runtime.intake.Intake): bytes + key + topic in, an event
to apply or a dead letter with a reason out, never an exception. Also the same rules in replay and
backfill (the replays of what the workers read)."""
from __future__ import annotations

import dataclasses
import io
import json
import time
import tracemalloc
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream.runtime.settings import WorkerConfig
from stream.engine.core import Engine
from stream.model.events import DeadLetter, Event
from stream.replay.driver import PREFIX_BYTES, replay
from stream.rules.catalog import load_catalog
from stream.runtime.batch import apply_counted
from stream.runtime.intake import Intake
from stream.model.time import HOUR, SECOND, format_rfc3339, from_datetime, parse_rfc3339

CONFIG = WorkerConfig(input_topics=("shop-events",), routed_topics=("orders",), group_id="g")
KEYED, ROUTED, REPARTITION = "shop-events", "orders", CONFIG.repartition_topic
WALL = parse_rfc3339("2026-06-01T12:00:00Z")
SKEW = CONFIG.max_future_skew_ms * 1000


def paid(customer: str = "c-1", at: str = "2026-06-01T11:00:00Z", event_id: str = "e-1") -> bytes:
    return json.dumps({"type": "order_paid", "event_id": event_id, "customer_id": customer, "occurred_at": at,
                       "order_id": "o-1", "amount": 10}).encode()


# ---- keys ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key", [b"c-2", b"", None, b"\xff\xfe", b"x" * 1000])
def test_a_keyed_topic_needs_the_customer_id_as_key(key):
    got = Intake(CONFIG).admit(KEYED, key, paid("c-1"), WALL)
    assert isinstance(got, DeadLetter), got
    assert "'c-1'" in got.reason and "customer_id" in got.reason
    assert ("no key" in got.reason) if key is None else ("key " in got.reason)
    assert len(got.reason) < 300                  # a hostile key is cut short in the reason
    if key == b"c-2":
        assert "'c-2'" in got.reason


def test_matching_keys_pass_on_keyed_and_repartition_topics_and_routed_ones_take_any_key():
    intake = Intake(CONFIG)
    assert isinstance(intake.admit(KEYED, b"c-1", paid("c-1"), WALL), Event)
    assert isinstance(intake.admit(REPARTITION, b"c-1", paid("c-1"), WALL), Event)
    assert isinstance(intake.admit(ROUTED, b"o-1", paid("c-1"), WALL), Event)
    assert isinstance(intake.admit(ROUTED, None, paid("c-1"), WALL), Event)
    non_ascii = paid("клиент-1")
    assert isinstance(intake.admit(KEYED, "клиент-1".encode(), non_ascii, WALL), Event)


# ---- clock skew ------------------------------------------------------------------------------------

def _at(micros: int) -> str:
    return format_rfc3339(micros)


@pytest.mark.parametrize("topic", [KEYED, ROUTED])
def test_an_event_too_far_ahead_of_the_wall_clock_is_a_dead_letter(topic):
    intake = Intake(CONFIG)
    for at in ("8999-01-01T00:00:00Z", _at(WALL + SKEW + 1)):
        got = intake.admit(topic, b"c-1", paid(at=at), WALL)
        assert isinstance(got, DeadLetter), (at, got)
        assert "max_future_skew_ms" in got.reason and "ahead of the clock" in got.reason
    assert isinstance(intake.admit(topic, b"c-1", paid(at=_at(WALL + SKEW)), WALL), Event)   # the bound itself
    assert isinstance(intake.admit(topic, b"c-1", paid(at="1990-01-01T00:00:00Z"), WALL), Event)   # late is fine


def test_the_skew_bound_moves_with_each_batch_wall_clock():
    intake, at = Intake(CONFIG), _at(WALL + SKEW + 30 * 60 * SECOND)
    assert isinstance(intake.admit(KEYED, b"c-1", paid(at=at), WALL), DeadLetter)
    assert isinstance(intake.admit(KEYED, b"c-1", paid(at=at), WALL + HOUR), Event)      # a later batch
    assert isinstance(intake.admit(KEYED, b"c-1", paid(at=at), WALL), DeadLetter)        # and back


def test_no_skew_bound_when_disabled():
    intake = Intake(dataclasses.replace(CONFIG, max_future_skew_ms=None))
    assert isinstance(intake.admit(KEYED, b"c-1", paid(at="8999-01-01T00:00:00Z"), WALL), Event)


# ---- both runtimes call it ---------------------------------------------------------------------------

def test_the_native_worker_admits_through_intake():
    from stream.worker.loop import Worker
    worker = Worker(dataclasses.replace(CONFIG, bootstrap_servers="localhost:1", instance_id="i"), load_catalog())
    assert isinstance(worker.step.admit.__self__, Intake)


def test_the_faust_runtime_admits_through_intake_and_dead_letters_what_it_refuses():
    from stream.faust_runtime.app import FaustWorker
    config = dataclasses.replace(CONFIG, bootstrap_servers="localhost:1", guarantee="at_least_once", metrics_port=None)
    worker = FaustWorker(config, load_catalog())
    assert isinstance(worker.step.admit.__self__, Intake)
    part = SimpleNamespace(partition=0, engine=Engine(load_catalog()), changes=[])
    now = _at(int(time.time() * SECOND))

    def event(key, value, offset):
        return SimpleNamespace(message=SimpleNamespace(topic=KEYED, key=key, value=value, offset=offset,
                                                       partition=0, tp=("shop-events", 0)))
    share = [event(b"c-2", paid("c-1", now), 0), event(b"c-1", paid("c-1", "8999-01-01T00:00:00Z"), 1),
             event(b"c-1", paid("c-1", now, "e-2"), 2)]
    batch = worker.step.batch()
    worker._apply(part, share, batch)
    assert [record[0] for record in batch.output] == [config.dead_letter_topic] * 2
    reasons = [dict(record[4])["reason"].decode() for record in batch.output]
    assert "customer_id 'c-1'" in reasons[0] and "max_future_skew_ms" in reasons[1]
    assert batch.outcomes[(KEYED, "order_paid", "applied")] == 1
    assert part.engine.store.get("c-1").paid_count == 1


# ---- the whole per-message path, fuzzed ----------------------------------------------------------------

def _text(pairs: list[tuple[str, str]]) -> str:
    """A JSON object from (key, value-as-JSON-text) pairs, repeats kept."""
    return "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in pairs) + "}"


numbers = st.one_of(st.integers(-10, 10**6).map(str), st.sampled_from(
    ["1e15", "1.0000000000000002e15", "1.7e308", "1e400", "-1e400", "-0", "1e-400", "9" * 400, "0.1", "NaN",
     "Infinity", "1E3"]))
strings = st.text(max_size=8).map(json.dumps)
instants = st.sampled_from(["2026-06-01T11:00:00Z", "2026-06-01T11:00:00Z", "2026-06-01T18:00:00Z",
                            "2026-06-01T18:00:00.000001Z",
                            "8999-12-31T23:59:59Z", "1899-12-31T23:59:59Z", "2026-06-01T11:00:00", "nope"])
scalars = st.one_of(numbers, strings, st.sampled_from(["true", "false", "null"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3).map(lambda xs: "[" + ",".join(xs) + "]"),
    st.lists(st.tuples(st.sampled_from(["a", "type", "amount", "custom"]), inner), max_size=3).map(_text)),
    max_leaves=8)
TYPES = ["order_placed", "order_paid", "order_cancelled", "product_viewed", "cart_updated", "cart_abandoned",
         "customer_updated", "customer_erased", "refund"]
FIELDS = {
    "order_id": strings, "amount": numbers, "total": numbers, "value": numbers, "currency": st.just('"USD"'),
    "product_id": strings, "category": strings, "cart_id": strings,
    "items": st.lists(st.lists(st.tuples(st.sampled_from(["product_id", "quantity", "price", "category"]),
                                         st.one_of(numbers, strings)), max_size=5).map(_text), max_size=3)
                .map(lambda xs: "[" + ",".join(xs) + "]"),
    "attributes": st.lists(st.tuples(st.sampled_from(["city", "custom", "email_opt_in", "birth_date"]),
                                     st.one_of(values, st.just('{"tier":"a","tier":"b"}'))), max_size=4).map(_text),
}


amounts = st.one_of(st.integers(0, 10**6).map(str), st.just("1e15"))
item = st.tuples(strings.filter(lambda t: t != '""'), st.integers(1, 3), amounts).map(
    lambda t: _text([("product_id", t[0]), ("quantity", str(t[1])), ("price", t[2])]))
VALID = {   # per type: its fields, each with values the contract takes
    "order_placed": {"order_id": st.just('"o-1"'), "total": amounts, "currency": st.just('"USD"'),
                     "items": st.lists(item, max_size=2).map(lambda xs: "[" + ",".join(xs) + "]")},
    "order_paid": {"order_id": st.just('"o-1"'), "amount": amounts},
    "order_cancelled": {"order_id": st.just('"o-1"')},
    "product_viewed": {"product_id": st.just('"p-1"'), "category": st.just('"books"')},
    "cart_updated": {"cart_id": st.just('"k-1"'), "value": amounts, "items": st.just('[{"sku":"x"}]')},
    "cart_abandoned": {"cart_id": st.just('"k-1"'), "value": amounts},
    "customer_updated": {"attributes": st.just('{"city":"Lyon","custom":{"tier":"gold"}}')},
    "customer_erased": {},
}


@st.composite
def messages(draw) -> bytes:
    """JSON-ish events: mostly valid ones, then mutated: fields with wrong or huge values, repeated
    keys, deep nesting, bad UTF-8; and sometimes plain random bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=200))
    kind = draw(st.sampled_from(sorted(VALID)))
    pairs = [("type", json.dumps(kind)), ("event_id", json.dumps(draw(st.sampled_from(["e1", "e2"])))),
             ("customer_id", json.dumps(draw(st.sampled_from(["c-1", "c-2", ""])))),
             ("occurred_at", json.dumps(draw(instants)))]
    pairs += [(name, draw(value)) for name, value in VALID[kind].items()]
    if draw(st.booleans()):          # fields of any type, with any values
        pairs += draw(st.lists(st.sampled_from(sorted(FIELDS)).flatmap(lambda k: FIELDS[k].map(lambda v: (k, v))),
                               max_size=4))
    if draw(st.booleans()):          # a key repeated, or unknown fields
        pairs += draw(st.lists(st.tuples(st.sampled_from(["type", "customer_id", "amount", "x", "y"]), values),
                               max_size=2))
    depth = draw(st.sampled_from([0, 0, 0, 0, 63, 64, 65, 2000]))
    if depth:
        pairs.append(("deep", "[" * depth + "]" * depth))
    pairs = draw(st.permutations(pairs))
    raw = _text(pairs).encode()
    if draw(st.integers(0, 9)) == 0:
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.sampled_from([b"\xff", b"\xed\xa0\x80", b"\xc3", b"\\u", b"\x00"])) + raw[at:]
    return raw


keys = st.one_of(st.none(), st.sampled_from([b"c-1", b"c-1", b"c-2", b"", b"\xff"]))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from([KEYED, ROUTED, REPARTITION]), keys, messages(),
                          st.lists(st.tuples(st.text(max_size=5), st.binary(max_size=5)), max_size=2)),
                min_size=1, max_size=8))
def test_the_per_message_path_never_raises_and_every_dead_letter_has_a_reason(batch):
    intake, engine = Intake(CONFIG), Engine(load_catalog())
    for topic, key, value, _headers in batch:          # headers never change what a message becomes
        got = intake.admit(topic, key, value, WALL)
        if isinstance(got, DeadLetter):
            assert got.reason and got.raw == value
            continue
        assert isinstance(got, Event)
        if topic != ROUTED:
            assert key == got.customer_id.encode()
        assert from_datetime(got.occurred_at) - WALL <= SKEW
        if topic != ROUTED:
            apply_counted(engine, got, [])
    assert engine.now <= WALL + SKEW


# ---- replay: bounded lines, the same skew rule -------------------------------------------------------

def _replay(data: bytes, **kwargs) -> tuple[list[dict], list[dict], object]:
    out, dead = io.BytesIO(), io.BytesIO()
    summary = replay(io.BytesIO(data), Engine(load_catalog()), out, dead, **kwargs)
    def lines(b: io.BytesIO) -> list[dict]:
        return [json.loads(line) for line in b.getvalue().splitlines()]
    return lines(out), lines(dead), summary


def test_a_huge_line_is_never_held_whole_and_its_dead_letter_keeps_a_prefix_and_the_size():
    huge = b'{"type":"order_paid","pad":"' + b"x" * (20 << 20) + b'"}'
    data = paid("c-1", "2025-01-01T00:00:00Z") + b"\n" + huge + b"\n" + paid("c-2", "2025-01-01T00:00:01Z") + b"\n"
    tracemalloc.start()
    try:
        changes, dead, summary = _replay(data, max_bytes=1 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 6 << 20, f"peak {peak:,} bytes for a 20 MiB line"
    assert summary.events == 2 and summary.dead_letters == 1
    [letter] = dead
    assert letter["line"] == 2 and letter["bytes"] == len(huge) and letter["truncated"] is True
    assert huge.startswith(letter["raw"].encode()) and len(letter["raw"]) <= PREFIX_BYTES
    assert f"{len(huge)} bytes" in letter["reason"]
    assert {c["customer_id"] for c in changes} >= {"c-1", "c-2"}


@pytest.mark.parametrize("ending, last", [(b"\n", b"\n"), (b"\r\n", b"\r\n"), (b"\n", b"")])
def test_lines_at_the_size_limit(ending, last):
    """A line of max_bytes (its ending aside) is read, one byte more is a dead letter, kept whole."""
    line = paid()
    data = line + ending + line.replace(b"o-1", b"o-22") + last
    _, dead, summary = _replay(data, max_bytes=len(line))
    assert summary.events == 1 and len(dead) == 1
    assert dead[0]["line"] == 2 and "over the" in dead[0]["reason"] and "truncated" not in dead[0]


def test_replay_dead_letters_events_too_far_ahead_of_its_clock():
    now = parse_rfc3339("2026-06-01T12:00:00Z")
    data = b"\n".join([paid("c-1", "2026-06-01T11:00:00Z", "e-1"), paid("c-1", "8999-01-01T00:00:00Z", "e-2"),
                       paid("c-1", "2026-06-01T11:30:00Z", "e-3")]) + b"\n"
    changes, dead, summary = _replay(data, clock=now, skew=6 * HOUR)
    assert summary.events == 2 and [d["line"] for d in dead] == [2]
    assert "max_future_skew_ms" in dead[0]["reason"]
    assert all(c["at"].startswith("2026-06-01") for c in changes)
    _, dead, summary = _replay(data, clock=now, skew=None)
    assert summary.events == 3 and not dead


# ---- backfill: the same rule, through the same function ----------------------------------------------

def _backfill_history(dead: list):
    """A backfill's merged reader over one keyed partition, its dead letters collected in `dead`."""
    from stream.backfill.plan import Span
    from stream.backfill.reader import MergedHistory
    config = dataclasses.replace(CONFIG, bootstrap_servers="localhost:1")
    request = SimpleNamespace(config=config, from_time=None, until=None, read_committed=True)
    return MergedHistory(request, [Span(KEYED, 0, 0, 0)], lambda span, offset, letter: dead.append((offset, letter)))


def test_backfill_dead_letters_events_too_far_ahead_of_its_clock():
    dead: list = []
    history = _backfill_history(dead)
    try:
        source = history.sources[0]
        now = _at(int(time.time() * SECOND))
        source.buffer.extend([(0, b"c-1", paid("c-1", "8999-01-01T00:00:00Z")), (1, b"c-1", paid("c-1", now))])
        heap: list = []
        history._push_next(source, heap)
    finally:
        history.close()
    assert [offset for offset, _ in dead] == [0] and "max_future_skew_ms" in dead[0][1].reason
    assert len(heap) == 1 and heap[0][2] == 1


def test_backfill_dead_letters_an_event_keyed_otherwise_than_its_customer_as_a_worker_does():
    dead: list = []
    history = _backfill_history(dead)
    try:
        source = history.sources[0]
        event = paid("c-1", "2026-06-01T11:30:00Z")
        source.buffer.extend([(0, b"c-2", event), (1, None, event), (2, b"c-1", event)])
        heap: list = []
        history._push_next(source, heap)
    finally:
        history.close()
    intake = Intake(CONFIG)
    assert [(offset, letter.reason) for offset, letter in dead] == [
        (0, intake.admit(KEYED, b"c-2", event, 0).reason), (1, intake.admit(KEYED, None, event, 0).reason)]
    assert "'c-2'" in dead[0][1].reason and "'c-1'" in dead[0][1].reason
    assert len(heap) == 1 and heap[0][2] == 2


def test_worker_dead_letter_records_keep_at_most_the_topic_limit_and_say_the_whole_size():
    from stream.model.events import oversized
    from stream.runtime.intake import dead_letter
    from stream.runtime.topics import DEAD_LETTER_BYTES, DEAD_LETTER_ROOM
    small = DeadLetter("why", b"abc")
    key, value, headers = dead_letter(small, b"k", "t", 1, 7)
    assert key == b"k" and value == b"abc" and dict(headers) == {
        "reason": b"why", "source.topic": b"t", "source.partition": b"1", "source.offset": b"7"}
    big = b"x" * (DEAD_LETTER_BYTES + 5)
    key, value, headers = dead_letter(DeadLetter("why", big), None, "t", 1, 7)
    assert value == big[:DEAD_LETTER_BYTES - DEAD_LETTER_ROOM]
    assert dict(headers)["truncated.from.bytes"] == str(len(big)).encode()
    key, value, headers = dead_letter(oversized(b"head", 10_000, 100), None, "t", 1, 7)   # held in part only
    assert value == b"head" and dict(headers)["truncated.from.bytes"] == b"10000"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=st.integers(0, (16 << 20) + 100), key=st.one_of(st.none(), st.integers(0, 4 << 20)),
       reason=st.integers(0, 1 << 20), wide=st.booleans())
def test_a_dead_letter_record_as_a_whole_fits_the_dead_letter_topic(value, key, reason, wide):
    """The broker checks the topic's max.message.bytes against the whole record (key, value,
    headers): one over it would fail its batch on every retry, and the partition would stop."""
    from stream.runtime.intake import dead_letter
    from stream.runtime.topics import DEAD_LETTER_BYTES
    letter = DeadLetter(("\u00e9" if wide else "r") * reason, b"v" * value)
    k, v, headers = dead_letter(letter, None if key is None else b"k" * key, "t" * 249, 2**31 - 1, 2**63 - 1)
    framing = 1024                 # a record batch's header and each field's length prefix, generously
    assert (len(k or b"") + len(v) + sum(len(n) + len(h) for n, h in headers) + framing) <= DEAD_LETTER_BYTES
    assert v == letter.raw[:len(v)] and (k is None or k == b"k" * len(k))
    assert (len(v) < value) == ("truncated.from.bytes" in dict(headers))
    assert (key is not None and len(k) < key) == ("truncated.key.from.bytes" in dict(headers))


# ---- what the worker re-publishes or dead-letters fits where it goes -----------------------------------

@settings(max_examples=40, deadline=None)
@given(st.integers(1, (16 << 20) - (64 << 10)))
def test_a_routed_event_always_fits_the_repartition_topic(max_message_bytes):
    """A routed event is re-published whole, keyed by its customer id (longer than its own key,
    maybe): a broker default max.message.bytes (Kafka's 1 MiB) would refuse one near the input
    limit, and its batch would fail on every retry."""
    from stream.model import events as ev
    from stream.faust_runtime.topics import topics as faust_topics
    from stream.runtime.topics import PRODUCER_BATCH_BYTES, PRODUCER_MESSAGE_BYTES, worker_topics
    config = dataclasses.replace(CONFIG, max_message_bytes=max_message_bytes)
    largest_record = max_message_bytes + 4 * ev.MAX_ID_CHARS + 1024          # key and record framing
    for specs in (worker_topics(config), faust_topics(config)):
        limit = next(c for t, _, c in specs if t == REPARTITION)["max.message.bytes"]
        assert max(PRODUCER_BATCH_BYTES, largest_record) <= limit <= PRODUCER_MESSAGE_BYTES


def test_the_input_limit_stays_within_what_the_producers_send_whole():
    """A larger one could not be re-published (a routed event) nor dead-lettered whole."""
    from stream.runtime.options import MAX_MESSAGE_BYTES_LIMIT
    from stream.runtime.topics import DEAD_LETTER_BYTES, DEAD_LETTER_ROOM
    from tests.worker_settings import load, problems_of
    assert MAX_MESSAGE_BYTES_LIMIT == DEAD_LETTER_BYTES - DEAD_LETTER_ROOM
    assert load(["--max-message-bytes", str(MAX_MESSAGE_BYTES_LIMIT)]).max_message_bytes == MAX_MESSAGE_BYTES_LIMIT
    problems = problems_of(["--max-message-bytes", str(MAX_MESSAGE_BYTES_LIMIT + 1)])
    assert len(problems) == 1 and "must be at most 16711680" in problems[0]
