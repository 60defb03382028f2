"""Computed traits in the engine, at their boundaries: the window's edge at exactly D, between's
two edges, cancellations and payments as paid_orders counts them, most_frequent's ties, an empty
window, items counted one by one, the bound of kept events and its metric, and a catalog without
traits folding exactly as before."""
from __future__ import annotations

import pytest

from stream.engine.core import Engine
from stream.engine.fold import Folder
from stream.engine.trait_fold import with_traits
from stream.model.state import TRAIT_EVENTS_KEEP, TRAIT_VALUES_KEEP, CustomerState, dump_state, load_state
from stream.rules.catalog import parse_catalog
from tests.helpers import (DAY, cart_abandoned, instant, order_cancelled, order_paid, order_placed,
                           product_viewed, run_engine)
from tests.state_sizes import truncated

P = instant("2025-03-01T10:00:00Z")
US = 1
C = "c-1"

CATALOG = """
traits:
  orders_7d:    {count: order_paid, within: 7d}
  spend_7d:     {sum: order_paid.amount, within: 7d}
  avg_7d:       {avg: order_paid.amount, within: 7d}
  low_7d:       {min: order_paid.amount, within: 7d}
  high:         {max: order_paid.amount}
  active_1_7d:  {count: order_paid, between: [7d, 1d]}
  top_category: {most_frequent: order_placed.items.category, within: 30d}
  shoe_items:   {count: order_placed.items.product_id, where: {items.category: {eq: shoes}}}
  shoe_views:   {count: product_viewed, where: {category: {eq: shoes}}, within: 1d}
  categories:   {distinct_count: product_viewed.category}
  carts:        {sum: cart_abandoned.value}
segments:
  two-orders:  {when: {trait.orders_7d: {gte: 2}}}
  any-order:   {when: {trait.orders_7d: {gte: 1}}}
  none-7d:     {when: {trait.orders_7d: {eq: 0}}}
  spent:       {when: {trait.spend_7d: {gte: 100}}}
  no-avg:      {when: {not: {trait.avg_7d: {exists: true}}}}
  low:         {when: {trait.low_7d: {lt: 10}}}
  high:        {when: {trait.high: {gte: 1000}}}
  lapsing:     {when: {trait.active_1_7d: {gte: 1}}}
  shoes-fan:   {when: {trait.top_category: {eq: shoes}}}
  bags-fan:    {when: {trait.top_category: {eq: bags}}}
  shoe-buyer:  {when: {trait.shoe_items: {gte: 2}}}
  shoe-viewer: {when: {trait.shoe_views: {gte: 1}}}
  explorer:    {when: {trait.categories: {gte: 2}}}
"""


def value(eng: Engine, name: str, at: int | None = None) -> object:
    st = eng.store.get(C)
    assert st is not None
    return eng.catalog.traits[name].value(st, eng.now if at is None else at)[0]


def test_an_event_leaves_a_within_window_at_exactly_d_with_cause_time():
    eng, out = run_engine([order_paid(C, P, "o1", 50.0)], catalog=CATALOG)
    assert value(eng, "orders_7d", P + 7 * DAY - US) == 1
    assert value(eng, "orders_7d", P + 7 * DAY) == 0
    eng.advance(P + 7 * DAY - US, out)
    assert ("exited", "any-order") not in [(c.change, c.segment) for c in out]
    tail = eng.advance(P + 7 * DAY)
    assert [(c.change, c.segment, c.cause, c.at) for c in tail if c.segment in ("any-order", "none-7d")] == [
        ("exited", "any-order", "time", "2025-03-08T10:00:00Z"), ("entered", "none-7d", "time", "2025-03-08T10:00:00Z")]


def test_between_counts_an_event_from_d2_until_d1_after_it():
    eng, out = run_engine([order_paid(C, P, "o1", 50.0)], until=P + 8 * DAY, catalog=CATALOG)
    lapsing = [(c.change, c.at, c.cause) for c in out if c.segment == "lapsing"]
    assert lapsing == [("entered", "2025-03-02T10:00:00Z", "time"), ("exited", "2025-03-08T10:00:00Z", "time")]
    assert value(eng, "active_1_7d", P + DAY - US) == 0


