"""Segment references (`segment: {name: N}`, with `for:` or `left_within:`): load errors, one
step moving a segment and its dependants with the same cause, the exits the state keeps (and the
bytes of a state without them), the explanation, and references among live definitions."""
from __future__ import annotations

from pathlib import Path

import pytest

from stream.definitions.resolution import file_definitions, resolve
from stream.engine.core import Engine
from stream.engine.redefinition import Redefinition
from stream.model.state import CustomerState, TraitState, dump_state, load_state
from stream.rules.catalog import load_catalog, parse_catalog
from stream.rules.explanation import explain
from stream.rules.problems import DefinitionError
from tests.definition_records import record
from tests.helpers import DAY, instant, order_paid

P = instant("2025-03-01T10:00:00Z")
YAML = """
segments:
  buyer:    {when: {paid_orders: {gte: 1}}}
  lapsed:   {when: {all: [{paid_orders: {gte: 1}}, {last_paid_at: {ago: 30d}}]}}
  settled:  {when: {segment: {name: buyer, for: 7d}}}
  win-back: {when: {all: [{segment: {name: lapsed, left_within: 30d}}, {segment: {name: buyer}}]}}
  lapsing:  {when: {segment: {name: lapsed}}}
"""


def problems(yaml: str) -> list[str]:
    with pytest.raises(DefinitionError) as exc:
        parse_catalog(yaml)
    return exc.value.problems


@pytest.mark.parametrize("when, expected", [
    ("{segment: {name: lyal}}", "references unknown segment 'lyal' (did you mean 'loyal'?)"),
    ("{segment: {name: a}}", "segment 'a': when: references itself"),
    ("{segment: {name: loyal, for: 3d, left_within: 2d}}", "`for:` and `left_within:` exclude each other"),
    ("{segment: {name: loyal, for: 3x}}", "segment.for: a duration is"),
    ("{segment: {name: loyal, left_within: 30}}", "segment.left_within: a duration is a string"),
    ("{segment: {name: loyal, since: 3d}}", "unknown key(s) since; allowed: for, left_within, name"),
    ("{segment: loyal}", "expected a mapping like {name: loyal}"),
    ("{segment: {name: Loyal!}}", "segment.name: a segment name"),
])
def test_a_bad_reference_is_a_load_error_naming_it(when: str, expected: str):
    found = problems(f"segments:\n  loyal: {{when: {{paid_orders: {{gte: 5}}}}}}\n  a: {{when: {when}}}\n")
    assert any(expected in p for p in found), found


def test_a_cycle_is_rejected_with_the_cycle_named():
    found = problems("""
segments:
  a: {when: {segment: {name: b}}}
  b: {when: {any: [{segment: {name: c}}, {paid_orders: {gte: 1}}]}}
  c: {when: {not: {segment: {name: a}}}}
  d: {when: {segment: {name: a}}}
""")
    assert found == ["segments a -> b -> c -> a reference each other in a cycle"]


def test_referenced_segments_are_evaluated_first_ties_by_name():
    catalog = parse_catalog(YAML)
    assert [s.name for s in catalog.segments] == ["buyer", "lapsed", "lapsing", "settled", "win-back"]
    assert [s.name for s in catalog.dependants["lapsed"]] == ["lapsing", "win-back"]
    assert catalog.recorded == {"lapsed"}


def test_an_event_moves_a_segment_and_its_dependants_in_one_step_with_the_same_cause():
    engine = Engine(parse_catalog(YAML))
    first = engine.apply(order_paid("c1", P, "o1", 10.0, "e1"))
    assert [(c.segment, c.change, c.cause, c.event_id) for c in first] == [("buyer", "entered", "event", "e1")]
    # 30 days on, lapsed enters by time, and lapsing with it, at the same instant and cause
    moved = engine.advance(P + 30 * DAY)
    assert [(c.segment, c.change, c.cause, c.at) for c in moved] == [
        ("settled", "entered", "time", "2025-03-08T10:00:00Z"),
        ("lapsed", "entered", "time", "2025-03-31T10:00:00Z"), ("lapsing", "entered", "time", "2025-03-31T10:00:00Z")]
    back = engine.apply(order_paid("c1", P + 40 * DAY, "o2", 10.0, "e2"))
    assert [(c.segment, c.change, c.event_id) for c in back] == [
        ("lapsed", "exited", "e2"), ("lapsing", "exited", "e2"), ("win-back", "entered", "e2")]
    st = engine.store.get("c1")
    assert st is not None and st.left == {"lapsed": P + 40 * DAY}
    # win-back holds until 30 days after lapsed was left
    assert [(c.segment, c.change, c.at) for c in engine.advance(P + 80 * DAY)][:1] == [
        ("lapsed", "entered", "2025-05-10T10:00:00Z")]


def test_a_state_without_exits_keeps_its_bytes_and_one_with_them_round_trips():
    st = CustomerState(first_seen=P, last_seen=P, member={"buyer": P})
    data = dump_state(st)
    assert data[1:4] == b"\xdc" + (len(CustomerState.__struct_fields__) - 2).to_bytes(2, "big")
    assert load_state(data) == st
    with_traits = CustomerState(first_seen=P, last_seen=P, traits={"t": TraitState(events=[(P, None, "")])})
    assert dump_state(with_traits)[1:4] == b"\xdc" + (len(CustomerState.__struct_fields__) - 1).to_bytes(2, "big")
    assert load_state(dump_state(with_traits)) == with_traits
    st.left = {"lapsed": P}
    assert load_state(dump_state(st)) == st and len(dump_state(st)) > len(data)


