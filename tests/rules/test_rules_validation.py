"""Segment definitions: every kind of bad definition is a DefinitionError naming the segment and the
path, all problems at once; and `Catalog.affected` re-evaluates only what an event can change."""
from __future__ import annotations

import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import (DAY, HOUR, cart_abandoned, cart_updated, customer_updated, default_catalog, instant, iso,
                     moves, order_paid, order_placed, product_viewed, run, segments_of)
from stream.errors import Problems, SegmentsError
from stream.model import events as ev
from stream.rules.attributes import CHANGED_BY
from stream.rules.bounded_yaml import SEGMENTS_FILE, DocumentError, load
from stream.rules.catalog import load_catalog, parse_catalog
from stream.rules.problems import DefinitionError

P = instant("2025-03-01T10:00:00Z")


def problems_of(yaml_text: str) -> list[str]:
    with pytest.raises(DefinitionError) as info:
        parse_catalog(textwrap.dedent(yaml_text), source="segs.yaml")
    problems = info.value.problems
    assert problems, "a DefinitionError must name at least one problem"
    # the exception's own message lists every problem
    for p in problems:
        assert p in str(info.value)
    return problems


def one_condition(when: str, name: str = "seg-a") -> str:
    return f"segments:\n  {name}:\n    when: {when}\n"


# ------------------------------------------------------------------------------------------------
# one bad condition: (when, path expected in the message, words expected in the message)

