"""The compiled condition tree (stream.rules.nodes.Condition): what the explanation walks and
the engine calls, one typed node per condition and operator."""
from __future__ import annotations

from stream.model.state import CustomerState
from stream.rules.attributes import ATTRS
from stream.rules.catalog import parse_catalog

YAML = """
segments:
  s:
    when: {all: [{paid_orders: {gte: 2, lt: 9}}, {not: {last_viewed_at: {within: 7d}}}]}
"""


def test_a_segment_compiles_to_a_tree_of_typed_nodes():
    segment = parse_catalog(YAML).by_name["s"]
    when = segment.when
    assert (when.combine, when.label, when.reads) == ("all", "all", frozenset({"paid", "views"}))
    orders, negation = when.parts
    assert (orders.combine, orders.label, orders.reads) == ("all", "paid_orders", frozenset({"paid"}))
    assert [(p.combine, p.label, p.attr, p.parts) for p in orders.parts] == [
        (None, "paid_orders >= 2", ATTRS["paid_orders"], ()), (None, "paid_orders < 9", ATTRS["paid_orders"], ())]
    assert (negation.combine, negation.label, [p.label for p in negation.parts]) == (
        "not", "not", ["last_viewed_at within 7d"])


def test_the_engine_calls_the_compiled_test_of_the_root():
    segment = parse_catalog(YAML).by_name["s"]
    assert segment.test is segment.when.test and segment.reads == segment.when.reads
    st = CustomerState(first_seen=0, last_seen=0, paid_count=3)
    assert segment.test(st, 0) == (True, None)
