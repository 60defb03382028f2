"""Hostile segment definitions are rejected, within bounded memory, time and message length, through
every door: a segments file (replay, worker, backfill), `segments define`, a definitions topic record
(rejected, the previous version keeps running, the partition keeps processing), a config file; and
each poisoned record stays removable (its parse never raises). The limits themselves are pinned at
their boundaries, and a property covers any YAML text under the size limit."""
from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import DAY, order_paid, segments_cli
from tests.hostile_definitions import (EXPANDING, LEAF, POISONS, alias_tree, as_segments_file, in_bounded_child,
                                       nested_not, run_bounded)
from stream.runtime import metrics
from stream.rules.bounded_yaml import DEFINITION, SEGMENTS_FILE, DocumentError, Limits, load
from stream.cli.define import define, read_definition
from stream.definitions.resolution import file_definitions, parse_record
from stream.definitions.live import LiveDefinitions
from stream.rules.catalog import compile_catalog, load_catalog, parse_catalog
from stream.rules.compiler import MAX_CONDITIONS, MAX_NESTING
from stream.rules.problems import DefinitionError
from stream.storage.rocksdb_store import PartitionStore
from stream.worker.partition import PartitionTask

MESSAGE_CHARS = 12_000       # the longest rejection any door may print (20 problems of <= 500 chars)
SECONDS = 10                 # the longest a rejection may take, on a loaded 2-core machine
FILE = file_definitions(load_catalog())


def reason(poison: str, limits: Limits) -> str:
    text, words = POISONS[poison]
    return "larger than" if len(text.encode()) > limits.bytes else words


# ---- each class through each door, in this process (memory and time bounded) -----------------------

@pytest.mark.parametrize("poison", sorted(POISONS))
def test_a_segments_file_is_rejected_boundedly(poison, tmp_path):
    path = tmp_path / "segments.yaml"
    path.write_text(as_segments_file(POISONS[poison][0]))

    def check() -> None:
        with pytest.raises(DefinitionError) as caught:
            load_catalog(path)
        message = str(caught.value)
        assert reason(poison, SEGMENTS_FILE) in message and len(message) <= MESSAGE_CHARS, message[:2000]
    in_bounded_child(check, timeout=SECONDS)


@pytest.mark.parametrize("poison", sorted(POISONS))
def test_segments_define_refuses_it_and_publishes_nothing(poison, tmp_path):
    path = tmp_path / "definition.yaml"
    path.write_text(POISONS[poison][0])

    def check() -> None:
        _, problems = read_definition("poisoned", path)
        assert problems and any(reason(poison, DEFINITION) in p for p in problems), problems
        out, err = io.StringIO(), io.StringIO()
        # No broker listens there: exit 2 shows the definition was refused before anything was sent.
        assert define("poisoned", path, "127.0.0.1:9", {}, "definitions", load_catalog(), out, err) == 2
        assert "nothing published" in err.getvalue() and len(err.getvalue()) <= MESSAGE_CHARS
    in_bounded_child(check, timeout=SECONDS)


class _Topic:
    """The definitions topic as the worker's feed holds it (its Kafka side is the integration test's)."""

    def __init__(self) -> None:
        self.records: dict = {}
        self.topic = "definitions"

    def put(self, name: str, value: bytes | None, offset: int) -> None:
        record = parse_record(name.encode(), value, offset)
        assert record is not None
        self.records[name] = record

    def poll(self) -> bool:
        return False


@pytest.mark.parametrize("poison", sorted(POISONS))
def test_a_topic_record_is_rejected_the_previous_version_runs_and_the_partition_processes(poison, tmp_path):
    in_bounded_child(lambda: _topic_record_rejected(poison, tmp_path), timeout=2 * SECONDS)


