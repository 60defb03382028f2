"""Changing segment definitions on a running engine equals evaluating from scratch under the new ones.

An engine runs a random history under the default catalog; at some stream time T the catalog is
replaced by a random mix (segments kept, changed, removed, added), Engine.redefine switches to it
and Engine.reevaluate walks every stored customer once (no replay). Then:

1. at T every customer's memberships equal tests/oracle.py's evaluation of the whole history under
   the new definitions -- for every segment whose history the state kept (a `repeated` condition
   deeper or longer than the old catalog's streams is left out until its window has passed after T:
   that is the "needs a backfill" case, reported by stream.definitions.resolution);
2. only redefined segments move, each move with cause "definition", at T, with the new version (a
   removed segment's exits carry its last version), and the moves rebuild the memberships;
3. afterwards (more events, then time alone) the engine keeps equalling the oracle under the new
   definitions, so the timers were set and cleared for the new definitions too;
4. re-evaluating again changes nothing (a pass interrupted and resumed, or re-run, is harmless).
"""
from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import oracle
from tests.helpers import apply_change
from stream.model import events as ev
from stream.model.decoding import Decoder
from stream.model.changes import SegmentChange
from stream.engine.core import Engine
from stream.engine.redefinition import Redefinition
from stream.engine.store import MemoryStore
from stream.rules.catalog import compile_catalog
from stream.model.time import DAY, format_rfc3339, from_datetime, parse_duration
from tests.histories import ORDER_HEAVY, PROFILE_HEAVY, Scenario, scenarios


def repeated(within: str, at_least: int, per: str = "product", event: str = "product_viewed", **more: str) -> dict:
    return {"repeated": {"event": event, "per": per, "at_least": at_least, "within": within, **more}}


# Alternatives for some default segments, and new ones: every attribute group, a segment that holds
# on an empty state (city missing), and `repeated` conditions within, deeper than, longer than and
# beside the default catalog's stream (product views, 3 per product over 7 days).
VARIANTS: dict[str, list[dict[str, Any]]] = {
    "loyal": [{"when": {"all": [{"paid_orders": {"gte": 3}}, {"last_paid_at": {"within": "120d"}}]}}],
    "churned": [{"when": {"all": [{"paid_orders": {"gte": 1}}, {"last_paid_at": {"ago": "90d"}}]}}],
    "window-shopper": [
        {"when": repeated("7d", 2, without_order_within="7d")},        # kept: no backfill
        {"when": repeated("3d", 3)},
        {"when": repeated("14d", 4)},                                   # deeper and longer
        {"when": repeated("7d", 2, per="category")},                    # a stream never kept
    ],
    "big-cart": [{"when": {"cart_value": {"gte": 100}}}],
    "almaty": [{"when": {"city": {"eq": "Almaty"}}}],
    "no-city": [{"when": {"city": {"exists": False}}}],
    "birthday-week": [{"when": {"birth_date": {"birthday_within": "7d"}}}],
    "gold": [{"when": {"custom.tier": {"in": ["gold", "platinum"]}}}],
    "category-buyer": [{"when": repeated("30d", 2, per="category", event="order_placed")}],
    "abandoner": [{"when": {"all": [{"last_cart_abandoned_at": {"within": "24h"}},
                                    {"not": {"last_order_placed_at": {"gte": {"attr": "last_cart_abandoned_at"}}}}]}}],
}
OLD = oracle.load_definitions()


@st.composite
def new_definitions(draw: Any) -> dict[str, dict[str, Any]]:
    new: dict[str, dict[str, Any]] = {}
    for name in sorted(OLD.keys() | VARIANTS.keys()):
        choices = (["keep"] if name in OLD else []) + ["remove"] + list(range(len(VARIANTS.get(name, []))))
        choice = draw(st.sampled_from(choices))
        if choice == "keep":
            new[name] = OLD[name]
        elif choice != "remove":
            bump = draw(st.integers(1, 3))
            version = OLD[name].get("version", 1) + bump if name in OLD else bump
            new[name] = {**copy.deepcopy(VARIANTS[name][choice]), "version": version}
    return new


def history_needs(node: Any) -> list[tuple[str, int, int]]:
    """(stream, at_least, window) of every windowed count in a definition, written plainly."""
    found = []
    if isinstance(node, list):
        for child in node:
            found += history_needs(child)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "repeated":
                per = value.get("per", "product")
                found.append((f"{value['event']}:{per}", value["at_least"], parse_duration(value["within"])))
                if "without_order_within" in value:
                    found.append((f"order_placed:{per}", 1, parse_duration(value["without_order_within"])))
            else:
                found += history_needs(value)
    return found


def complete_at(definition: dict[str, Any], kept: dict[str, tuple[int, int]], redefined_at: int) -> int:
    """From when the state answers this definition as the full history would: at once when the old
    catalog kept every stream it reads deep and long enough, else once its window has passed."""
    since = redefined_at
    for stream, at_least, window in history_needs(definition):
        keep, horizon = kept.get(stream, (0, 0))
        if at_least > keep or window > horizon:
            since = max(since, redefined_at + window)
    return since


def memberships(store: MemoryStore) -> dict[str, frozenset[str]]:
    return {c: frozenset(s.member) for c, s in store.items() if s.member}


def restricted(members: dict[str, frozenset[str]], names: set[str]) -> dict[str, frozenset[str]]:
    cut = {c: s & names for c, s in members.items()}
    return {c: s for c, s in cut.items() if s}


def apply_all(engine: Engine, raws: tuple[bytes, ...]) -> list[ev.Event]:
    decoder, events = Decoder(), []
    for raw in raws:
        event = decoder.decode(raw)
        engine.apply(event)
        events.append(event)
    return events