BAD_CONDITIONS = [
    ("unknown-attribute", "{paid_order: {gte: 1}}", "when", ["'paid_order'", "did you mean 'paid_orders'"]),
    ("unknown-attribute-no-hint", "{zzzzqqq: {gte: 1}}", "when", ["'zzzzqqq'"]),
    ("gt-on-string", "{city: {gt: Almaty}}", "when.city.gt", ["'gt'", "string", "city"]),
    ("within-on-number", "{paid_orders: {within: 30d}}", "when.paid_orders.within", ["'within'", "number"]),
    ("eq-on-set", "{categories_bought: {eq: phones}}", "when.categories_bought.eq", ["'eq'", "set"]),
    ("contains-on-time", "{last_paid_at: {contains: x}}", "when.last_paid_at.contains", ["'contains'", "time"]),
    ("duration-without-unit", "{last_paid_at: {within: '30'}}", "when.last_paid_at.within", ["'30'"]),
    ("duration-zero", "{last_paid_at: {within: 0d}}", "when.last_paid_at.within", ["'0d'"]),
    ("duration-weeks", "{last_paid_at: {ago: 3w}}", "when.last_paid_at.ago", ["'3w'"]),
    ("duration-number", "{last_paid_at: {ago: 30}}", "when.last_paid_at.ago", ["30"]),
    ("duration-negative", "{last_paid_at: {ago: -1d}}", "when.last_paid_at.ago", ["'-1d'"]),
    ("birthday-in-hours", "{birth_date: {birthday_within: 36h}}", "when.birth_date.birthday_within", ["whole days"]),
    ("number-as-text", "{paid_orders: {gte: two}}", "when.paid_orders.gte", ["number", "'two'"]),
    ("number-as-bool", "{paid_total: {gte: true}}", "when.paid_total.gte", ["number", "True"]),
    ("string-as-number", "{city: {eq: 5}}", "when.city.eq", ["string", "5"]),
    ("bool-as-string", "{email_opt_in: {eq: 'yes'}}", "when.email_opt_in.eq", ["bool", "'yes'"]),
    ("time-as-word", "{last_paid_at: {gt: yesterday}}", "when.last_paid_at.gt", ["'yesterday'"]),
    ("time-without-offset", "{last_paid_at: {gt: 2025-01-01T00:00:00}}", "when.last_paid_at.gt", ["offset"]),
    ("time-as-date", "{last_paid_at: {gt: 2025-01-01}}", "when.last_paid_at.gt", ["RFC 3339"]),
    ("bad-date", "{birth_date: {eq: '1990-13-01'}}", "when.birth_date.eq", ["'1990-13-01'"]),
    ("in-empty", "{city: {in: []}}", "when.city.in", ["non-empty list"]),
    ("in-bad-member", "{paid_orders: {in: [1, x]}}", "when.paid_orders.in", ["'x'"]),
    ("custom-list", "{custom.tier: {eq: [gold]}}", "when.custom.tier.eq", ["custom.tier"]),
    ("custom-no-field", "{custom.: {eq: 1}}", "when", ["custom."]),
    ("exists-not-bool", "{city: {exists: 1}}", "when.city.exists", ["true or false"]),
    ("contains-not-string", "{categories_bought: {contains: 5}}", "when.categories_bought.contains", ["string"]),
    ("contains-any-empty", "{categories_bought: {contains_any: []}}", "when.categories_bought.contains_any", ["list"]),
    ("no-operators", "{city: {}}", "when.city", ["operator"]),
    ("operators-not-mapping", "{city: Almaty}", "when.city", ["operator"]),
    ("empty-all", "{all: []}", "when.all", ["non-empty list"]),
    ("empty-any", "{any: []}", "when.any", ["non-empty list"]),
    ("all-not-a-list", "{all: {city: {eq: x}}}", "when.all", ["list"]),
    ("several-keys", "{paid_orders: {gte: 1}, city: {eq: x}}", "when", ["exactly one key"]),
    ("not-a-mapping", "[paid_orders]", "when", ["exactly one key"]),
    ("not-of-list", "{not: [1]}", "when.not", ["exactly one key"]),
    ("nested-path", "{all: [{city: {eq: x}}, {any: [{paid_orders: {gte: 1}}, {paid_orders: {lt: x}}]}]}",
     "when.all[1].any[1].paid_orders.lt", ["'x'"]),
    ("attr-of-another-kind",
     "{last_paid_at: {gte: {attr: paid_orders}}}", "when.last_paid_at.gte", ["time", "paid_orders"]),
    ("attr-unknown", "{last_paid_at: {gte: {attr: nope}}}", "when.last_paid_at.gte", ["nope"]),
    ("attr-extra-key", "{paid_total: {gte: {attr: paid_orders, x: 1}}}", "when.paid_total.gte", ["attr"]),
    ("attr-custom", "{paid_total: {gte: {attr: custom.x}}}", "when.paid_total.gte", ["custom.x"]),
    ("repeated-event", "{repeated: {event: page_viewed, per: product, at_least: 3, within: 7d}}",
     "when.repeated.event", ["'page_viewed'"]),
    ("repeated-per", "{repeated: {event: product_viewed, per: brand, at_least: 3, within: 7d}}",
     "when.repeated.per", ["'brand'"]),
    ("repeated-at-least-0",
     "{repeated: {event: product_viewed, at_least: 0, within: 7d}}", "when.repeated.at_least", ["0"]),
    ("repeated-at-least-101",
     "{repeated: {event: product_viewed, at_least: 101, within: 7d}}", "when.repeated.at_least", ["101"]),
    ("repeated-at-least-bool",
     "{repeated: {event: product_viewed, at_least: true, within: 7d}}", "when.repeated.at_least", ["True"]),
    ("repeated-at-least-text",
     "{repeated: {event: product_viewed, at_least: '3', within: 7d}}", "when.repeated.at_least", ["'3'"]),
    ("repeated-no-within", "{repeated: {event: product_viewed, at_least: 3}}", "when.repeated.within", ["duration"]),
    ("repeated-bad-without", "{repeated: {event: product_viewed, at_least: 3, within: 7d, without_order_within: 0d}}",
     "when.repeated.without_order_within", ["'0d'"]),
    ("repeated-unknown-key",
     "{repeated: {event: product_viewed, at_least: 3, within: 7d, sku: x}}", "when.repeated", ["sku"]),
    ("repeated-not-mapping", "{repeated: 3}", "when.repeated", ["mapping"]),
]


@pytest.mark.parametrize("when, path, words", [b[1:] for b in BAD_CONDITIONS], ids=[b[0] for b in BAD_CONDITIONS])
def test_bad_condition_names_segment_and_path(when, path, words):
    problems = problems_of(one_condition(when))
    assert len(problems) == 1, problems
    problem = problems[0]
    assert problem.startswith(f"segment 'seg-a': {path}: "), problem
    for word in words:
        assert word in problem, (word, problem)