def _topic_record_rejected(poison: str, tmp_path: Path) -> None:
    topic = _Topic()
    good = b"version: 2\nwhen: {all: [{paid_orders: {gte: 3}}, {last_paid_at: {within: 90d}}]}\n"
    topic.put("loyal", good, 1)
    live = LiveDefinitions(FILE, topic)
    task = PartitionTask(0, PartitionStore(tmp_path / "p0"), load_catalog())
    live.attach(task)
    rejected_before = metrics.DEFINITIONS_REJECTED.labels("loyal")._value.get()

    start = time.monotonic()
    topic.put("loyal", POISONS[poison][0].encode(), 2)
    topic.put("new-poisoned", POISONS[poison][0].encode(), 3)
    live.refresh([task])
    assert time.monotonic() - start < SECONDS

    answer = live.describe()
    assert answer["segments"]["loyal"]["version"] == 2 and "new-poisoned" not in answer["segments"]
    rejected = {r["segment"]: r for r in answer["rejected"]}
    assert set(rejected) == {"loyal", "new-poisoned"}
    for rejection in rejected.values():
        assert any(reason(poison, DEFINITION) in p for p in rejection["problems"]), rejection
        assert sum(map(len, rejection["problems"])) <= MESSAGE_CHARS
    assert metrics.DEFINITIONS_REJECTED.labels("loyal")._value.get() == rejected_before + 1
    # the partition keeps processing under version 2: three payments make a loyal customer
    for k in range(3):
        task.engine.apply(order_paid("c1", DAY * (k + 1), f"o{k}", 10.0), task.changes)
    assert [(c.segment, c.definition_version) for c in task.changes if c.segment == "loyal"] == [("loyal", 2)]
    # and a tombstone (segments undefine) removes the poisoned record: nothing is rejected any more
    topic.put("loyal", None, 4)
    topic.put("new-poisoned", None, 5)
    live.refresh([task])
    assert live.describe()["rejected"] == []


def test_a_record_keyed_by_no_segment_name_is_rejected_under_a_bounded_label(tmp_path):
    """The key is anyone's text: a megabyte of it names no segment, and becomes no metric label."""
    topic = _Topic()
    key = "K" * (1 << 20)
    topic.put(key, f"version: 1\nwhen: {LEAF}\n".encode(), 1)
    live = LiveDefinitions(FILE, topic)
    task = PartitionTask(0, PartitionStore(tmp_path / "p0"), load_catalog())
    before = metrics.DEFINITIONS_REJECTED.labels("(invalid name)")._value.get()
    live.attach(task)
    (rejection,) = live.describe()["rejected"]
    assert "a name is lower-case letters" in rejection["problems"][0]
    assert sum(map(len, rejection["problems"])) <= MESSAGE_CHARS
    assert metrics.DEFINITIONS_REJECTED.labels("(invalid name)")._value.get() == before + 1
    assert all(len(label) < 100 for metric in metrics.DEFINITIONS_REJECTED.collect()
               for sample in metric.samples for label in sample.labels.values())


@pytest.mark.parametrize("poison", sorted(POISONS))
def test_a_poisoned_record_parses_to_problems_so_it_stays_removable(poison):
    """undefine needs only this: the record read as "defined, with problems", never an exception."""
    def check() -> None:
        record = parse_record(b"poisoned", POISONS[poison][0].encode(), 9)
        assert record is not None and record.name == "poisoned"
        assert record.definition is not None or record.problems
    in_bounded_child(check, timeout=SECONDS)


# ---- the command lines: exit 2, a bounded message, bounded memory and time (subprocesses) ----------

COMMANDS = {
    "replay": lambda f: ["replay", "--input", "/dev/null", "--output", "-", "--segments", f],
    "worker": lambda f: ["worker", "--segments", f, "--bootstrap-servers", "127.0.0.1:9"],
    "backfill": lambda f: ["backfill", "--segments", f, "--bootstrap-servers", "127.0.0.1:9", "--output", "-"],
    "define": lambda f: ["define", "poisoned", "--file", f, "--bootstrap-servers", "127.0.0.1:9"],
}


