"""The incremental engine equals a from-scratch recomputation over the full history.

The engine keeps a small folded state per customer, re-evaluates only the segments an event can
affect, and moves customers by time through a deadline index. tests/oracle.py keeps nothing: it
replays the whole history and interprets the YAML definitions directly. For random histories
(duplicates, late events, cancellations, erasures, exact duration boundaries) these tests check:

1. after every event, the engine's memberships (engine.store) equal the oracle's for that history
   prefix at the engine's stream time, and equal the memberships rebuilt from the emitted changes;
2. between events (and after the last, up to `until`), the membership timeline rebuilt from the
   emitted time-driven changes equals the oracle at every instant a flip could happen; every
   time-driven change has cause "time", no event_id, and `at` exactly at an instant where the
   oracle flips that segment; every event-driven change names its event and the stream time;
3. the same calls give byte-identical changes -- also when the states go through their msgpack
   encoding and the engine restarts from them (Engine.restore) every few events -- and change ids
   are unique within a run (but for one known engine bug, pinned by the strict xfail test at the end).

Hand-written histories (@example) pin the paths random ones reach rarely: exact dedup and fsum
thresholds, window-shopper entered by time alone, 29 February birthdays, custom fields of each kind.
"""
from __future__ import annotations

import calendar
import datetime as dt
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings

from stream.model import events as ev
from stream.model.decoding import Decoder
from stream.model.changes import SegmentChange, encode_change
from stream.engine.core import Engine
from stream.engine.store import MemoryStore
from stream.rules.catalog import Catalog, load_catalog, parse_catalog
from stream.model.state import CustomerState, dump_state, load_state
from stream.model.time import DAY, format_rfc3339, from_datetime, parse_duration, parse_rfc3339

from tests import oracle
from tests.helpers import apply_change
from tests.histories import (CUSTOM_YAML, H12, ORDER_HEAVY, PROFILE_HEAVY, REFERENCES_RFM_YAML, REFERENCES_YAML,
                             RFM_TRAITS_YAML,
                             RFM_YAML, SPANS, TRAITS_YAML, Scenario, scenarios)

MEMBERSHIP = dict[str, frozenset[str]]

# ------------------------------------------------------------------------------------------------
# Running the engine


@dataclass
class Step:
    event: ev.Event
    before: int                          # stream time before this event (and its timers)
    now: int                             # stream time after it
    time_changes: list[SegmentChange]    # timers that fired on the way to the event
    event_changes: list[SegmentChange]   # caused by the event itself
    member: MEMBERSHIP                   # engine.store right after


@dataclass
class Run:
    steps: list[Step]
    last_now: int
    until: int
    tail: list[SegmentChange]            # from advance(until)
    final: MEMBERSHIP
    changes: list[SegmentChange]         # everything, in emission order


def memberships(engine: Engine) -> MEMBERSHIP:
    states = engine.store.states() if isinstance(engine.store, SerializingStore) else engine.store.items()
    return {c: frozenset(s.member) for c, s in states if s.member}


class SerializingStore(MemoryStore):
    """Keeps every state only as its msgpack bytes, the way a disk-backed store does."""

    def get(self, customer_id: str) -> CustomerState | None:
        data = dict.get(self, customer_id)
        return None if data is None else load_state(data)

    def put(self, customer_id: str, state: CustomerState) -> None:
        self[customer_id] = dump_state(state)

    def states(self) -> list[tuple[str, CustomerState]]:
        return [(c, load_state(data)) for c, data in self.items()]