BAD_SEGMENTS = [
    ("bad-name-case",
     "segments:\n  Bad_Name:\n    when: {paid_orders: {gte: 1}}\n", "segment 'Bad_Name'", ["lower-case"]),
    ("bad-name-dash", "segments:\n  -x:\n    when: {paid_orders: {gte: 1}}\n", "segment '-x'", ["lower-case"]),
    ("bad-name-long",
     f"segments:\n  {'a' * 65}:\n    when: {{paid_orders: {{gte: 1}}}}\n", f"segment '{'a' * 65}'", ["64"]),
    ("unknown-key",
     "segments:\n  seg-a:\n    whne: {}\n    when: {paid_orders: {gte: 1}}\n", "segment 'seg-a'", ["whne"]),
    ("version-0",
     "segments:\n  seg-a:\n    version: 0\n    when: {paid_orders: {gte: 1}}\n", "segment 'seg-a'", ["version", "0"]),
    ("version-text",
     "segments:\n  seg-a:\n    version: '2'\n    when: {paid_orders: {gte: 1}}\n", "segment 'seg-a'", ["version"]),
    ("version-bool",
     "segments:\n  seg-a:\n    version: true\n    when: {paid_orders: {gte: 1}}\n", "segment 'seg-a'", ["version"]),
    ("description-not-text",
     "segments:\n  seg-a:\n    description: [x]\n    when: {paid_orders: {gte: 1}}\n", "segment 'seg-a'",
     ["description"]),
    ("missing-when", "segments:\n  seg-a:\n    description: no rule\n", "segment 'seg-a'", ["when"]),
    ("not-a-mapping", "segments:\n  seg-a: 5\n", "segment 'seg-a'", ["when"]),
]


@pytest.mark.parametrize("text, where, words", [b[1:] for b in BAD_SEGMENTS], ids=[b[0] for b in BAD_SEGMENTS])
def test_bad_segment(text, where, words):
    problems = problems_of(text)
    assert len(problems) == 1, problems
    assert problems[0].startswith(where + ": "), problems[0]
    for word in words:
        assert word in problems[0]


@pytest.mark.parametrize("text, words", [
    ("segments: [\n", ["segs.yaml", "YAML"]),
    ("segments:\n  a:\n   when: {a: 1\n", ["segs.yaml", "YAML"]),
    ("", ["segs.yaml", "segments"]),
    ("segments: {}\n", ["segs.yaml", "segments"]),
    ("segments: [a, b]\n", ["segs.yaml", "segments"]),
    ("- 1\n- 2\n", ["segs.yaml", "segments"]),
    ("segmentz:\n  a:\n    when: {paid_orders: {gte: 1}}\n", ["segs.yaml", "segments"]),
], ids=["unclosed-flow", "unclosed-mapping", "empty-file", "no-segments", "segments-a-list", "a-list", "misspelt-top"])
def test_unusable_file(text, words):
    problems = problems_of(text)
    for word in words:
        assert word in problems[0]


def test_unknown_top_level_key_is_reported_beside_segment_problems():
    problems = problems_of("""\
        extra: 1
        segments:
          seg-a:
            when: {paid_order: {gte: 1}}
        """)
    assert len(problems) == 2
    assert "segs.yaml" in problems[0] and "extra" in problems[0]
    assert problems[1].startswith("segment 'seg-a': when: ")


def test_impossible_unquoted_yaml_date_is_a_definition_error():
    problems = problems_of(one_condition("{birth_date: {eq: 1990-13-01}}"))
    assert "1990-13-01" in " ".join(problems)


def test_all_problems_are_reported_at_once():
    problems = problems_of("""\
        segments:
          seg-a:
            version: 0
            bogus: 1
            when:
              all:
                - paid_order: {gte: 1}
                - city: {gt: x, lt: y}
                - not: {last_paid_at: {within: 3w}}
                - any: []
                - repeated: {event: page_viewed, per: brand, at_least: 0, within: 7d}
          seg-b:
            when: {paid_orders: {gte: 1}}
          Seg-C:
            when: {paid_orders: {gte: 1}}
          seg-d:
            when: {last_paid_at: {gte: {attr: city}}}
        """)
    expected = [
        ("segment 'seg-a': ", "bogus"),
        ("segment 'seg-a': ", "version"),
        ("segment 'seg-a': when.all[0]: ", "paid_order"),
        ("segment 'seg-a': when.all[1].city.gt: ", "'gt'"),
        ("segment 'seg-a': when.all[1].city.lt: ", "'lt'"),
        ("segment 'seg-a': when.all[2].not.last_paid_at.within: ", "'3w'"),
        ("segment 'seg-a': when.all[3].any: ", "non-empty"),
        ("segment 'seg-a': when.all[4].repeated.event: ", "page_viewed"),
        ("segment 'seg-a': when.all[4].repeated.per: ", "brand"),
        ("segment 'seg-a': when.all[4].repeated.at_least: ", "0"),
        ("segment 'Seg-C': ", "lower-case"),
        ("segment 'seg-d': when.last_paid_at.gte: ", "city"),
    ]
    for prefix, word in expected:
        assert any(p.startswith(prefix) and word in p for p in problems), (prefix, word, problems)
    assert len(problems) == len(expected), problems
    assert not any("seg-b" in p for p in problems)


