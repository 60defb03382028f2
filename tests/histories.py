"""Random input histories for the property tests (hypothesis strategies), and the custom catalog
that exercises the operators the default one does not.

`scenarios(knobs)` draws JSON lines in arrival order with duplicates, redeliveries, late events,
cancellations, erasures and exact duration boundaries; ORDER_HEAVY suits the default catalog,
PROFILE_HEAVY (attributes, birthdays, custom fields) suits CUSTOM_YAML.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from stream.model.time import DAY, HOUR, format_rfc3339, parse_rfc3339

H12 = 12 * HOUR
SPANS = (DAY, 7 * DAY, 30 * DAY, 60 * DAY, 90 * DAY, 180 * DAY)     # the default catalog's
STEPS = (H12, DAY, 2 * DAY, 3 * DAY, *SPANS[1:])                   # how far stream time moves
DENSE_STEPS = (H12, H12, H12, DAY, DAY, 2 * DAY, 7 * DAY)            # ... in a busy history
MAX_SPAN = 400 * DAY
JITTER = st.sampled_from((0, 0, 0, 0, 0, 0, 1, -1))               # microseconds off a boundary
# fsum matters at thresholds: 49999.7 + 0.1 + 0.2 is 50000.0 exactly, summed left to right it is not
AMOUNTS = (0.0, 0.1, 0.2, 100.0, 9999.99, 10000.0, 16666.67, 20000.0, 25000.0, 33333.33,
           49999.7, 59999.7, 50000.0, 100000.0)
BIRTH_DATES = ("1992-02-29", "2000-02-29", "1990-02-28", "1991-03-01", "1985-02-22", "2000-02-27",
               "1996-01-02", "1988-12-31", "2001-03-06")


@dataclass(frozen=True)
class Knobs:
    """What one family of histories looks like."""
    types: tuple[str, ...]          # event types, repeated for weight
    bases: tuple[str, ...]          # stream start instants
    categories: tuple[str | None, ...]


ORDER_HEAVY = Knobs(
    types=("order_paid",) * 5 + ("order_placed",) * 3 + ("order_cancelled",) * 2
    + ("product_viewed",) * 5 + ("cart_abandoned",) * 2 + ("cart_updated", "customer_updated", "customer_erased"),
    bases=("2024-01-01T00:00:00Z", "2025-06-15T12:00:00Z"),
    categories=("phones", "books", None),
)
PROFILE_HEAVY = Knobs(
    types=("customer_updated",) * 4 + ("order_placed",) * 3 + ("order_paid",) * 3
    + ("order_cancelled", "cart_updated", "cart_abandoned", "customer_erased") + ("product_viewed",) * 3,
    # around 29 February in a leap and a common year, and across a new year
    bases=("2024-02-20T00:00:00Z", "2025-02-19T12:00:00Z", "2023-12-27T00:00:00Z"),
    categories=("phones", "laptops", "books", None),
)


class Scenario:
    """raws: JSON lines in arrival order; ticks: per event, advance() k/4 of the way to it first
    (or not); until: advance() this far past the last stream time at the end."""

    def __init__(self, raws: tuple[bytes, ...], ticks: tuple[int | None, ...], until: int):
        self.raws, self.ticks, self.until = raws, ticks, until

    def __repr__(self) -> str:
        lines = "\n".join(f"  {r.decode()}  tick={k}" for r, k in zip(self.raws, self.ticks, strict=True))
        return f"Scenario(until=+{self.until}us,\n{lines})"


ORDER_IDS = st.sampled_from(("o0", "o1", "o2", "o3", "o4", "o5", "o6", "o7"))
EVENT_IDS = st.sampled_from(("e0", "e1", "e2", "e3"))     # a small pool, so ids repeat
ERASE_IDS = st.sampled_from(("x0", "x1"))
HOW = st.sampled_from(("advance",) * 5 + ("same",) * 3 + ("late",) * 2)
HALF_DAYS = st.integers(1, 60).map(lambda k: k * H12)
TICKS = st.sampled_from((None, None, None, 1, 2, 3, 4))
UNTIL = st.sampled_from((0, 1, H12, *SPANS, 365 * DAY))
ONE_IN_5, ONE_IN_10 = st.integers(0, 4), st.integers(0, 9)


@functools.cache
def _bodies(kind: str, knobs: Knobs, products: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    """The type-specific fields of one event."""
    value = st.sampled_from
    if kind == "order_placed":
        item = st.fixed_dictionaries(
            {"product_id": value(products), "quantity": st.just(1), "price": st.just(10.0)},
            optional={"category": value(knobs.categories)})
        return st.fixed_dictionaries(
            {"order_id": ORDER_IDS, "total": st.just(10.0), "currency": st.just("KZT"),
             "items": st.lists(item, min_size=1, max_size=2)},
            optional={"city": value(("Almaty", "Astana")), "country": value(("KZ", "RU"))})
    if kind == "order_paid":
        return st.fixed_dictionaries({"order_id": ORDER_IDS, "amount": value(AMOUNTS)})
    if kind == "order_cancelled":
        return st.fixed_dictionaries({"order_id": ORDER_IDS})
    if kind == "product_viewed":
        return st.fixed_dictionaries({"product_id": value(products),
                                      "category": value([c for c in knobs.categories if c is not None])})
    if kind in ("cart_updated", "cart_abandoned"):
        fields = {"cart_id": st.just("k0"), "value": value((0.0, 50.5, 99.99, 100.0, 250.0))}
        return st.fixed_dictionaries(fields | ({"items": st.just([])} if kind == "cart_updated" else {}))
    if kind == "customer_updated":
        return st.fixed_dictionaries({"attributes": st.fixed_dictionaries({}, optional={
            "city": value((None, "Almaty", "Astana")),
            "country": value((None, "KZ", "RU")),
            "gender": value((None, "f", "m", "x")),
            "email_opt_in": value((None, True, False)),
            "birth_date": value((None, *BIRTH_DATES)),
            "custom": st.fixed_dictionaries({}, optional={
                "tier": value(("gold", "platinum", "silver", 1, True, 1.0)),
                "score": value((2.5, 3, "3", True, 10, 9.99)),
            }),
        })})
    return st.just({})                                   # customer_erased


@st.composite
def scenarios(draw: Any, knobs: Knobs) -> Scenario:
    customers = st.sampled_from([f"c{i}" for i in range(draw(st.integers(1, 3)))])
    products = ("p0", "p1", "p2")[:draw(st.integers(1, 3))]
    base = parse_rfc3339(draw(st.sampled_from(knobs.bases)))
    steps = st.sampled_from(DENSE_STEPS if draw(st.booleans()) else STEPS) | HALF_DAYS
    # each history draws its own mix of event types (weighted by the knobs), so some focus on a few
    mix = st.sampled_from(draw(st.lists(st.sampled_from(knobs.types), min_size=1, max_size=8))
                          if draw(st.booleans()) else knobs.types)
    raws: list[bytes] = []
    offsets: list[int] = []
    top = 0                                              # largest offset so far (before jitter)
    for i in range(draw(st.integers(1, 40))):
        if raws and draw(ONE_IN_10) == 0:                # a redelivery, byte for byte
            raws.append(raws[draw(st.integers(0, len(raws) - 1))])
            continue
        again = raws and draw(ONE_IN_5) == 0             # the same again (another view, payment...)
        how = draw(HOW)
        if how == "advance":
            top = min(MAX_SPAN, top + draw(steps))
            offset = top
        elif how == "late" and offsets:                  # an earlier event's time, or a span back
            offset = offsets[draw(st.integers(0, len(offsets) - 1))] if draw(st.booleans()) \
                else top - draw(st.sampled_from(SPANS))
        else:
            offset = top
        offset += draw(JITTER)
        offsets.append(offset)
        if again:
            event = json.loads(raws[-1])
            kind = event["type"]
        else:
            kind = draw(mix)
            event = {"type": kind, "customer_id": draw(customers), **draw(_bodies(kind, knobs, products))}
        if kind == "customer_erased":
            event["event_id"] = draw(ERASE_IDS)
        else:
            event["event_id"] = draw(EVENT_IDS) if draw(st.booleans()) else f"u{i}"
        event["occurred_at"] = format_rfc3339(base + offset)
        raws.append(json.dumps(event).encode())
    ticks = tuple(draw(TICKS) for _ in raws)
    until = draw(UNTIL) + draw(st.sampled_from((0, 0, 0, 1)))
    return Scenario(tuple(raws), ticks, until)


# A catalog exercising the other operators (with PROFILE_HEAVY histories)
CUSTOM_YAML = """
segments:
  vip-almaty:
    version: 3
    when:
      all:
        - city: {eq: Almaty}
        - average_order_value: {gte: 20000}
        - categories_bought: {contains_any: [phones, laptops]}
        - custom.tier: {in: [gold, platinum]}
  birthday-week:
    when:
      birth_date: {birthday_within: 7d}
  birthday-today-opted-in:
    when:
      all:
        - birth_date: {birthday_within: 1d}
        - email_opt_in: {eq: true}
  no-city-yet:
    when:
      all:
        - city: {exists: false}
        - any:
            - orders_placed: {gte: 2}
            - last_viewed_at: {within: 24h}
  not-gold:
    when:
      not: {custom.tier: {eq: gold}}
  numeric-custom:
    when:
      any:
        - custom.tier: {eq: 1}
        - custom.score: {gte: 2.5, lt: 10}
  book-lover:
    when:
      categories_bought: {contains: books}
  category-browser:
    when:
      repeated: {event: product_viewed, per: category, at_least: 2, within: 24h, without_order_within: 30d}
  reorderer:
    when:
      repeated: {event: order_placed, per: category, at_least: 2, within: 30d}
  cheap-cart:
    when:
      any:
        - cart_value: {lt: 100}
        - last_cart_abandoned_value: {in: [0, 50.5]}
  paid-after-placing:
    when:
      all:
        - first_paid_at: {gt: {attr: last_order_placed_at}}
        - first_paid_at: {gte: 2024-02-25T00:00:00Z}
        - average_order_value: {exists: true}
  young-not-ru:
    when:
      all:
        - birth_date: {gte: 1995-01-01}
        - country: {ne: RU}
        - gender: {in: [f, x]}
  lapsed-viewer:
    when:
      all:
        - last_viewed_at: {ago: 7d}
        - not: {last_seen_at: {within: 7d}}
        - first_seen_at: {lte: {attr: last_viewed_at}}
  round-total:
    when:
      paid_total: {in: [50000, 60000]}
  no-birthday-known:
    when:
      all:
        - birth_date: {exists: false}
        - email_opt_in: {ne: false}
        - paid_orders: {in: [1, 2]}
  # buckets of c0, c1, c2: unsalted 28, 20, 96; exp-7 53, 59, 24; exp-8 41, 6, 15
  in-experiment:
    when:
      bucket: {salt: exp-7, gte: 50, lt: 60}
  control-payers:
    when:
      all:
        - bucket: {lt: 25}
        - paid_orders: {gte: 1}
  not-in-exp-8:
    when:
      not: {bucket: {salt: exp-8, in: [6, 41]}}
