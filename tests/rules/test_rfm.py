"""Live RFM (stream.rules.rfm, docs/rfm.md): the `rfm:` section's grammar and its errors, the
scores and their exact recency instants, the cell table, the section among the definitions that
run (file, topic, re-evaluation of its readers only), and the explanation's scores. The engine
against the oracle: tests/engine/test_incremental_equals_scratch.py (the rfm catalogs)."""
from __future__ import annotations

from typing import Any

import pytest

from stream.definitions.resolution import Running, file_definitions, redefine, resolve
from stream.engine.core import Engine
from stream.engine.redefinition import Redefinition
from stream.rules.catalog import compile_catalog, parse_catalog
from stream.rules.explanation import explain, render
from stream.rules.problems import DefinitionError
from stream.rules.rfm import CELLS, RFM_KEY, cell_of, rfm_scores, to_five
from tests.definition_records import record
from tests.helpers import DAY, instant, order_cancelled, order_paid

T0 = instant("2025-03-01T10:00:00Z")
CUTS = """
  cuts:
    recency: [14d, 30d, 60d, 120d]
    frequency: [2, 3, 5, 8]
    monetary: [1000, 5000, 20000, 50000]
"""
YAML = f"""
rfm:{CUTS}
segments:
  champions: {{when: {{rfm.cell: {{eq: champions}}}}}}
  recent:    {{when: {{rfm.r: {{gte: 4}}}}}}
  big:       {{when: {{rfm.m: {{gte: 4}}}}}}
  loyal:     {{when: {{paid_orders: {{gte: 5}}}}}}
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(DefinitionError) as caught:
        parse_catalog(text, "s.yaml")
    return caught.value.problems


def test_the_defaults_measure_payments_at_five_levels():
    rfm = parse_catalog(YAML).rfm
    assert rfm is not None and rfm.levels == 5
    assert (rfm.recency.name, rfm.frequency.name, rfm.monetary.name) == ("last_paid_at", "paid_orders", "paid_total")
    assert rfm.cuts == ((14 * DAY, 30 * DAY, 60 * DAY, 120 * DAY), (2, 3, 5, 8), (1000, 5000, 20000, 50000))
    assert parse_catalog(YAML).by_name["recent"].reads == {"paid"}


@pytest.mark.parametrize(("section", "expected"), [
    ("levels: 12", "s.yaml: rfm.levels: a whole number from 2 to 9; got 12"),
    ("recency: paid_total", "rfm.recency: a time attribute; got 'paid_total'"),
    ("recency: last_payd_at", "(did you mean 'last_paid_at'?)"),
    ("frequency: last_paid_at", "rfm.frequency: a number attribute or trait.<name>"),
    ("frequency: trait.nope", "rfm.frequency: unknown trait 'nope'"),
    ("colour: red", "rfm: unknown key(s) colour"),
    ("cuts: {recency: [1d, 2d], frequency: [1, 2, 3, 4], monetary: [1, 2, 3, 4]}",
     "rfm.cuts.recency: a list of 4 cut points (levels - 1)"),
    ("cuts: {recency: [1d, 2d, 2d, 3d], frequency: [1, 2, 3, 4], monetary: [1, 2, 3, 4]}",
     "rfm.cuts.recency: cut points must be strictly ascending"),
    ("cuts: {recency: [1d, 2d, 3d, 4 days], frequency: [1, 2, 3, 4], monetary: [1, 2, 3, 4]}",
     "rfm.cuts.recency[3]: a duration is a positive whole number"),
    ("cuts: {recency: [1d, 2d, 3d, 4d], frequency: [1, 2, x, 4], monetary: [1, 2, 3, 4]}",
     "rfm.cuts.frequency[2]: expected a number, got 'x'"),
    ("cuts: {recency: [1d, 2d, 3d, 4d]}", "rfm.cuts: a mapping with recency, frequency and monetary"),
])
def test_a_bad_section_names_where(section: str, expected: str):
    found = problems_of(f"rfm: {{{section}}}\nsegments: {{a: {{when: {{paid_orders: {{gte: 1}}}}}}}}\n")
    assert any(expected in p for p in found), found


def test_a_string_trait_measures_nothing():
    found = problems_of("traits: {top: {most_frequent: order_placed.items.category}}\n"
                        "rfm: {monetary: trait.top}\nsegments: {a: {when: {paid_orders: {gte: 1}}}}\n")
    assert any("trait 'top' is not a number" in p for p in found), found


@pytest.mark.parametrize(("condition", "expected"), [
    ("{rfm.r: {gte: 6}}", "when.rfm.r.gte: a score is a whole number from 1 to 5 (levels); got 6"),
    ("{rfm.f: {in: [1, true]}}", "a score is a whole number from 1 to 5"),
    ("{rfm.cell: {eq: champion}}", "unknown cell 'champion' (did you mean 'champions'?)"),
    ("{rfm.cell: {gte: champions}}", "operator 'gte' does not apply to rfm.cell"),
    ("{rfm.rr: {gte: 1}}", "unknown RFM value 'rfm.rr' (did you mean 'rfm.r'?)"),
    ("{rfm.m: 3}", "expected a mapping of operator -> value"),
])
def test_a_bad_condition_names_where(condition: str, expected: str):
    found = problems_of(f"rfm:{CUTS}segments:\n  a: {{when: {condition}}}\n")
    assert any(expected in p for p in found), found


def test_reading_rfm_without_cuts_says_to_calibrate():
    for text in ("segments: {a: {when: {rfm.r: {gte: 4}}}}\n",
                 "rfm: {levels: 4}\nsegments: {a: {when: {rfm.cell: {eq: lost}}}}\n"):
        found = problems_of(text)
        assert any("needs the rfm section's cut points" in p and "segments rfm calibrate" in p for p in found)
    # a section without cuts that nothing reads is fine (calibrate reads it)
    assert parse_catalog("rfm: {levels: 4}\nsegments: {a: {when: {paid_orders: {gte: 1}}}}\n").rfm is not None


def test_no_segment_takes_the_rfm_key():
    assert any("RFM under `rfm:`" in p for p in problems_of(f"segments: {{{RFM_KEY}: {{when: {{paid_orders: "
                                                            f"{{gte: 1}}}}}}}}\n"))


def _paid(engine: Engine, at: int, order: str, amount: float) -> list[Any]:
    return [(c.segment, c.change, c.at) for c in engine.apply(order_paid("c", at, order, amount))]


def test_r_drops_at_the_exact_instant_the_age_crosses_a_cut():
    catalog = parse_catalog(YAML)
    engine = Engine(catalog)
    assert _paid(engine, T0, "o1", 6000.0) == [("recent", "entered", "2025-03-01T10:00:00Z")]
    st = engine.store.get("c")
    assert st is not None
    assert rfm_scores(catalog.rfm, st, T0) == (5, 1, 3, "new")
    assert rfm_scores(catalog.rfm, st, T0 + 14 * DAY - 1) == (5, 1, 3, "new")
    assert rfm_scores(catalog.rfm, st, T0 + 14 * DAY) == (4, 1, 3, "promising")
    moves = engine.advance(T0 + 30 * DAY)                   # R 3 at last + 30d exactly
    assert [(c.segment, c.change, c.at, c.cause) for c in moves] == [
        ("recent", "exited", "2025-03-31T10:00:00Z", "time")]
    assert rfm_scores(catalog.rfm, st, T0 + 400 * DAY) == (1, 1, 3, "lost")


def test_a_customer_who_never_paid_has_no_scores_and_no_timer():
    catalog = parse_catalog(YAML)
    engine = Engine(catalog)
    engine.apply(order_paid("c", T0, "o1", 10.0))
    engine.apply(order_cancelled("c", T0 + DAY, "o1"))
    st = engine.store.get("c")
    assert st is not None and rfm_scores(catalog.rfm, st, T0 + DAY) is None
    assert not st.member and not st.timers
    assert explain("c", st, catalog, T0 + DAY)["rfm"] == {"r": None, "f": None, "m": None, "cell": None}


def test_the_cells_tile_the_grid_and_scale_other_levels():
    assert {cell_of(r, f, 5) for r in range(1, 6) for f in range(1, 6)} == set(CELLS)
    for levels in range(2, 10):
        assert to_five(1, levels) == 1 and to_five(levels, levels) == 5
        scaled = [to_five(s, levels) for s in range(1, levels + 1)]
        assert scaled == sorted(scaled) and len(set(scaled)) == min(levels, 5)
    assert [to_five(s, 3) for s in (1, 2, 3)] == [1, 3, 5]
    assert (cell_of(3, 3, 3), cell_of(3, 1, 3), cell_of(1, 3, 3)) == ("champions", "new", "cannot-lose")


def test_explain_shows_the_scores_and_each_leaf_its_value():
    catalog = parse_catalog(YAML)
    engine = Engine(catalog)
    for i, at in enumerate((T0, T0 + DAY, T0 + 2 * DAY, T0 + 3 * DAY, T0 + 4 * DAY)):
        engine.apply(order_paid("c", at, f"o{i}", 10000.0))
    st = engine.store.get("c")
    assert st is not None
    answer = explain("c", st, catalog, engine.now)
    assert answer["rfm"] == {"r": 5, "f": 4, "m": 5, "cell": "champions"}
    leaf = next(s["when"] for s in answer["conditions"] if s["segment"] == "recent")
    assert leaf == {"condition": "rfm.r >= 4", "holds": True, "value": 5, "changes_at": "2025-03-19T10:00:00Z"}
    assert "rfm: r 5, f 4, m 5, cell champions" in render(answer)
    plain = compile_catalog({"loyal": {"when": {"paid_orders": {"gte": 5}}}}, "plain")
    assert explain("c", st, plain, engine.now)["rfm"] is None


# ------------------------------------------------------------------------------------------------
# Among the definitions that run

FILE = file_definitions(parse_catalog(YAML))


def test_the_section_runs_as_the_rfm_key_beside_the_segments():
    assert FILE[RFM_KEY]["cuts"]["frequency"] == [2, 3, 5, 8]
    resolution = resolve(FILE, {}, None)
    assert resolution.catalog.rfm is not None and not resolution.rejected
    assert compile_catalog(resolution.definitions, "again").rfm == resolution.catalog.rfm


def test_new_cuts_reevaluate_the_readers_of_rfm_only():
    new = {**FILE[RFM_KEY], "version": 2, "cuts": {**FILE[RFM_KEY]["cuts"], "monetary": [100, 200, 300, 400]}}
    resolution = resolve(FILE, {RFM_KEY: record(RFM_KEY, new, 7)}, FILE)
    assert resolution.sources[RFM_KEY] == "topic offset 7" and not resolution.rejected
    moved = redefine(Running(FILE), resolution, T0)
    assert moved.redefine == {"big": None, "champions": None, "recent": None}
    # a version or description alone scores nothing differently
    same = {**FILE[RFM_KEY], "version": 2, "description": "the shop's RFM"}
    unchanged = resolve(FILE, {RFM_KEY: record(RFM_KEY, same, 8)}, FILE)
    assert Redefinition.between(compile_catalog(FILE, "old"), unchanged.catalog).segments == {}


def test_only_customers_whose_membership_changes_move_with_cause_definition():
    old = compile_catalog(FILE, "old")
    engine = Engine(old)
    engine.apply(order_paid("small", T0, "s1", 500.0))
    engine.apply(order_paid("mid", T0, "m1", 6000.0))
    new = compile_catalog({**FILE, RFM_KEY: {**FILE[RFM_KEY], "cuts": {**FILE[RFM_KEY]["cuts"],
                                                                        "monetary": [100, 200, 300, 1000]}}}, "new")
    engine.redefine(new)
    change = Redefinition.between(old, new)
    out: list[Any] = []
    for cid in ("small", "mid"):
        st = engine.store.get(cid)
        assert st is not None
        engine.reevaluate(cid, st, change, out)
    # small: m 1 -> 4, joins big; mid: m 3 -> 5, joins big; neither changes R, so recent stays put
    assert [(c.customer_id, c.segment, c.change, c.cause) for c in out] == [
        ("small", "big", "entered", "definition"), ("mid", "big", "entered", "definition")]


def test_a_segment_is_checked_against_the_topics_cuts_whatever_its_name():
    """The file's section has no cuts; the topic's has: a segment reading rfm.* (named to sort
    before the rfm key, '-' before '.') runs against the topic's."""
    file = file_definitions(parse_catalog("rfm: {levels: 5}\nsegments: {loyal: {when: {paid_orders: {gte: 5}}}}\n"))
    reader = {"version": 1, "when": {"rfm.r": {"gte": 4}}}
    rfm = {**FILE[RFM_KEY], "version": 2}
    resolution = resolve(file, {RFM_KEY: record(RFM_KEY, rfm, 1), "rfm-a": record("rfm-a", reader, 2)}, file)
    assert not resolution.rejected and "rfm-a" in resolution.catalog.by_name
    # the section tombstoned: the file's (without cuts) would leave the reader unable to run, so the
    # running section is kept for it
    after = resolve(file, {RFM_KEY: record(RFM_KEY, None, 3), "rfm-a": record("rfm-a", reader, 2)},
                    resolution.definitions)
    assert after.definitions[RFM_KEY] == rfm and "rfm-a" in after.catalog.by_name
    assert "the rfm section: kept at its running definition" in after.rejected[RFM_KEY].problems[0]


def test_segments_define_takes_the_rfm_key(tmp_path):
    from stream.cli.define import read_definition
    path = tmp_path / "rfm.yaml"
    path.write_text("levels: 3\ncuts: {recency: [7d, 30d], frequency: [2, 4], monetary: [100, 1000]}\n")
    assert read_definition(RFM_KEY, path)[1] == []
    path.write_text("levels: 3\ncuts: {recency: [7d], frequency: [2, 4], monetary: [100, 1000]}\n")
    assert "rfm.yaml: rfm.cuts.recency: a list of 2 cut points" in read_definition(RFM_KEY, path)[1][0]


def test_the_example_file_loads_and_the_default_catalog_has_no_rfm():
    from pathlib import Path

    from stream.rules.catalog import load_catalog
    example = load_catalog(Path(__file__).resolve().parents[2] / "examples" / "rfm.yaml")
    assert example.rfm is not None and example.rfm.cuts is not None
    assert all(s.rfm for s in example.segments)
    assert load_catalog().rfm is None and not any(s.rfm for s in load_catalog().segments)
