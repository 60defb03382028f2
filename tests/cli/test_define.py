"""`segments define` / `undefine` check references against the definitions they will run beside (the
segments file and the definitions topic), with the workers' words, before publishing anything. The
topic is a stand-in here (stream.kafka.publishing reads it once)."""
from __future__ import annotations

import io
from pathlib import Path

import pytest

from stream.cli.define import define, undefine
from stream.kafka import publishing
from stream.rules.catalog import load_catalog
from tests.definition_records import record


class Feed:
    def __init__(self, **definitions: dict | None):
        self.records = {name: record(name, d) for name, d in definitions.items()}
        self.highest = {name: d["version"] for name, d in definitions.items() if d is not None}


@pytest.fixture
def topic(monkeypatch):
    """The topic's records (set `feed`), and what was published."""
    state: dict = {"feed": Feed(), "published": []}
    monkeypatch.setattr(publishing, "_read", lambda topic: state["feed"])
    monkeypatch.setattr(publishing, "publish", lambda b, k, t, name, value: state["published"].append((name, value)))
    return state


def _define(name: str, text: str, tmp_path: Path) -> tuple[int, str]:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    err = io.StringIO()
    code = define(name, path, "127.0.0.1:9", {}, "defs", load_catalog(), io.StringIO(), err)
    return code, err.getvalue()


def test_a_reference_to_an_unknown_segment_is_refused_with_a_did_you_mean(topic, tmp_path):
    code, err = _define("win-back", "when: {segment: {name: repeat-buyers, left_within: 30d}}\n", tmp_path)
    assert code == 2 and topic["published"] == []
    assert "segment 'win-back': when: references unknown segment 'repeat-buyers' (did you mean 'repeat-buyer'?)" in err


def test_a_reference_to_a_segment_of_the_file_or_the_topic_is_published(topic, tmp_path):
    topic["feed"] = Feed(churned={"version": 1, "when": {"paid_orders": {"eq": 0}}})
    assert _define("win-back", "when: {segment: {name: churned, left_within: 30d}}\n", tmp_path)[0] == 0
    assert _define("steady", "when: {segment: {name: repeat-buyer, for: 30d}}\n", tmp_path)[0] == 0
    assert [name for name, _ in topic["published"]] == ["win-back", "steady"]


def test_a_cycle_the_new_definition_closes_is_refused_as_the_catalog_names_it(topic, tmp_path):
    topic["feed"] = Feed(a={"version": 1, "when": {"segment": {"name": "b"}}},
                         b={"version": 1, "when": {"segment": {"name": "c"}}})
    code, err = _define("c", "when: {segment: {name: a}}\n", tmp_path)
    assert code == 2 and "segments a -> b -> c -> a reference each other in a cycle" in err
    code, err = _define("d", "when: {segment: {name: d}}\n", tmp_path)
    assert code == 2 and "segment 'd': when: references itself" in err
    assert topic["published"] == []


def test_removing_a_segment_others_reference_is_refused(topic):
    topic["feed"] = Feed(lapsed={"version": 1, "when": {"paid_orders": {"eq": 0}}},
                         **{"win-back": {"version": 1, "when": {"segment": {"name": "lapsed", "left_within": "30d"}}}})
    err = io.StringIO()
    assert undefine("lapsed", "127.0.0.1:9", {}, "defs", load_catalog(), io.StringIO(), err) == 2
    assert ("segment 'lapsed': cannot be removed while segment 'win-back' references it; change or remove "
            "'win-back' first") in err.getvalue() and topic["published"] == []
    topic["feed"] = Feed(lapsed={"version": 1, "when": {"paid_orders": {"eq": 0}}}, **{"win-back": None})
    assert undefine("lapsed", "127.0.0.1:9", {}, "defs", load_catalog(), io.StringIO(), io.StringIO()) == 0
    assert topic["published"] == [("lapsed", None)]