"""


# A catalog of computed traits, every aggregation and window kind (with ORDER_HEAVY histories):
# spans among the histories' steps, so events leave and enter windows at exact instants.
TRAITS_YAML = """
traits:
  orders_7d:       {count: order_paid, within: 7d}
  recent_1d:       {count: order_paid, within: 1d}
  spend_30d:       {sum: order_paid.amount, within: 30d}
  avg_check_30d:   {avg: order_paid.amount, within: 30d}
  biggest_order:   {max: order_paid.amount}
  smallest_7d:     {min: order_paid.amount, within: 7d}
  phone_views_1d:  {count: product_viewed, where: {category: {eq: phones}}, within: 1d}
  active_1_7d:     {count: order_paid, between: [7d, 1d]}
  top_category:    {most_frequent: order_placed.items.category, within: 30d}
  categories_7d:   {distinct_count: product_viewed.category, within: 7d}
  listed_items:
    count: order_placed.items.product_id
    where: {items.category: {in: [phones, books]}, city: {exists: true}}
    within: 7d
  abandoned_value: {sum: cart_abandoned.value, within: 1d}
  lifetime_views:  {distinct_count: product_viewed.product_id}
segments:
  frequent-recent: {when: {trait.orders_7d: {gte: 2}}}
  big-spender:     {when: {trait.spend_30d: {gte: 50000}}}
  avg-check:       {when: {trait.avg_check_30d: {gte: 20000, lt: 100000}}}
  no-recent-check: {when: {not: {trait.avg_check_30d: {exists: true}}}}
  big-once:        {when: {trait.biggest_order: {gte: 50000}}}
  small-7d:        {when: {trait.smallest_7d: {lte: 0.2}}}
  phone-browser:   {when: {trait.phone_views_1d: {gte: 2}}}
  lapsing:         {when: {all: [{trait.active_1_7d: {gte: 1}}, {trait.recent_1d: {eq: 0}}]}}
  phones-fan:      {when: {trait.top_category: {eq: phones}}}
  not-phones-fan:  {when: {trait.top_category: {in: [books]}}}
  explorer:        {when: {trait.categories_7d: {gte: 2}}}
  item-buyer:      {when: {trait.listed_items: {gte: 2}}}
  abandoner:       {when: {any: [{trait.abandoned_value: {gt: 100}}, {trait.lifetime_views: {gte: 3}}]}}
  paid-not-recent: {when: {all: [{paid_orders: {gte: 1}}, {trait.orders_7d: {lt: 1}}]}}