@pytest.mark.timeout(180)
@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("poison", [*EXPANDING, "nested-10k-not", "oversized"])
def test_the_command_line_exits_2(command, poison, tmp_path):
    text = POISONS[poison][0]
    path = tmp_path / "poisoned.yaml"
    path.write_text(text if command == "define" else as_segments_file(text))
    done = run_bounded([*segments_cli(), *COMMANDS[command](str(path))], timeout=90, cwd=tmp_path)
    stderr = done.stderr.decode(errors="replace")
    assert done.returncode == 2, stderr[-3000:]
    words = reason(poison, DEFINITION if command == "define" else SEGMENTS_FILE)
    assert words in " ".join(stderr.split()) and len(stderr) <= MESSAGE_CHARS, stderr[-3000:]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("poison", ["alias-bomb", "nested-10k-not", "recursive-alias"])
def test_a_config_file_gets_the_same_protection(poison, tmp_path):
    path = tmp_path / "worker.yaml"
    path.write_text(f"group_id: g\nunused: {POISONS[poison][0]}\n")
    done = run_bounded([*segments_cli(), "worker", "--config", str(path)], timeout=90, cwd=tmp_path)
    stderr = done.stderr.decode(errors="replace")
    words = POISONS[poison][1]
    assert done.returncode == 2 and words in stderr and len(stderr) <= MESSAGE_CHARS, stderr[-3000:]


# ---- the limits at their boundaries ----------------------------------------------------------------