def test_the_explanation_shows_what_a_reference_reads():
    engine = Engine(parse_catalog(YAML))
    engine.apply(order_paid("c1", P, "o1", 10.0, "e1"))
    st = engine.store.get("c1")
    assert st is not None
    answer = explain("c1", st, engine.catalog, engine.now)
    settled = next(s for s in answer["conditions"] if s["segment"] == "settled")
    assert settled["when"] == {"condition": "segment buyer for 7d", "holds": False,
                               "value": "2025-03-01T10:00:00Z", "changes_at": "2025-03-08T10:00:00Z"}


def test_a_redefined_segment_reevaluates_its_dependants():
    old = parse_catalog(YAML)
    new = parse_catalog(YAML.replace("gte: 1}}}\n  lapsed", "gte: 2}}}\n  lapsed"))
    assert Redefinition.between(old, new).segments == {"buyer": None, "settled": None, "win-back": None}


FILE = file_definitions(parse_catalog(YAML))


def test_a_live_segment_may_reference_another_live_one():
    topic = {"fan": record("fan", {"version": 1, "when": {"segment": {"name": "new", "for": "1d"}}}, 1),
             "new": record("new", {"version": 1, "when": {"paid_orders": {"gte": 3}}}, 2)}
    resolution = resolve(FILE, topic, FILE)
    assert not resolution.rejected and resolution.catalog.dependants["new"][0].name == "fan"


def test_removing_a_segment_others_reference_is_rejected_and_it_keeps_running():
    resolution = resolve({k: v for k, v in FILE.items() if k != "lapsed"}, {}, FILE)
    assert resolution.definitions["lapsed"] == FILE["lapsed"]
    assert resolution.rejected["lapsed"].problems == (
        "segment 'lapsed': cannot be removed while segment 'lapsing' references it; change or remove 'lapsing' "
        "first",)
    new = {"version": 1, "when": {"paid_orders": {"gte": 3}}}
    fan = {"version": 1, "when": {"segment": {"name": "new"}}}
    running = {**FILE, "new": new, "fan": fan}
    tombstone = resolve(FILE, {"new": record("new", None, 3), "fan": record("fan", fan, 2)}, running)
    assert tombstone.definitions["new"] == new and "new" in tombstone.catalog.by_name
    assert "cannot be removed while segment 'fan' references it" in tombstone.rejected["new"].problems[0]


def test_a_live_cycle_or_unknown_reference_is_rejected():
    cyclic = {"buyer": record("buyer", {"version": 2, "when": {"segment": {"name": "settled"}}}, 1)}
    resolution = resolve(FILE, cyclic, FILE)
    assert resolution.definitions["buyer"] == FILE["buyer"]
    assert resolution.rejected["buyer"].problems == (
        "segments buyer -> settled -> buyer reference each other in a cycle",)
    unknown = {"fan": record("fan", {"version": 1, "when": {"segment": {"name": "nope"}}}, 1)}
    resolution = resolve(FILE, unknown, FILE)
    assert "fan" not in resolution.definitions
    assert resolution.rejected["fan"].problems == ("segment 'fan': references unknown segment 'nope'",)


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "references.yaml"


def test_the_example_file_wins_back_a_churned_buyer():
    engine = Engine(load_catalog(EXAMPLE))
    moves = [engine.apply(order_paid("c1", P + i * DAY, f"o{i}", 20000.0, f"e{i}")) for i in range(3)]
    assert [c.segment for c in moves[2]] == ["big-spender-this-month", "frequent-recent"]
    churned = engine.advance(P + 2 * DAY + 180 * DAY)
    assert ("churned", "entered") in [(c.segment, c.change) for c in churned]
    back = engine.apply(order_paid("c1", P + 190 * DAY, "o9", 10.0, "e9"))
    assert [(c.segment, c.change) for c in back] == [("churned", "exited"), ("win-back", "entered")]
    assert [(c.segment, c.change, c.at) for c in engine.advance(P + 300 * DAY)][0] == (
        "win-back", "exited", "2025-10-07T10:00:00Z")     # 30 days after leaving churned


def test_a_redefinition_moves_dependants_in_order_and_drops_exits_no_definition_reads():
    engine = Engine(parse_catalog(YAML))
    engine.apply(order_paid("c1", P, "o1", 10.0, "e1"))
    engine.advance(P + 30 * DAY)
    engine.apply(order_paid("c1", P + 40 * DAY, "o2", 10.0, "e2"))       # left lapsed: win-back
    old, new = engine.catalog, parse_catalog(YAML.replace("buyer:    {when: {paid_orders: {gte: 1}}}",
                                                           "buyer:    {when: {paid_orders: {gte: 3}}}"))
    engine.redefine(new)
    st = engine.store.get("c1")
    assert st is not None
    out: list = []
    assert engine.reevaluate("c1", st, Redefinition.between(old, new), out)
    assert [(c.segment, c.change, c.cause) for c in out] == [
        ("buyer", "exited", "definition"), ("settled", "exited", "definition"), ("win-back", "exited", "definition")]
    # no definition reads lapsed's exits any more: the state forgets them on the next pass
    unread = parse_catalog(YAML.replace("{segment: {name: lapsed, left_within: 30d}}", "{paid_orders: {gte: 9}}"))
    engine.redefine(unread)
    engine.reevaluate("c1", st, Redefinition.between(new, unread), out)
    assert st.left is None
