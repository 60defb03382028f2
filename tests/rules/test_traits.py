"""The `traits:` section: each kind of bad trait, and each bad reading of one, is a DefinitionError
naming the trait (or segment) and where, all problems at once; what a valid one compiles to."""
from __future__ import annotations

import pytest

from stream.rules.catalog import parse_catalog
from stream.rules.problems import DefinitionError

SEGMENT = "segments:\n  s: {when: {trait.t: {gte: 1}}}\n"


def problems_of(text: str) -> list[str]:
    with pytest.raises(DefinitionError) as info:
        parse_catalog(text, source="defs.yaml")
    return info.value.problems


BAD_TRAITS = [
    ("unknown-event", "{count: order_pad}", ["trait 't'.count", "unknown event type 'order_pad'"]),
    ("unknown-field", "{sum: order_paid.total}", ["order_paid has no field 'total'", "amount"]),
    ("sum-of-text", "{sum: product_viewed.category}", ["sum needs a numeric field", "text"]),
    ("avg-of-items-category", "{avg: order_placed.items.category}", ["avg needs a numeric field"]),
    ("max-without-field", "{max: order_paid}", ["max needs a field"]),
    ("no-aggregation", "{within: 7d}", ["needs exactly one aggregation", "got none"]),
    ("two-aggregations", "{count: order_paid, sum: order_paid.amount}", ["got count, sum"]),
    ("bad-within", "{count: order_paid, within: 7 days}", ["trait 't'.within", "positive whole number"]),
    ("zero-within", "{count: order_paid, within: 0d}", ["trait 't'.within"]),
    ("both-windows", "{count: order_paid, within: 7d, between: [7d, 1d]}", ["not both"]),
    ("between-reversed", "{count: order_paid, between: [30d, 90d]}", ["between", "longer than the second"]),
    ("between-equal", "{count: order_paid, between: [30d, 30d]}", ["longer than the second"]),
    ("between-one", "{count: order_paid, between: [30d]}", ["a list of two durations"]),
    ("unknown-key", "{count: order_paid, window: 7d}", ["unknown key(s) window"]),
    ("where-unknown-field", "{count: product_viewed, where: {colour: {eq: red}}}", ["where.colour", "no field"]),
    ("where-gt-on-text", "{count: product_viewed, where: {category: {gt: a}}}", ["where.category.gt", "'gt'"]),
    ("where-wrong-literal", "{count: order_paid, where: {amount: {gte: lots}}}", ["where.amount.gte", "number"]),
    ("where-item-field-on-orders", "{count: order_placed, where: {items.category: {eq: a}}}",
     ["where.items.category", "items.*"]),
    ("bad-name", None, ["a trait name is lower-case"]),
]


@pytest.mark.parametrize(("case", "trait", "words"), BAD_TRAITS, ids=[c[0] for c in BAD_TRAITS])
def test_a_bad_trait_is_reported_with_where_and_why(case, trait, words):
    text = ("traits:\n  Bad-Name: {count: order_paid}\n" + SEGMENT.replace("trait.t", "trait.x")
            if trait is None else f"traits:\n  t: {trait}\n{SEGMENT}")
    problems = problems_of(text)
    joined = "\n".join(problems)
    assert all(w in joined for w in words), problems
    if trait is not None:       # the segment reading it says the trait is invalid, not unknown
        assert any("segment 's'" in p and "trait 't' is invalid" in p for p in problems), problems


@pytest.mark.parametrize(("when", "words"), [
    ("{trait.orders: {gte: 1}}", ["unknown trait 'orders'", "did you mean 'trait.orders_7d'"]),
    ("{trait.orders_7d: {within: 7d}}", ["when.trait.orders_7d.within", "operator 'within'"]),
    ("{trait.orders_7d: {gte: many}}", ["when.trait.orders_7d.gte", "number"]),
    ("{trait.top: {gt: shoes}}", ["operator 'gt' does not apply to string trait 'top'"]),
    ("{trait.top: {eq: 3}}", ["string value"]),
    ("{trait.orders_7d: {}}", ["expected a mapping of operator"]),
])
def test_a_bad_reading_of_a_trait_is_reported(when, words):
    text = ("traits:\n  orders_7d: {count: order_paid, within: 7d}\n"
            "  top: {most_frequent: product_viewed.category}\n"
            f"segments:\n  s: {{when: {when}}}\n")
    joined = "\n".join(problems_of(text))
    assert all(w in joined for w in words), joined


def test_every_problem_of_traits_and_segments_is_reported_together():
    problems = problems_of("traits:\n  a: {sum: order_paid}\n  b: {count: nope}\n"
                           "segments:\n  s: {when: {trait.zzz: {gte: 1}}}\n  r: {when: {paid_order: {gte: 1}}}\n")
    assert [p.split(":")[0] for p in problems] == ["trait 'a'.sum", "trait 'b'.count", "segment 's'", "segment 'r'"]


def test_traits_must_be_a_mapping():
    problems = problems_of("traits: [a]\nsegments:\n  s: {when: {paid_orders: {gte: 1}}}\n")
    assert any("`traits:` is a mapping" in p for p in problems)


def test_the_issues_examples_compile_with_their_kinds_windows_and_groups():
    catalog = parse_catalog("""
traits:
  orders_90d:     {count: order_paid, within: 90d}
  spend_30d:      {sum: order_paid.amount, within: 30d}
  avg_check_180d: {avg: order_paid.amount, within: 180d}
  biggest_order:  {max: order_paid.amount}
  shoe_views_7d:  {count: product_viewed, where: {category: {eq: shoes}}, within: 7d}
  active_30_90d:  {count: order_paid, between: [90d, 30d]}
  top_category:   {most_frequent: order_placed.items.category, within: 365d}
  categories_90d: {distinct_count: product_viewed.category, within: 90d}
segments:
  frequent-recent:
    when: {trait.orders_90d: {gte: 3}}
  shoe-lover:
    when: {all: [{trait.top_category: {in: [shoes, boots]}}, {trait.shoe_views_7d: {gte: 1}}]}
""")
    traits = catalog.traits
    day = 86_400_000_000
    assert (traits["active_30_90d"].within, traits["active_30_90d"].after) == (90 * day, 30 * day)
    assert traits["biggest_order"].within is None and traits["top_category"].kind == "string"
    assert traits["top_category"].per_item and not traits["shoe_views_7d"].per_item
    assert catalog.by_name["frequent-recent"].reads == {"paid"}
    assert catalog.by_name["shoe-lover"].reads == {"placed", "views"}