def test_document_size_limit_is_exact():
    padding = "x" * (DEFINITION.bytes - len("a: "))
    assert load("a: " + padding, DEFINITION) == {"a": padding}
    with pytest.raises(DocumentError, match="larger than 65,536 bytes"):
        load("a: " + padding + "x", DEFINITION)
    with pytest.raises(DocumentError, match="larger than"):      # counted in UTF-8 bytes, not characters
        load("a: " + "é" * (DEFINITION.bytes // 2), DEFINITION)


def test_nesting_limit_is_exact_also_through_an_alias():
    assert load("[" * 64 + "]" * 64, DEFINITION) is not None
    with pytest.raises(DocumentError, match="nested more than 64 levels deep"):
        load("[" * 65 + "]" * 65, DEFINITION)
    # an anchor of 61 levels (60 lists and a scalar), used at depth 4 (64 levels) and at depth 5
    inner = "[" * 59 + "[x]" + "]" * 59
    assert load(f"[&a {inner}, [[*a]]]", DEFINITION)
    with pytest.raises(DocumentError, match="alias \\*a expands to more than 64 levels"):
        load(f"[&a {inner}, [[[*a]]]]", DEFINITION)


def test_node_and_text_limits_count_an_alias_as_a_copy():
    def limits(nodes: int) -> Limits:
        return Limits("a test document", "YAML", 10_000, 64, nodes, 100)
    document = "[&a [1, 2, 3], *a, *a]"                  # 1 + 4 + 4 + 4 = 13 nodes expanded
    assert load(document, limits(13)) == [[1, 2, 3]] * 3
    with pytest.raises(DocumentError, match="alias \\*a expands to more than 12 nodes"):
        load(document, limits(12))
    text = "y" * 40
    assert load(f"[&t {text}, *t]", limits(13)) == [text, text]          # 80 characters of text
    with pytest.raises(DocumentError, match="more than 100 characters"):
        load(f"[&t {text}, *t, *t]", limits(13))


def test_condition_limits_are_exact():
    def chain(n: int) -> dict:        # n conditions nested: n - 1 `not`s around one leaf
        node: dict = {"paid_orders": {"gte": 1}}
        for _ in range(n - 1):
            node = {"not": node}
        return {"when": node}
    compile_catalog({"deep": chain(MAX_NESTING)}, "test")
    with pytest.raises(DefinitionError, match=f"nested more than {MAX_NESTING} levels deep"):
        compile_catalog({"deep": chain(MAX_NESTING + 1)}, "test")
    # one `any` and its leaves: 1 + leaves conditions, one operator per leaf
    leaves = (MAX_CONDITIONS - 1) // 2
    wide = {"when": {"any": [{"paid_orders": {"gte": n}} for n in range(leaves)]}}
    compile_catalog({"wide": wide}, "test")
    wide["when"]["any"].append({"paid_orders": {"gte": 0}})
    with pytest.raises(DefinitionError, match=f"more than {MAX_CONDITIONS} conditions") as caught:
        compile_catalog({"wide": wide}, "test")
    assert len(caught.value.problems) == 1          # stopped at the limit: one problem, not one per leaf


def test_a_message_lists_twenty_problems_and_counts_the_rest():
    many = {f"s{n}": {"when": {"paid_ordrs": {"gte": 1}}} for n in range(50)}
    with pytest.raises(DefinitionError) as caught:
        compile_catalog(many, "test")
    assert len(caught.value.problems) == 50
    assert str(caught.value).count("did you mean") == 20 and "... and 30 more problems" in str(caught.value)


def test_aliases_within_the_limits_still_work():
    text = as_segments_file("{version: 1, when: {all: [&paid {paid_orders: {gte: 2}}, {not: *paid}]}}")
    assert parse_catalog(text).by_name["poisoned"].definition["when"]["all"][1] == {"not": {"paid_orders": {"gte": 2}}}
    assert load_catalog().segments        # the built-in catalog is well within every limit


# ---- any text under the size limit: loaded, or refused with a short ValueError, quickly ------------

YAML_PIECES = ["{", "}", "[", "]", ", ", ": ", "- ", "\n", "  ", "&a ", "&b ", "*a", "*b", "!!str ", "!!map ",
               "? ", "'", '"', "|", ">", "#", "<<: ", "~", ".nan", "1e3", "2025-02-30", "9" * 40, "when",
               "version: 1", "all", "any", "not", "paid_orders", "gte", "city", "in", "attr", "repeated",
               "event", "\t", "\x00", "é", "%YAML 1.1\n", "---\n", "...\n"]


def _aliased() -> st.SearchStrategy[str]:
    """Anchors defined level by level, each used many times by the next: small texts that stand for
    large trees, and deep ones, the way an attacker writes them."""
    @st.composite
    def build(draw) -> str:
        levels, fan = draw(st.integers(1, 12)), draw(st.integers(1, 12))
        shape = draw(st.sampled_from(["any", "all", "not", "list", "in"]))
        node = f"&n0 {draw(st.sampled_from([LEAF, 'lol', '[x]', '{city: {eq: A}}']))}"
        for i in range(1, levels + 1):
            copies = ", ".join([f"*n{i - 1}"] * (fan - 1))
            body = f"[{node}{', ' + copies if copies else ''}]"
            node = {"any": f"&n{i} {{any: {body}}}", "all": f"&n{i} {{all: {body}}}", "list": f"&n{i} {body}",
                    "not": f"&n{i} {{not: {node}}}", "in": f"&n{i} {{city: {{in: {body}}}}}"}[shape]
        return f"{{version: 1, when: {node}}}"
    return build()


def test_any_text_under_the_limit_loads_or_is_refused_with_a_short_value_error():
    in_bounded_child(_any_text_loads_or_is_refused, timeout=600)     # bounded: the texts are hostile


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.lists(st.sampled_from(YAML_PIECES) | st.text(max_size=3), max_size=60).map("".join),
                 _aliased()))
def _any_text_loads_or_is_refused(text: str) -> None:
    assert len(text.encode("utf-8", "surrogatepass")) <= DEFINITION.bytes
    start = time.monotonic()
    record = parse_record(b"s", text.encode("utf-8", "surrogatepass"), 1)   # the topic's door ...
    try:
        catalog = parse_catalog(as_segments_file(text, "s"))                # ... and a file's
    except ValueError as exc:
        assert len(str(exc)) <= MESSAGE_CHARS
    else:
        assert catalog.by_name["s"].definition is not None
    if not record.problems and record.definition is not None:
        try:
            compile_catalog({"s": record.definition}, "topic")
        except DefinitionError as exc:
            assert len(str(exc)) <= MESSAGE_CHARS
    assert all(len(p) <= MESSAGE_CHARS for p in record.problems)
    assert time.monotonic() - start < SECONDS


def test_the_property_test_reaches_the_limits():
    """The generator above does make trees over the limits (so the property tests them)."""
    assert "expands to more than" in parse_record(b"s", alias_tree(6, 12).encode(), 1).problems[0]
    with pytest.raises(DefinitionError, match="nested more than"):
        parse_catalog(as_segments_file(nested_not(70)))