def test_a_cancellation_after_payment_takes_it_out_and_a_payment_after_cancellation_counts_nothing():
    eng, out = run_engine([order_paid(C, P, "o1", 60.0), order_paid(C, P + 1, "o2", 40.0),
                           order_paid(C, P + 2, "o1", 999.0),          # a second payment: not counted
                           order_cancelled(C, P + 3, "o2"), order_paid(C, P + 4, "o2", 40.0)], catalog=CATALOG)
    assert (value(eng, "orders_7d"), value(eng, "spend_7d"), value(eng, "high")) == (1, 60.0, 60.0)
    assert [(c.change, c.segment) for c in out if c.segment in ("two-orders", "spent")] == [
        ("entered", "spent"), ("entered", "two-orders"), ("exited", "spent"), ("exited", "two-orders")]


def test_an_empty_window_counts_and_sums_zero_and_has_no_average_minimum_or_favourite():
    eng, out = run_engine([order_paid(C, P, "o1", 5.0), product_viewed(C, P + 8 * DAY, "p", "bags")],
                          catalog=CATALOG)
    assert [value(eng, n) for n in ("orders_7d", "spend_7d", "avg_7d", "low_7d", "top_category")] == [
        0, 0.0, None, None, None]
    st = eng.store.get(C)
    assert st is not None and {"no-avg", "none-7d"} <= set(st.member) and "low" not in st.member


def test_most_frequent_ties_go_to_the_smallest_value_and_each_item_counts():
    eng, out = run_engine([order_placed(C, P, "o1", [("p1", "shoes"), ("p2", "shoes")]),
                           order_placed(C, P + DAY, "o2", [("p3", "bags"), ("p4", "bags"), ("p5", None)])],
                          catalog=CATALOG)
    assert value(eng, "top_category") == "bags"                  # 2 shoes, 2 bags: the smaller
    assert value(eng, "shoe_items") == 2
    # o1 leaves the 30-day window first: bags alone
    assert value(eng, "top_category", P + 30 * DAY) == "bags"
    eng2, _ = run_engine([order_placed(C, P, "o1", [("p1", "shoes"), ("p2", "shoes")]),
                          order_placed(C, P + DAY, "o2", [("p3", "bags")])], until=P + 30 * DAY, catalog=CATALOG)
    st = eng2.store.get(C)
    assert st is not None and "bags-fan" in st.member and "shoes-fan" not in st.member


def test_a_where_filter_and_a_late_event_already_outside_the_window():
    eng, _ = run_engine([product_viewed(C, P, "p1", "bags"), product_viewed(C, P + 2 * DAY, "p2", "shoes"),
                         product_viewed(C, P + DAY - US, "p3", "shoes")],   # late, and older than 1 day
                        catalog=CATALOG)
    assert value(eng, "shoe_views") == 1 and value(eng, "categories") == 2


def test_a_lifetime_trait_folds_beyond_the_bound_and_the_bound_is_counted(sheds_counted):
    before = truncated("trait_events")
    amounts = [float(i % 7) for i in range(TRAIT_EVENTS_KEEP + 10)]
    eng, _ = run_engine([cart_abandoned(C, P + i, a, cart_id=f"k{i}") for i, a in enumerate(amounts)],
                        catalog=CATALOG)
    st = eng.store.get(C)
    assert st is not None and len(st.traits["carts"].events) == TRAIT_EVENTS_KEEP
    assert value(eng, "carts") == sum(amounts)                   # the folded ones still count
    assert truncated("trait_events") - before == 10


def test_a_windowed_trait_keeps_its_newest_events_beyond_the_bound(sheds_counted):
    events = [order_paid(C, P + i, f"o{i}", 1.0) for i in range(TRAIT_EVENTS_KEEP + 5)]
    eng, _ = run_engine(events, catalog=CATALOG)
    assert value(eng, "orders_7d") == TRAIT_EVENTS_KEEP          # (lifetime `high` folds, windowed drops)
    st = eng.store.get(C)
    assert st is not None and st.traits["orders_7d"].folded is None


def test_a_lifetime_distinct_count_counts_at_most_the_values_bound(sheds_counted):
    catalog = ("traits:\n  products: {distinct_count: product_viewed.product_id}\n"
               "segments:\n  x: {when: {trait.products: {gte: 1}}}\n")
    before = truncated("trait_values")
    n = TRAIT_EVENTS_KEEP + TRAIT_VALUES_KEEP + 3
    eng, _ = run_engine([product_viewed(C, P + i, f"p{i}") for i in range(n)], catalog=catalog)
    assert value(eng, "products") == TRAIT_EVENTS_KEEP + TRAIT_VALUES_KEEP
    assert truncated("trait_values") - before == 3