def run(catalog: Catalog, scenario: Scenario, restart_every: int = 0) -> Run:
    """Apply the scenario to a fresh engine; with restart_every, keep states serialized and start a
    new engine from the stored states (Engine.restore) before every restart_every-th event."""
    store = SerializingStore() if restart_every else MemoryStore()
    engine = Engine(catalog, store)
    decoder = Decoder()
    steps, changes = [], []
    for i, (raw, tick) in enumerate(zip(scenario.raws, scenario.ticks, strict=True)):
        if restart_every and i % restart_every == restart_every - 1:
            now, engine = engine.now, Engine(catalog, store)
            engine.restore(store.states(), now)
        event = decoder.decode(raw)
        assert not isinstance(event, ev.DeadLetter), event
        before = engine.now
        out: list[SegmentChange] = []
        t = from_datetime(event.occurred_at)
        if tick is not None and i > 0 and t > before:
            engine.advance(before + (t - before) * tick // 4, out)   # an idle-partition tick
        engine.apply(event, out)
        split = next((k for k, c in enumerate(out) if c.cause == "event"), len(out))
        steps.append(Step(event, before, engine.now, out[:split], out[split:], memberships(engine)))
        changes += out
    last_now = engine.now
    until = last_now + scenario.until
    tail = engine.advance(until)
    changes += tail
    return Run(steps, last_now, until, tail, memberships(engine), changes)


# ------------------------------------------------------------------------------------------------
# Where flips can happen


def _durations(node: Any, spans: set[int], birthdays: set[int]) -> None:
    """Every duration in a definition: the only distances from an event at which time can flip a
    condition (birthdays flip at UTC midnights around each birthday instead)."""
    if isinstance(node, list):
        for child in node:
            _durations(child, spans, birthdays)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key in ("within", "ago", "without_order_within"):
                spans.add(parse_duration(value))
            elif key == "between":                       # a trait's window: enters, then leaves
                spans.update(parse_duration(v) for v in value)
            elif key == "birthday_within":
                birthdays.add(parse_duration(value) // DAY)
            elif key == "recency" and isinstance(value, list):     # rfm cuts: R drops at last + cut
                spans.update(parse_duration(v) for v in value)
            else:
                _durations(value, spans, birthdays)


class Flips:
    """Where the oracle's answer can change with no event: at t + span for every event time t and
    every span in the definitions; and for "birthday within N days", at the UTC midnights N - 1
    days before each birthday (it starts to hold) and the day after it (it stops)."""

    def __init__(self, definitions: dict[str, Any]):
        self.spans: set[int] = set()
        self.birthday_days: set[int] = set()
        _durations(definitions, self.spans, self.birthday_days)

    def instants(self, history: oracle.History, lo: int, hi: int) -> set[int]:
        """Candidate flip instants in (lo, hi], each also 1 microsecond earlier."""
        found = {t + span for t in set(history.times) for span in self.spans}
        if self.birthday_days:
            born = {e.attributes.birth_date for evs in history.applied.values() for _, e in evs
                    if isinstance(e, ev.CustomerUpdated) and e.attributes.birth_date not in (None, msgspec.UNSET)}
            for b in born:
                for year in range(_date(lo).year - 1, _date(hi).year + 2):
                    leap_day = (b.month, b.day) == (2, 29) and not calendar.isleap(year)
                    birthday = dt.date(year, b.month, 28 if leap_day else b.day)
                    found.add(_midnight(birthday + dt.timedelta(days=1)))
                    found |= {_midnight(birthday - dt.timedelta(days=n - 1)) for n in self.birthday_days}
        found |= {x - 1 for x in found}
        return {x for x in found if lo < x <= hi}


def _date(t: int) -> dt.date:
    return dt.date(1970, 1, 1) + dt.timedelta(days=t // DAY)


def _midnight(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days * DAY


# ------------------------------------------------------------------------------------------------
# The checks


def _view(timeline: dict[str, set[str]]) -> MEMBERSHIP:
    return {c: frozenset(s) for c, s in timeline.items() if s}


def check_time_moves(definitions: dict[str, Any], history: oracle.History, flips: Flips,
                     timeline: dict[str, set[str]], lo: int, hi: int,
                     changes: list[SegmentChange], where: str) -> None:
    """Between stream times lo and hi with no event (the history is fixed): the timeline from the
    time-driven changes equals the oracle at every candidate flip instant in (lo, hi]."""
    ats = []
    for change in changes:
        at = parse_rfc3339(change.at)
        assert change.cause == "time" and change.event_id is None, f"{where}: not a time move: {change}"
        assert lo < at <= hi, f"{where}: time move outside ({format_rfc3339(lo)}, {format_rfc3339(hi)}]: {change}"
        assert not ats or ats[-1] <= at, f"{where}: time moves out of order: {changes}"
        ats.append(at)
    if not history.times:
        assert not changes, f"{where}: time moves before any event: {changes}"
        return
    if hi <= lo:
        assert not changes
        return
    for change, at in zip(changes, ats, strict=True):         # each move sits exactly on a flip of the oracle
        entered = change.change == "entered"
        at_flip = change.segment in history.memberships(at, definitions).get(change.customer_id, ())
        just_before = change.segment in history.memberships(at - 1, definitions).get(change.customer_id, ())
        assert (at_flip, just_before) == (entered, not entered), (
            f"{where}: {change.change} {change.segment} at {change.at} is not a flip of the oracle "
            f"(member just before: {just_before}, at it: {at_flip})")
    candidates = flips.instants(history, lo, hi) | {a for at in ats for a in (at, at - 1) if lo < a}
    if any(oracle.references(d["when"]) for d in definitions.values()):
        # where memberships read the past, the oracle's own flips (t + span is no longer all)
        candidates |= {a for x in history.timeline(definitions).changes(lo, hi) for a in (x, x - 1) if lo < a}
    candidates |= {lo + 1, hi, lo + (hi - lo) // 2}
    position = 0
    for x in sorted(candidates):
        while position < len(changes) and ats[position] <= x:
            apply_change(timeline, changes[position])
            position += 1
        expected = history.memberships(x, definitions)
        assert _view(timeline) == expected, (
            f"{where}: at {format_rfc3339(x)} the engine's timeline says {_view(timeline)}, "
            f"the oracle {expected}")
    assert position == len(changes)


def check(definitions: dict[str, Any], catalog: Catalog, scenario: Scenario,
          traits: dict[str, Any] | None = None, rfm: dict[str, Any] | None = None) -> Run:
    result = run(catalog, scenario)
    events = [s.event for s in result.steps]
    histories = [oracle.History([], traits, rfm)]
    for i in range(len(events)):
        histories.append(oracle.History(events[:i + 1], traits, rfm, previous=histories[-1]))
    flips = Flips({"segments": definitions, "traits": traits or {}, "rfm": rfm or {}})
    timeline: dict[str, set[str]] = {}
    for i, step in enumerate(result.steps):
        where = f"before event #{i} ({step.event.event_id})"
        check_time_moves(definitions, histories[i], flips, timeline, step.before, step.now,
                         step.time_changes, where)
        where = f"event #{i} ({type(step.event).__name__} {step.event.event_id})"
        for change in step.event_changes:
            assert change.cause == "event" and change.event_id == step.event.event_id, f"{where}: {change}"
            assert change.customer_id == step.event.customer_id, f"{where}: moved someone else: {change}"
            assert parse_rfc3339(change.at) == step.now, f"{where}: not at stream time: {change}"
            apply_change(timeline, change)
        assert step.now == histories[i + 1].stream_time
        expected = histories[i + 1].memberships(step.now, definitions)
        assert step.member == expected, (
            f"{where} at {format_rfc3339(step.now)}: engine {step.member}, oracle {expected}")
        assert _view(timeline) == step.member, f"{where}: changes {_view(timeline)} vs state {step.member}"
    check_time_moves(definitions, histories[-1], flips, timeline, result.last_now, result.until,
                     result.tail, "after the last event")
    expected = histories[-1].memberships(result.until, definitions)
    assert result.final == expected == _view(timeline), (
        f"at until {format_rfc3339(result.until)}: engine {result.final}, oracle {expected}")

    for change in result.changes:
        assert change.definition_version == definitions[change.segment].get("version", 1), change

    # Change ids are unique within a run -- except that one repeats when a customer is erased and
    # the same event is then applied again at the same stream time (a known engine bug, pinned by
    # test_change_id_repeats_after_erasure_and_redelivery); so ids are compared per erasure epoch.
    epoch: dict[str, int] = {}
    ids = []
    for step in result.steps:
        ids += [(c.change_id, epoch.get(c.customer_id, 0)) for c in step.time_changes + step.event_changes]
        if isinstance(step.event, ev.CustomerErased):
            epoch[step.event.customer_id] = epoch.get(step.event.customer_id, 0) + 1
    ids += [(c.change_id, epoch.get(c.customer_id, 0)) for c in result.tail]
    assert len(ids) == len(set(ids)), f"change ids repeat: {result.changes}"
    encoded = [encode_change(c) for c in result.changes]
    again = run(catalog, scenario)
    assert [encode_change(c) for c in again.changes] == encoded, "a second fresh engine differs"
    restarted = run(catalog, scenario, restart_every=3)
    assert [encode_change(c) for c in restarted.changes] == encoded, (
        "an engine whose states went through dump_state/load_state and restarts (restore) differs")
    return result


# ------------------------------------------------------------------------------------------------
# Hand-written histories for paths random ones reach rarely (run first, on every run)


def history(*events: tuple[str, str, str, str, dict[str, Any]], until: int = 0,
            ticks: tuple[int | None, ...] | None = None) -> Scenario:
    """events: (type, event_id, customer_id, occurred_at, fields)."""
    raws = tuple(json.dumps({"type": kind, "event_id": event_id, "customer_id": customer,
                             "occurred_at": at, **fields}).encode()
                 for kind, event_id, customer, at, fields in events)
    return Scenario(raws, ticks or (None,) * len(raws), until)


def at(base: str, offset: int = 0) -> str:
    return format_rfc3339(parse_rfc3339(base) + offset)


T0 = "2024-01-01T00:00:00Z"
US = 1


def paid(event_id: str, offset: int, order: str, amount: float, customer: str = "c0") -> tuple:
    return ("order_paid", event_id, customer, at(T0, offset), {"order_id": order, "amount": amount})


def placed(event_id: str, offset: int, products: list[str], customer: str = "c0", **extra: Any) -> tuple:
    items = [{"product_id": p, "quantity": 1, "price": 10.0, "category": "phones"} for p in products]
    return ("order_placed", event_id, customer, at(T0, offset),
            {"order_id": f"o-{event_id}", "total": 10.0, "currency": "KZT", "items": items, **extra})


def viewed(event_id: str, offset: int, product: str, customer: str = "c0", category: str = "phones") -> tuple:
    return ("product_viewed", event_id, customer, at(T0, offset), {"product_id": product, "category": category})


def updated(event_id: str, when: str, customer: str = "c0", **attributes: Any) -> tuple:
    return ("customer_updated", event_id, customer, when, {"attributes": attributes})


DEFAULT_EXAMPLES = [
    # dedup at the 7-day boundary: 1us short of it the id is still a duplicate, at it no longer
    history(paid("d1", 0, "o1", 100.0), paid("d1", 7 * DAY - US, "o2", 100.0),
            paid("d1", 7 * DAY, "o3", 100.0), until=60 * DAY),
    # window-shopper entered by time alone, when the order block ends before the views expire;
    # a late view; a tick between events
    history(placed("w0", 0, ["p0"]), viewed("w1", H12, "p0"), viewed("w2", DAY, "p0"),
            viewed("w3", 2 * DAY, "p0"), viewed("w4", 3 * DAY, "p1"), viewed("w5", 2 * DAY - US, "p1"),
            viewed("w6", 3 * DAY + US, "p2"), until=8 * DAY, ticks=(None, None, 2, None, None, None, 4)),
    # cart-abandoner: an order at the very instant of abandoning cancels it, 1us later does not
    history(("cart_abandoned", "a1", "c0", at(T0), {"cart_id": "k", "value": 5.0}), placed("a2", 0, ["p0"]),
            ("cart_abandoned", "a3", "c0", at(T0, US), {"cart_id": "k", "value": 5.0}),
            placed("a4", DAY, ["p0"]), until=2 * DAY),
    # payments: a cancellation after payment, a payment after cancellation, a second payment, late
    history(paid("p1", 0, "o1", 10.0), paid("p2", DAY, "o2", 10.0), ("order_cancelled", "p3", "c0",
            at(T0, 2 * DAY), {"order_id": "o2"}), paid("p4", 3 * DAY, "o2", 10.0),
            paid("p5", 4 * DAY, "o1", 99999.0), paid("p6", H12, "o3", 10.0), until=200 * DAY),
    # loyal and champion on an exact fsum threshold (49999.7 + 0.1 + 0.2 == 50000.0), then at-risk,
    # churned exactly 180 days after the last payment
    history(paid("l1", 0, "o1", 49999.7), paid("l2", H12, "o2", 0.1), paid("l3", DAY, "o3", 0.2),
            paid("l4", DAY, "o4", 0.0), paid("l5", 2 * DAY, "o5", 0.0), until=180 * DAY + 2 * DAY),
    # erasure: memberships exit, state and dedup memory go; the same ids apply afresh
    history(paid("r1", 0, "o1", 10.0), paid("r2", DAY, "o2", 10.0),
            ("customer_erased", "x1", "c0", at(T0, DAY), {}), paid("r2", DAY, "o2", 10.0),
            paid("r1", 2 * DAY, "o1", 10.0), until=61 * DAY),
]


def _examples(cases: list[Scenario]) -> Any:
    def decorate(test: Any) -> Any:
        for case in reversed(cases):
            test = example(case)(test)
        return test
    return decorate


# ------------------------------------------------------------------------------------------------
# The default catalog

DEFAULT_DEFINITIONS = oracle.load_definitions()
DEFAULT_CATALOG = load_catalog()
PROPERTY = settings(max_examples=700, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_default_catalog_durations_are_the_ones_generated() -> None:
    spans: set[int] = set()
    _durations(DEFAULT_DEFINITIONS, spans, set())
    assert spans == set(SPANS)
    assert set(DEFAULT_DEFINITIONS) == {s.name for s in DEFAULT_CATALOG.segments}


@PROPERTY
@given(scenarios(ORDER_HEAVY))
@_examples(DEFAULT_EXAMPLES)
def test_default_catalog_incremental_equals_scratch(scenario: Scenario) -> None:
    check(DEFAULT_DEFINITIONS, DEFAULT_CATALOG, scenario)


# ------------------------------------------------------------------------------------------------
# A catalog exercising the other operators

CUSTOM_DEFINITIONS = oracle.load_definitions(CUSTOM_YAML)
CUSTOM_EXAMPLES = [
    # 29 February: on 28 February in a common year (2025), on 29 February in a leap year (2024)
    history(updated("b1", "2025-02-19T12:00:00Z", birth_date="1992-02-29", email_opt_in=True),
            updated("b2", "2025-02-19T12:00:00Z", customer="c1", birth_date="1991-03-01"), until=12 * DAY),
    history(updated("b1", "2024-02-20T00:00:00Z", birth_date="2000-02-29", email_opt_in=True),
            updated("b2", "2024-02-20T00:00:00Z", customer="c1", birth_date="1990-02-28"), until=12 * DAY),
    # birthdays across the new year, and a birthday set on the birthday itself, then cleared
    history(updated("n1", "2023-12-27T00:00:00Z", birth_date="1996-01-02"),
            updated("n2", "2023-12-31T00:00:00Z", customer="c1", birth_date="1988-12-31"),
            updated("n3", "2024-01-01T00:00:00Z", customer="c1", birth_date=None), until=370 * DAY),
    # custom fields of every kind: true is not 1, 1.0 is 1, text is not a number
    history(updated("k1", at(T0), custom={"tier": True, "score": "3"}),
            updated("k2", at(T0, DAY), custom={"tier": 1.0}), updated("k3", at(T0, DAY), customer="c1",
            custom={"tier": "gold", "score": 10}), updated("k4", at(T0, 2 * DAY), customer="c1",
            custom={"score": 9.99}, city="Almaty"), until=DAY),
    # average_order_value on an exact fsum threshold: (59999.7 + 0.1 + 0.2) / 3 == 20000.0
    history(updated("v1", at(T0), custom={"tier": "gold"}), placed("v2", 0, ["p0"], city="Almaty"),
            paid("v3", 0, "o1", 59999.7), paid("v4", H12, "o2", 0.1), paid("v5", DAY, "o3", 0.2),
            until=31 * DAY),
]
CUSTOM_CATALOG = parse_catalog(CUSTOM_YAML)


@PROPERTY
@given(scenarios(PROFILE_HEAVY))
@_examples(CUSTOM_EXAMPLES)
def test_custom_catalog_incremental_equals_scratch(scenario: Scenario) -> None:
    check(CUSTOM_DEFINITIONS, CUSTOM_CATALOG, scenario)


# ------------------------------------------------------------------------------------------------
# A catalog of computed traits

TRAITS_DEFINITIONS = oracle.load_definitions(TRAITS_YAML)
TRAITS = oracle.load_traits(TRAITS_YAML)
TRAITS_CATALOG = parse_catalog(TRAITS_YAML)
TRAITS_EXAMPLES = [
    # a payment leaves orders_7d exactly 7 days after it; a cancellation after payment takes it out,
    # a payment after cancellation counts for nothing; a late payment inside the window
    history(paid("t1", 0, "o1", 50000.0), paid("t2", DAY, "o2", 0.1), paid("t3", DAY + H12, "o3", 0.2),
            ("order_cancelled", "t4", "c0", at(T0, 2 * DAY), {"order_id": "o2"}),
            paid("t5", 2 * DAY, "o2", 100.0), paid("t6", H12, "o4", 16666.67), until=31 * DAY),
    # between [7d, 1d]: counted from 1 day after the payment until 7 days after it
    history(paid("b1", 0, "o1", 10.0), paid("b2", 3 * DAY, "o2", 10.0), until=11 * DAY, ticks=(None, 2)),
    # most_frequent ties go to the smallest value; views in and out of the 1-day window
    history(placed("m1", 0, ["p0"]), ("order_placed", "m2", "c0", at(T0, H12), {
                "order_id": "o-m2", "total": 10.0, "currency": "KZT", "city": "Almaty", "items": [
                    {"product_id": "p1", "quantity": 1, "price": 10.0, "category": "books"},
                    {"product_id": "p2", "quantity": 1, "price": 10.0, "category": "books"}]}),
            placed("m3", DAY, ["p0"]), viewed("m4", DAY, "p0"), viewed("m5", DAY + H12, "p1"),
            viewed("m6", 2 * DAY - US, "p2", category="books"), until=32 * DAY),
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(ORDER_HEAVY))
@_examples(TRAITS_EXAMPLES)
def test_traits_catalog_incremental_equals_scratch(scenario: Scenario) -> None:
    check(TRAITS_DEFINITIONS, TRAITS_CATALOG, scenario, TRAITS)


# ------------------------------------------------------------------------------------------------
# RFM scores (docs/rfm.md)

RFM_DEFINITIONS = oracle.load_definitions(RFM_YAML)
RFM = oracle.load_rfm(RFM_YAML)
RFM_CATALOG = parse_catalog(RFM_YAML)
RFM_EXAMPLES = [
    # R drops exactly at each recency cut after the last payment (1us short of it, not yet); a
    # second payment takes R back up and F to 2; monetary on the fsum threshold 50000.0
    history(paid("f1", 0, "o1", 49999.7), paid("f2", DAY - US, "o2", 0.1), paid("f3", DAY, "o3", 0.2),
            until=61 * DAY, ticks=(None, None, 4)),
    # a cancellation after payment takes the last payment back (R follows the one before); a late
    # payment; a customer who never paid has no scores
    history(paid("g1", 0, "o1", 100.0), paid("g2", 7 * DAY, "o2", 20000.0),
            ("order_cancelled", "g3", "c0", at(T0, 8 * DAY), {"order_id": "o2"}),
            paid("g4", 2 * DAY, "o4", 10000.0), viewed("g5", 9 * DAY, "p0", customer="c1"), until=70 * DAY),
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(ORDER_HEAVY))
@_examples(RFM_EXAMPLES)
def test_rfm_catalog_incremental_equals_scratch(scenario: Scenario) -> None:
    check(RFM_DEFINITIONS, RFM_CATALOG, scenario, rfm=RFM)


RFM_TRAITS_DEFINITIONS = oracle.load_definitions(RFM_TRAITS_YAML)
RFM_TRAITS = oracle.load_rfm(RFM_TRAITS_YAML)
RFM_TRAITS_CATALOG = parse_catalog(RFM_TRAITS_YAML)
RFM_TRAITS_EXAMPLES = [
    # F falls and M goes absent as payments leave their windows; R on placed orders
    history(placed("h1", 0, ["p0"]), paid("h2", 0, "o1", 50000.0), paid("h3", DAY, "o2", 50.0),
            placed("h4", 3 * DAY, ["p1"]), until=40 * DAY),
]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(ORDER_HEAVY))
@_examples(RFM_TRAITS_EXAMPLES)
def test_rfm_traits_catalog_incremental_equals_scratch(scenario: Scenario) -> None:
    check(RFM_TRAITS_DEFINITIONS, RFM_TRAITS_CATALOG, scenario, oracle.load_traits(RFM_TRAITS_YAML), RFM_TRAITS)


# ------------------------------------------------------------------------------------------------
# A catalog of segment references

REFERENCES_DEFINITIONS = oracle.load_definitions(REFERENCES_YAML)
REFERENCES_TRAITS = oracle.load_traits(REFERENCES_YAML)
REFERENCES_CATALOG = parse_catalog(REFERENCES_YAML)
REFERENCES_EXAMPLES = [
    # buyer, then settled-in 7 days after, long-settled 30 days after that (a chain of for:), by
    # time alone; lapsed 30 days after the last payment, then a payment: win-back (left lapsed),
    # won-back a day later, until win-back's 30 days since lapsed ended run out
    history(paid("s1", 0, "o1", 10.0), paid("s2", 40 * DAY, "o2", 10.0), until=80 * DAY),
    # at-risk 7 days after a second payment, left on a third: slipping for 7 days; frequent for 7
    # days, was-frequent for 7 more
    history(paid("a1", 0, "o1", 10.0), paid("a2", H12, "o2", 10.0), paid("a3", 10 * DAY, "o3", 10.0),
            until=40 * DAY, ticks=(None, None, 2)),
    # a viewer from its first event (not-viewing exits at once), lost-viewer a day after; an
    # erasure forgets the exit
    history(viewed("v1", 0, "p0"), viewed("v2", 2 * DAY, "p0", customer="c1"),
            ("customer_erased", "x1", "c0", at(T0, DAY + H12), {}), viewed("v3", 2 * DAY, "p0"), until=3 * DAY),
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(ORDER_HEAVY))
@_examples(REFERENCES_EXAMPLES)
def test_references_catalog_incremental_equals_scratch(scenario: Scenario) -> None:
    check(REFERENCES_DEFINITIONS, REFERENCES_CATALOG, scenario, REFERENCES_TRAITS)


REFERENCES_RFM_DEFINITIONS = oracle.load_definitions(REFERENCES_RFM_YAML)
REFERENCES_RFM_CATALOG = parse_catalog(REFERENCES_RFM_YAML)
REFERENCES_RFM_EXAMPLES = [
    # R 5 at once, 4 a day later, 3 a week later (rfm-recent exits by time, and recent-settled with
    # it in the same step); asleep at 30 days (R 2, F 1: hibernating); a payment wakes the customer
    history(paid("r1", 0, "o1", 10.0), paid("r2", 40 * DAY, "o2", 10.0), until=80 * DAY),
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(ORDER_HEAVY))
@_examples(REFERENCES_RFM_EXAMPLES)
def test_references_to_rfm_segments_incremental_equals_scratch(scenario: Scenario) -> None:
    check(REFERENCES_RFM_DEFINITIONS, REFERENCES_RFM_CATALOG, scenario, rfm=oracle.load_rfm(REFERENCES_RFM_YAML))


# ------------------------------------------------------------------------------------------------
# Determinism across processes, and a known engine bug


def _changes_under_seeds(text: str, lines: list[str]) -> list[bytes]:
    """The changes of the default catalog and of the catalog `text` for `lines`, in a process per
    string-hashing seed."""
    program = (
        "import sys\n"
        "from stream.model.changes import encode_change\n"
        "from stream.engine.core import Engine\n"
        "from stream.model.decoding import Decoder\n"
        "from stream.rules.catalog import load_catalog, parse_catalog\n"
        "text, lines = sys.stdin.read().split('\\0')\n"
        "for catalog in (load_catalog(), parse_catalog(text)):\n"
        "    engine, decode = Engine(catalog), Decoder().decode\n"
        "    for line in lines.splitlines():\n"
        "        for change in engine.apply(decode(line.encode())):\n"
        "            sys.stdout.buffer.write(encode_change(change) + b'\\n')\n"
        "    for change in engine.advance(engine.now + 400 * 86400 * 10**6):\n"
        "        sys.stdout.buffer.write(encode_change(change) + b'\\n')\n"
    )
    outputs = []
    for seed in ("1", "2"):
        done = subprocess.run([sys.executable, "-c", program], input=(text + "\0" + "\n".join(lines)).encode(),
                              capture_output=True, env={**os.environ, "PYTHONHASHSEED": seed},
                              cwd=Path(__file__).resolve().parents[2], timeout=120, check=True)
        outputs.append(done.stdout)
    return outputs


def test_changes_do_not_depend_on_the_hash_seed() -> None:
    """Byte-identical changes in processes with different string hashing (set/dict orders)."""
    lines = [raw.decode() for case in DEFAULT_EXAMPLES + CUSTOM_EXAMPLES for raw in case.raws]
    outputs = _changes_under_seeds(CUSTOM_YAML, lines)
    assert outputs[0] == outputs[1] and outputs[0].count(b"\n") > 20


def test_trait_changes_do_not_depend_on_the_hash_seed() -> None:
    lines = [raw.decode() for case in DEFAULT_EXAMPLES + TRAITS_EXAMPLES for raw in case.raws]
    outputs = _changes_under_seeds(TRAITS_YAML, lines)
    assert outputs[0] == outputs[1] and outputs[0].count(b"\n") > 40


def test_reference_changes_do_not_depend_on_the_hash_seed() -> None:
    lines = [raw.decode() for case in DEFAULT_EXAMPLES + REFERENCES_EXAMPLES for raw in case.raws]
    outputs = _changes_under_seeds(REFERENCES_YAML, lines)
    assert outputs[0] == outputs[1] and outputs[0].count(b"\n") > 30


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    "engine bug: change_id hashes (customer, segment, change, at, event_id, version) only, so when a "
    "customer is erased and an event applied before the erasure is applied again at the same stream "
    "time (erasure forgets dedup memory), the re-entry repeats the earlier entry's change_id, and a "
    "consumer de-duplicating by change_id drops a real move"))
def test_change_id_repeats_after_erasure_and_redelivery() -> None:
    changes = run(DEFAULT_CATALOG, history(
        paid("e1", 0, "o1", 10.0),
        ("customer_erased", "x1", "c0", at(T0), {}),
        paid("e1", 0, "o1", 10.0),              # Kafka redelivers it; the erasure forgot the id
    )).changes
    if [(c.change, c.segment, c.event_id) for c in changes] != [
            ("entered", "new-customer", "e1"), ("exited", "new-customer", "x1"), ("entered", "new-customer", "e1")]:
        pytest.fail(f"the example no longer means what it did: {changes}")
    ids = [c.change_id for c in changes]
    assert len(set(ids)) == 3, f"three different moves, ids {ids}"