"""


# RFM on the default measures (with ORDER_HEAVY histories): recency cuts among the histories'
# steps, so R drops at exact instants; frequency and monetary cuts on the counts and amounts (and
# fsum thresholds) the histories reach.
RFM_YAML = """
rfm:
  cuts:
    recency: [1d, 7d, 30d, 60d]
    frequency: [2, 3, 4, 6]
    monetary: [100, 10000, 20000, 50000]
segments:
  rfm-champions: {when: {rfm.cell: {eq: champions}}}
  rfm-recent:    {when: {rfm.r: {gte: 4}}}
  rfm-lapsing:   {when: {all: [{rfm.r: {lte: 2}}, {rfm.f: {gte: 2}}]}}
  rfm-big:       {when: {rfm.m: {in: [4, 5]}}}
  rfm-asleep:    {when: {rfm.cell: {in: [at-risk, cannot-lose, hibernating, lost]}}}
  rfm-unscored:  {when: {not: {rfm.cell: {exists: true}}}}
  rfm-mid:       {when: {rfm.f: {gt: 1, lt: 5, ne: 3}}}
  rfm-waking:    {when: {rfm.cell: {in: [new, promising, potential-loyalist, need-attention, about-to-sleep]}}}
  rfm-not-lost:  {when: {any: [{rfm.cell: {ne: lost}}, {paid_orders: {gte: 7}}]}}
