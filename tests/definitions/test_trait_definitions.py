"""Traits among the definitions that run (stream.definitions.resolution): carried as
`trait.<name>` beside the segments (file, topic, a partition's Running record), versioned like
them; a segment reading a trait is checked against the traits that run; a trait added or redefined
while running re-evaluates the segments reading it and flags them as needing a backfill, but for
order_paid traits, which start from the payments the state keeps."""
from __future__ import annotations

from typing import Any

from stream.definitions.resolution import Running, file_definitions, redefine, resolve
from stream.engine.core import Engine
from stream.engine.redefinition import Redefinition
from stream.model.time import LATEST
from stream.rules.catalog import compile_catalog, parse_catalog
from tests.definition_records import record
from tests.helpers import DAY, instant, order_paid, product_viewed

P = instant("2025-03-01T10:00:00Z")
FILE_YAML = """
traits:
  orders_7d: {count: order_paid, within: 7d}
  views_1d:  {count: product_viewed, within: 1d}
segments:
  frequent: {when: {trait.orders_7d: {gte: 2}}}
  browsing: {when: {trait.views_1d: {gte: 1}}}
  loyal:    {when: {paid_orders: {gte: 5}}}
"""
FILE = file_definitions(parse_catalog(FILE_YAML))


def test_a_files_traits_run_beside_its_segments():
    assert FILE["trait.orders_7d"] == {"count": "order_paid", "within": "7d"}
    resolution = resolve(FILE, {}, None)
    assert set(resolution.catalog.traits) == {"orders_7d", "views_1d"} and not resolution.rejected
    assert resolution.catalog.by_name["frequent"].traits == {"orders_7d"}


def test_a_topic_trait_is_versioned_like_a_segment_and_read_by_a_topic_segment():
    trait = {"version": 2, "sum": "order_paid.amount", "within": "30d"}
    segment = {"version": 1, "when": {"trait.spend_30d": {"gte": 100}}}
    resolution = resolve(FILE, {"trait.spend_30d": record("trait.spend_30d", trait, 3),
                                "big": record("big", segment, 4)}, FILE)
    assert not resolution.rejected and resolution.sources["trait.spend_30d"] == "topic offset 3"
    assert resolution.catalog.by_name["big"].traits == {"spend_30d"}
    # changed without a newer version: rejected, the running one kept
    changed = {**trait, "within": "60d"}
    again = resolve(FILE, {"trait.spend_30d": record("trait.spend_30d", changed, 5),
                           "big": record("big", segment, 4)}, resolution.definitions)
    assert again.definitions["trait.spend_30d"] == trait
    assert "not newer" in again.rejected["trait.spend_30d"].problems[0]


def test_a_segment_reading_an_unknown_or_invalid_trait_is_rejected():
    bad = {"version": 1, "when": {"trait.nope": {"gte": 1}}}
    resolution = resolve(FILE, {"x": record("x", bad, 1),
                                "trait.broken": record("trait.broken", {"version": 1, "sum": "order_paid"}, 2)}, FILE)
    assert "x" not in resolution.definitions and "unknown trait 'nope'" in resolution.rejected["x"].problems[0]
    assert "sum needs a field" in resolution.rejected["trait.broken"].problems[0]


def test_removing_a_trait_a_running_segment_reads_keeps_the_trait():
    topic_trait = {"version": 1, "count": "product_viewed", "within": "7d"}
    reader = {"version": 1, "when": {"trait.views_7d": {"gte": 3}}}
    first = resolve(FILE, {"trait.views_7d": record("trait.views_7d", topic_trait, 1),
                           "viewer": record("viewer", reader, 2)}, FILE)
    # the trait is tombstoned, its reader stays (and a reader of a removed trait cannot run)
    after = resolve(FILE, {"trait.views_7d": record("trait.views_7d", None, 3),
                           "viewer": record("viewer", reader, 2)}, first.definitions)
    assert after.definitions["trait.views_7d"] == topic_trait and "viewer" in after.catalog.by_name
    assert "segment 'viewer' reads" in after.rejected["trait.views_7d"].problems[0]


def _redefined(new_yaml: str) -> tuple[Running, Any]:
    resolution = resolve(file_definitions(parse_catalog(new_yaml)), {}, FILE)
    return redefine(Running(FILE), resolution, P), resolution


def test_a_redefined_trait_reevaluates_its_readers_and_flags_them_until_its_window_passed():
    moved, _ = _redefined(FILE_YAML.replace("views_1d:  {count: product_viewed, within: 1d}",
                                            "views_1d:  {count: product_viewed, within: 2d}"))
    assert moved.redefine == {"browsing": None}
    (flag,) = moved.incomplete["browsing"]
    assert (flag.stream, flag.complete_at) == ("trait.views_1d", P + 2 * DAY)


def test_a_new_lifetime_trait_needs_a_backfill_and_an_order_paid_one_none():
    new_yaml = (FILE_YAML + "  viewer:   {when: {trait.products: {gte: 3}}}\n"
                "  spender:  {when: {trait.spend: {gte: 100}}}\n")
    added = "traits:\n  products: {distinct_count: product_viewed.product_id}\n  spend: {sum: order_paid.amount}\n"
    moved, _ = _redefined(new_yaml.replace("traits:\n", added))
    assert set(moved.redefine) == {"viewer", "spender"}
    assert [f.complete_at for f in moved.incomplete["viewer"]] == [LATEST] and "spender" not in moved.incomplete


def test_a_version_or_description_alone_changes_no_trait():
    old = compile_catalog(FILE, "old")
    new = compile_catalog({**FILE, "trait.orders_7d": {**FILE["trait.orders_7d"], "version": 2,
                                                       "description": "paid orders this week"}}, "new")
    assert Redefinition.between(old, new).segments == {}


def test_an_order_paid_trait_defined_while_running_starts_from_the_kept_payments():
    plain = compile_catalog({"loyal": FILE["loyal"]}, "old")
    engine = Engine(plain)
    engine.apply(order_paid("c", P, "o1", 60.0))
    engine.apply(order_paid("c", P + DAY, "o2", 50.0))
    engine.apply(product_viewed("c", P + DAY, "p"))
    new = compile_catalog(FILE, "new")
    engine.redefine(new)
    st = engine.store.get("c")
    assert st is not None and not st.traits
    out: list[Any] = []
    assert engine.reevaluate("c", st, Redefinition.between(plain, new), out)
    assert [(c.segment, c.change, c.cause) for c in out] == [("frequent", "entered", "definition")]
    engine.apply(order_paid("c", P + 2 * DAY, "o3", 1.0))              # joins the two kept ones
    assert new.traits["orders_7d"].value(st, engine.now)[0] == 3
    assert [(c.segment, c.change) for c in engine.advance(P + 8 * DAY)] == [("frequent", "exited")]


def test_segments_define_checks_a_definition_against_the_traits(tmp_path):
    from stream.cli.define import read_definition
    path = tmp_path / "d.yaml"
    path.write_text("when: {trait.orders_7d: {gte: 3}}\n")
    traits = {k: v for k, v in FILE.items() if k.startswith("trait.")}
    assert read_definition("frequent", path, traits) == ({"when": {"trait.orders_7d": {"gte": 3}}}, [])
    definition, problems = read_definition("frequent", path)
    assert definition is not None and "unknown trait 'orders_7d'" in problems[0]
    path.write_text("count: order_paid\nwithin: 30d\n")
    assert read_definition("trait.orders_30d", path)[1] == []
    path.write_text("count: order_paid\nwithin: 30 days\n")
    assert "trait 'orders_30d'.within" in read_definition("trait.orders_30d", path)[1][0]