def check_redefinition(scenario: Scenario, split: int, pause: int, new: dict[str, dict[str, Any]]) -> None:
    old_catalog = compile_catalog(OLD, "old")
    new_catalog = compile_catalog(new, "new")
    store = MemoryStore()
    engine = Engine(old_catalog, store)
    split = min(split, len(scenario.raws))
    before = apply_all(engine, scenario.raws[:split])
    if split < len(scenario.raws):
        # Stream time may not pass the next event's time: the oracle's clock is the events' own.
        following = from_datetime(Decoder().decode(scenario.raws[split]).occurred_at)
        pause = max(0, min(pause, following - engine.now))
    engine.advance(engine.now + pause)
    at = engine.now
    was = {c: set(s.member) for c, s in store.items()}

    redefinition = Redefinition.between(old_catalog, new_catalog)
    engine.redefine(new_catalog)
    out: list[SegmentChange] = []
    for customer_id, state in list(store.items()):
        engine.reevaluate(customer_id, state, redefinition, out)

    kept = {s.name: (s.keep, s.horizon) for s in old_catalog.streams}
    complete = {name: complete_at(d, kept, at) for name, d in new.items()}
    history = oracle.History(before)
    if before:
        full = {n for n, t in complete.items() if t <= at}
        assert restricted(memberships(store), full) == restricted(history.memberships(at, new), full), \
            f"at the redefinition ({format_rfc3339(at)}), for {sorted(full)}"
    for change in out:
        assert change.segment in redefinition.segments, f"an unchanged segment moved: {change}"
        assert (change.cause, change.event_id, change.at) == ("definition", None, format_rfc3339(at)), change
        defined = new[change.segment] if change.segment in new else OLD[change.segment]
        version = defined.get("version", 1)
        assert change.definition_version == version, change
        apply_change(was, change)
    assert {c: frozenset(s) for c, s in was.items() if s} == memberships(store)
    assert not {n for s in store.values() for n in s.member} - new.keys(), "a removed segment kept members"

    again: list[SegmentChange] = []
    for customer_id, state in list(store.items()):
        assert not engine.reevaluate(customer_id, state, redefinition, again), (customer_id, again)

    after = apply_all(engine, scenario.raws[split:])
    end = engine.now + scenario.until
    engine.advance(end)
    full = {n for n, t in complete.items() if t <= end}
    expected = oracle.History(before + after).memberships(end, new)
    assert restricted(memberships(store), full) == restricted(expected, full), \
        f"at {format_rfc3339(end)}, after more events and time, for {sorted(full)}"


SETTINGS = settings(max_examples=int(__import__("os").environ.get("REDEFINE_EXAMPLES", "300")), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PAUSES = st.sampled_from((0, 1, DAY // 2, 7 * DAY, 60 * DAY))


@SETTINGS
@given(scenarios(ORDER_HEAVY), st.integers(0, 40), PAUSES, new_definitions())
def test_redefinition_equals_scratch_order_heavy(scenario, split, pause, new) -> None:
    check_redefinition(scenario, split, pause, new)


@SETTINGS
@given(scenarios(PROFILE_HEAVY), st.integers(0, 40), PAUSES, new_definitions())
def test_redefinition_equals_scratch_profile_heavy(scenario, split, pause, new) -> None:
    check_redefinition(scenario, split, pause, new)


def test_between_names_added_changed_and_removed_segments() -> None:
    old = compile_catalog(OLD, "old")
    new_defs = {k: v for k, v in OLD.items() if k != "churned"}
    new_defs["loyal"] = {**VARIANTS["loyal"][0], "version": 2}
    new_defs["big-cart"] = VARIANTS["big-cart"][0]
    new_defs["at-risk"] = {**OLD["at-risk"], "version": 2}          # same condition, new version
    redefinition = Redefinition.between(old, compile_catalog(new_defs, "new"))
    assert redefinition.segments == {"at-risk": None, "big-cart": None, "churned": 1, "loyal": None}
    assert Redefinition.between(old, old).segments == {}
    # a removal after a change under way: the members exit; a re-addition after a removal: evaluated
    assert redefinition.then(Redefinition({"loyal": 1})).segments["loyal"] == 1
    assert redefinition.then(Redefinition({"churned": None})).segments["churned"] is None


def test_removed_segment_members_exit_and_lose_their_timers() -> None:
    """A churned customer (member for good, no timer) and an at-risk one (a timer pending): removing
    both segments exits both, clears the timers, and time then moves nobody."""
    from tests.helpers import paid_orders
    old = compile_catalog(OLD, "old")
    engine = Engine(old)
    for e in [*paid_orders("c1", [0, DAY]), *paid_orders("c2", [0, 200 * DAY])]:
        engine.apply(e)
    engine.advance(200 * DAY + 70 * DAY)
    assert engine.store["c1"].member.keys() == {"churned"} and "at-risk" in engine.store["c2"].member
    new = compile_catalog({k: v for k, v in OLD.items() if k not in ("churned", "at-risk")}, "new")
    redefinition = Redefinition.between(old, new)
    engine.redefine(new)
    out: list[SegmentChange] = []
    for customer_id, state in list(engine.store.items()):
        engine.reevaluate(customer_id, state, redefinition, out)
    assert sorted((c.customer_id, c.segment, c.change, c.cause) for c in out) == [
        ("c1", "churned", "exited", "definition"), ("c2", "at-risk", "exited", "definition")]
    assert not engine.store["c2"].timers.get("at-risk")
    assert engine.advance(engine.now + 400 * DAY) == []