"""

# RFM on other measures, 3 levels (the cells scaled): recency of placed orders, frequency and
# monetary from windowed traits, so scores (and their absence: the avg of an empty window) change
# by time on either side.
RFM_TRAITS_YAML = """
traits:
  orders_7d: {count: order_paid, within: 7d}
  avg_30d:   {avg: order_paid.amount, within: 30d}
rfm:
  recency: last_order_placed_at
  frequency: trait.orders_7d
  monetary: trait.avg_30d
  levels: 3
  cuts:
    recency: [7d, 30d]
    frequency: [1, 2]
    monetary: [100, 20000]
segments:
  rfm3-top:     {when: {rfm.cell: {in: [champions, loyal]}}}
  rfm3-recent:  {when: {rfm.r: {eq: 3}}}
  rfm3-f:       {when: {rfm.f: {gte: 2}}}
  rfm3-m:       {when: {all: [{rfm.m: {lt: 3}}, {rfm.r: {gte: 2}}]}}
  rfm3-scored:  {when: {rfm.m: {exists: true}}}
  rfm3-gone:    {when: {rfm.cell: {in: [lost, hibernating, cannot-lose, at-risk]}}}
"""

# A catalog of segment references (with ORDER_HEAVY histories): chains (settled-in -> long-settled,
# win-back -> won-back), `for:` and `left_within:`, references to segments time alone moves (lapsed,
# at-risk), a negated reference holding on a new customer, and a reference to a trait's segment.
REFERENCES_YAML = """
traits:
  orders_7d: {count: order_paid, within: 7d}
segments:
  buyer:          {when: {paid_orders: {gte: 1}}}
  lapsed:         {when: {all: [{paid_orders: {gte: 1}}, {last_paid_at: {ago: 30d}}]}}
  at-risk:        {when: {all: [{paid_orders: {gte: 2}}, {last_paid_at: {ago: 7d, within: 60d}}]}}
  viewer:         {when: {last_viewed_at: {within: 1d}}}
  frequent:       {when: {trait.orders_7d: {gte: 2}}}
  settled-in:     {when: {segment: {name: buyer, for: 7d}}}
  long-settled:   {when: {segment: {name: settled-in, for: 30d}}}
  win-back:       {when: {all: [{segment: {name: lapsed, left_within: 30d}}, {segment: {name: buyer}}]}}
  won-back:       {when: {segment: {name: win-back, for: 1d}}}
  slipping:       {when: {any: [{segment: {name: at-risk, left_within: 7d}}, {segment: {name: lapsed, for: 1d}}]}}
  not-viewing:    {when: {not: {segment: {name: viewer}}}}
  lost-viewer:    {when: {segment: {name: viewer, left_within: 1d}}}
  was-frequent:   {when: {all: [{segment: {name: frequent, left_within: 7d}}, {not: {segment: {name: at-risk}}}]}}
"""

# References to RFM segments (with ORDER_HEAVY histories): R drops by time at a cut, which moves
# the RFM segment and, in the same step, the segments referencing it.
REFERENCES_RFM_YAML = """
rfm:
  cuts:
    recency: [1d, 7d, 30d, 60d]
    frequency: [2, 3, 4, 6]
    monetary: [100, 10000, 20000, 50000]
segments:
  rfm-recent:     {when: {rfm.r: {gte: 4}}}
  rfm-asleep:     {when: {rfm.cell: {in: [at-risk, cannot-lose, hibernating, lost]}}}
  recent-settled: {when: {segment: {name: rfm-recent, for: 2d}}}
  woke-up:        {when: {all: [{segment: {name: rfm-asleep, left_within: 7d}}, {rfm.r: {gte: 3}}]}}
  still-recent:   {when: {all: [{segment: {name: recent-settled}}, {not: {segment: {name: rfm-asleep}}}]}}
"""