def test_a_file_that_does_not_exist(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(DefinitionError) as info:
        load_catalog(missing)
    assert len(info.value.problems) == 1
    assert str(missing) in info.value.problems[0]


def test_load_catalog_reads_a_file_and_names_it_in_problems(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("segments:\n  buyer:\n    version: 2\n    description: d\n    when: {paid_orders: {gte: 1}}\n")
    catalog = load_catalog(good)
    assert [(s.name, s.version, s.description) for s in catalog.segments] == [("buyer", 2, "d")]
    bad = tmp_path / "bad.yaml"
    bad.write_text("segments: 3\n")
    with pytest.raises(DefinitionError) as info:
        load_catalog(bad)
    assert str(bad) in info.value.problems[0]


def test_definition_errors_are_the_products_problem_lists():
    """One root for the product's refusals (stream.errors): a caller may catch Problems, or
    ValueError as before; a bad document alone is a SegmentsError with its one message."""
    with pytest.raises(Problems) as info:
        parse_catalog("segments: 3\n", source="segs.yaml")
    assert isinstance(info.value, DefinitionError) and isinstance(info.value, ValueError)
    assert str(info.value) == ("invalid segment definitions:\n  - segs.yaml: expected a mapping with a non-empty "
                               "`segments:` mapping of name -> definition")
    with pytest.raises(DocumentError) as bad:
        load("[", SEGMENTS_FILE)
    assert isinstance(bad.value, SegmentsError) and isinstance(bad.value, ValueError)
    assert not isinstance(bad.value, Problems)

def test_default_catalog_names_are_the_contract():
    assert [s.name for s in default_catalog().segments] == sorted([
        "new-customer", "repeat-buyer", "loyal", "champion", "high-value", "at-risk", "churned",
        "cart-abandoner", "window-shopper"])
    assert all(s.version == 1 for s in default_catalog().segments)


# ------------------------------------------------------------------------------------------------
# which segments an event re-evaluates

PAID = {"new-customer", "repeat-buyer", "loyal", "champion", "high-value", "at-risk", "churned"}
AFFECTED = [
    (ev.ProductViewed, {"window-shopper"}),
    (ev.OrderPlaced, {"cart-abandoner", "window-shopper"}),
    (ev.OrderPaid, PAID),
    (ev.OrderCancelled, PAID),
    (ev.CartUpdated, {"cart-abandoner"}),
    (ev.CartAbandoned, {"cart-abandoner"}),
    (ev.CustomerUpdated, set()),
]


@pytest.mark.parametrize("etype, names", AFFECTED, ids=[a[0].__name__ for a in AFFECTED])
def test_default_catalog_affected(etype, names):
    assert {s.name for s in default_catalog().affected[etype]} == names


PROFILE_CATALOG = """\
segments:
  almaty:
    when: {city: {eq: Almaty}}
  kz-buyer:
    when:
      all:
        - country: {eq: KZ}
        - paid_orders: {gte: 1}
  recent:
    when: {last_seen_at: {within: 1d}}
  cart-after-order:
    when: {cart_updated_at: {gt: {attr: last_order_placed_at}}}
  phone-fan:
    when: {repeated: {event: order_placed, per: category, at_least: 2, within: 30d}}
  never-paid:
    when: {paid_orders: {eq: 0}}
"""


def test_custom_catalog_affected():
    catalog = parse_catalog(PROFILE_CATALOG)
    names = {etype: {s.name for s in segs} for etype, segs in catalog.affected.items()}
    assert names[ev.CustomerUpdated] == {"almaty", "kz-buyer", "recent"}
    assert names[ev.ProductViewed] == {"recent"}
    assert names[ev.OrderPlaced] == {"almaty", "kz-buyer", "recent", "cart-after-order", "phone-fan"}
    assert names[ev.OrderPaid] == {"kz-buyer", "recent", "never-paid"}
    assert names[ev.CartUpdated] == {"recent", "cart-after-order"}
    assert set(catalog.affected) == set(CHANGED_BY)


def test_customer_updated_moves_a_segment_on_city():
    changes = run([product_viewed("c", P, "p-1"), customer_updated("c", P + HOUR, city="Almaty", event_id="u-1"),
                   customer_updated("c", P + 2 * HOUR, city="Astana", event_id="u-2")], catalog=PROFILE_CATALOG)
    assert moves(changes, "c", "almaty") == [("almaty", "entered", iso(P + HOUR), "event", "u-1"),
                                             ("almaty", "exited", iso(P + 2 * HOUR), "event", "u-2")]


def test_brand_new_customer_is_evaluated_against_all_segments():
    # never-paid reads only paid orders, which product_viewed does not change; a new customer
    # enters it anyway, on their very first event
    changes = run([product_viewed("c", P, "p-1", event_id="v-1")], catalog=PROFILE_CATALOG)
    assert sorted(moves(changes)) == [("never-paid", "entered", iso(P), "event", "v-1"),
                                      ("recent", "entered", iso(P), "event", "v-1")]


def test_existing_customer_is_not_re_evaluated_for_segments_the_event_cannot_move():
    catalog = """\
    segments:
      never-paid:
        when: {paid_orders: {eq: 0}}
    """
    changes = run([order_paid("c", P, "o-1", 1.0), product_viewed("c", P + HOUR, "p-1")],
                  catalog=textwrap.dedent(catalog))
    assert changes == []   # first event paid: never entered; the view cannot change it


def test_attribute_compared_with_attribute_reads_both():
    changes = run([order_placed("c", P, "o-1"), cart_abandoned("c", P + HOUR)], catalog=PROFILE_CATALOG)
    assert "cart-after-order" not in segments_of(changes, "c")    # cart_updated_at unset
    changes = run([order_placed("c", P, "o-1"), cart_updated("c", P + HOUR, event_id="k-1"),
                   order_placed("c", P + 2 * HOUR, "o-2", event_id="o-2")], catalog=PROFILE_CATALOG)
    assert moves(changes, "c", "cart-after-order") == [
        ("cart-after-order", "entered", iso(P + HOUR), "event", "k-1"),
        ("cart-after-order", "exited", iso(P + 2 * HOUR), "event", "o-2")]


def test_repeated_orders_per_category():
    phones = [("p-1", "phones")]
    changes = run([order_placed("c", P, "o-1", phones), order_placed("c", P + DAY, "o-2", [("p-2", "laptops")]),
                   order_placed("c", P + 2 * DAY, "o-3", [("p-3", "phones"), ("p-4", "phones")], event_id="o-3")],
                  until=P + 60 * DAY, catalog=PROFILE_CATALOG)
    assert moves(changes, "c", "phone-fan") == [
        ("phone-fan", "entered", iso(P + 2 * DAY), "event", "o-3"),
        ("phone-fan", "exited", iso(P + 30 * DAY), "time", None)]   # the 2nd-newest phones order is P


# ------------------------------------------------------------------------------------------------
# integers of any size YAML reads (up to Python's 4,300 digits) are compared exactly, never turned into
# floats: one past float's range (1.8e308) raised OverflowError out of the compiler, a traceback from
# `segments replay` and a crash of every worker reading such a definitions-topic record

_HUGE = st.builds(lambda sign, digits, low: sign * (10 ** digits + low), st.sampled_from([1, -1]),
                  st.integers(300, 4299), st.integers(0, 10**6))


@settings(max_examples=60, deadline=None)
@given(_HUGE, st.sampled_from(["paid_total", "paid_orders", "cart_value", "custom.tier"]),
       st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"]))
def test_an_integer_past_floats_range_is_a_literal_like_any_other(value, attr, op):
    catalog = parse_catalog(one_condition(f"{{{attr}: {{{op}: {value}}}}}"), source="segs.yaml")
    assert [s.name for s in catalog.segments] == ["seg-a"]


def test_a_topic_record_with_an_integer_past_floats_range_resolves_without_raising():
    from stream.definitions.resolution import file_definitions, parse_record, resolve
    record = parse_record(b"big", b"version: 2\nwhen: {paid_total: {gte: " + b"9" * 400 + b"}}\n", 3)
    resolution = resolve(file_definitions(default_catalog()), {"big": record}, None)
    assert resolution.definitions["big"]["when"] == {"paid_total": {"gte": int("9" * 400)}}
