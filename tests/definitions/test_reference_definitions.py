"""Segment references through live definitions: a left_within added while running reads exits the
state never recorded, and is flagged as needing a backfill like history not kept (docs/definitions.md)."""
from __future__ import annotations

from stream.definitions.resolution import Running, file_definitions, redefine, resolve
from stream.rules.catalog import parse_catalog
from tests.definition_records import record
from tests.helpers import DAY, instant

P = instant("2025-03-01T10:00:00Z")
FILE = file_definitions(parse_catalog("""
segments:
  loyal:   {when: {paid_orders: {gte: 5}}}
  churned: {when: {paid_orders: {gte: 1}}}
  member:  {when: {segment: {name: churned}}}
"""))


def _moved(running: Running, name: str, definition: dict, at: int) -> Running:
    return redefine(running, resolve(FILE, {name: record(name, definition)}, running.definitions), at)


def test_a_left_within_added_while_running_is_flagged_until_its_window_passed():
    moved = _moved(Running(FILE), "win-back", {"version": 1, "when": {"any": [
        {"segment": {"name": "churned", "left_within": "30d"}},
        {"segment": {"name": "churned", "left_within": "7d"}}]}}, P)
    (flag,) = moved.incomplete["win-back"]
    assert flag.describe() == {"stream": "exits.churned", "needs": {"per_item": 1, "within_seconds": 30 * 86400},
                               "kept": {"per_item": 0, "within_seconds": 0}, "complete_at": "2025-03-31T10:00:00Z"}
    # A second reader of those exits, ten days later: recorded since P, complete 40 days after P.
    again = redefine(moved, resolve(FILE, {"win-back": record("win-back", moved.definitions["win-back"]),
                                           "lapsed": record("lapsed", {"version": 1, "when": {"segment": {
                                               "name": "churned", "left_within": "40d"}}})}, moved.definitions),
                     P + 10 * DAY)
    (later,) = again.incomplete["lapsed"]
    assert (later.stream, later.kept, later.complete_at) == ("exits.churned", (1, 10 * DAY), P + 40 * DAY)
    assert again.incomplete["win-back"] == moved.incomplete["win-back"]       # unchanged: its flag stays


def test_exits_recorded_under_the_running_definitions_and_other_references_need_nothing():
    recorded = {**FILE, "win-back": {"version": 1, "when": {"segment": {"name": "churned", "left_within": "30d"}}}}
    longer = {"version": 2, "when": {"segment": {"name": "churned", "left_within": "60d"}}}
    moved = redefine(Running(recorded), resolve(recorded, {"win-back": record("win-back", longer)}, recorded), P)
    assert moved.redefine == {"win-back": None} and not moved.incomplete
    plain = _moved(Running(FILE), "steady", {"version": 1, "when": {"segment": {"name": "loyal", "for": "30d"}}}, P)
    assert plain.redefine == {"steady": None} and not plain.incomplete