def test_trait_state_survives_its_encoding_and_a_state_without_traits_keeps_its_bytes():
    eng, _ = run_engine([order_paid(C, P, "o1", 5.0), order_placed(C, P, "o2", [("p", "shoes")])], catalog=CATALOG)
    st = eng.store.get(C)
    assert st is not None and st.traits
    assert load_state(dump_state(st)) == st
    bare = CustomerState(first_seen=1, last_seen=2, id_hash=7)
    data = dump_state(bare)
    # the record without its two last fields, traits and left (segment exits), as before either
    assert load_state(data) == bare and data[1:4] == b"\xdc\x00" + bytes([len(CustomerState.__struct_fields__) - 2])


def test_a_catalog_without_traits_folds_as_before():
    folds = Folder([]).folds
    assert with_traits(folds, {}) is folds
    assert parse_catalog("segments:\n  a: {when: {paid_orders: {gte: 1}}}\n").traits == {}
    original = dict(folds)
    wrapped = with_traits(folds, parse_catalog(CATALOG).traits)
    assert folds == original                                     # wrapped in a copy
    assert {cls for cls in folds if wrapped[cls] is not folds[cls]} == {
        type(e) for e in (order_paid(C, P, "o", 1.0), order_cancelled(C, P, "o"), order_placed(C, P, "o"),
                          product_viewed(C, P, "p"), cart_abandoned(C, P))}


@pytest.mark.parametrize("restart", [False, True])
def test_trait_timers_survive_a_restart(restart):
    catalog = parse_catalog(CATALOG)
    eng, out = run_engine([order_paid(C, P, "o1", 5.0)], catalog=catalog)
    if restart:
        store = eng.store
        now, eng = eng.now, Engine(catalog, store)
        eng.restore(store.items(), now)
    tail = eng.advance(P + 7 * DAY)
    assert ("exited", "any-order", "2025-03-08T10:00:00Z") in [(c.change, c.segment, c.at) for c in tail]


def test_a_state_over_the_whole_record_bound_sheds_the_oldest_half_of_each_traits_entries(sheds_counted):
    from stream.model.state import MAX_STATE_BYTES, TraitState
    from tests.state_sizes import wide
    st = CustomerState(first_seen=1, last_seen=2, id_hash=7)
    for n in range(3):
        entries = [(P + i, wide(i, 128), "") for i in range(TRAIT_EVENTS_KEEP)]
        st.traits[f"t{n}"] = TraitState(n, "values" if n == 0 else "", entries)
    before = truncated("trait_events")
    data = dump_state(st)
    assert len(data) <= MAX_STATE_BYTES and truncated("trait_events") == before + 1
    kept = load_state(data)
    assert all(ts.events[-1] == (P + TRAIT_EVENTS_KEEP - 1, wide(TRAIT_EVENTS_KEEP - 1, 128), "")
               for ts in kept.traits.values())                           # the newest stay
    assert len(kept.traits["t1"].events) < TRAIT_EVENTS_KEEP and kept.traits["t1"].tally == []
    folded = TRAIT_EVENTS_KEEP - len(kept.traits["t0"].events)       # (the lifetime one's, each value once)
    assert len(kept.traits["t0"].tally) == min(folded, TRAIT_VALUES_KEEP)


def test_explain_shows_each_traits_value_and_when_it_next_changes():
    from stream.rules.explanation import explain, render
    eng, _ = run_engine([order_paid(C, P, "o1", 50.0)], catalog=CATALOG)
    st = eng.store.get(C)
    assert st is not None
    answer = explain(C, st, eng.catalog, eng.now)
    assert answer["traits"]["orders_7d"] == {"value": 1, "changes_at": "2025-03-08T10:00:00Z"}
    assert answer["traits"]["active_1_7d"] == {"value": 0, "changes_at": "2025-03-02T10:00:00Z"}
    assert answer["traits"]["high"] == {"value": 50.0, "changes_at": None}
    leaf = next(c for c in answer["conditions"] if c["segment"] == "two-orders")["when"]
    assert (leaf["condition"], leaf["value"], leaf["holds"]) == ("trait.orders_7d >= 2", 1, False)
    assert "changes_at" not in leaf           # a false gte over a count that can only go down: settled
    assert "trait.orders_7d: 1, changes at 2025-03-08T10:00:00Z" in render(answer)
