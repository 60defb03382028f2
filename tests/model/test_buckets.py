"""Percentage buckets: the documented formula, stable values, uniform and independent splits, and
clear errors for bad `bucket:` conditions."""
from __future__ import annotations

import hashlib
import textwrap
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import DAY, instant, order_paid, run, segments_of
from stream.model.buckets import bucket_of, customer_hash
from stream.rules.catalog import parse_catalog
from stream.rules.problems import DefinitionError

IDS = [f"customer-{i}" for i in range(100_000)]
HASHES = [customer_hash(c) for c in IDS]
# chi-square with 99 degrees of freedom exceeds this with probability about 1e-6 (Wilson-Hilferty)
CHI2_99 = 181.0


def chi2(counts: Counter, cells: int, total: int) -> float:
    expected = total / cells
    return sum((counts.get(k, 0) - expected) ** 2 / expected for k in range(cells))


def test_values_are_pinned_across_versions_and_machines():
    # computed once with this code; a change here breaks every running experiment's split
    assert [customer_hash(c) for c in ("c0", "", "Айгерим")] == [
        0x7A981E556BD5D63F, 0xE4A6A0577479B2B4, 0x3F93777024B2855F]
    assert [bucket_of(customer_hash(c)) for c in ("c0", "c1", "c2")] == [28, 20, 96]
    assert [bucket_of(customer_hash(c), b"exp-7") for c in ("c0", "c1", "c2")] == [53, 59, 24]
    assert [bucket_of(customer_hash(c), b"exp-8") for c in ("c0", "c1", "c2")] == [41, 6, 15]


@given(st.text(max_size=40), st.text(max_size=20).filter(lambda s: len(s.encode()) <= 64))
def test_the_documented_formula(customer_id, salt):
    inner = hashlib.blake2b(customer_id.encode("utf-8"), digest_size=8).digest()
    outer = hashlib.blake2b(inner, digest_size=8, key=salt.encode("utf-8")).digest()
    assert customer_hash(customer_id) == int.from_bytes(inner, "big")
    assert bucket_of(customer_hash(customer_id), salt.encode()) == int.from_bytes(outer, "big") % 100


@settings(max_examples=15, deadline=None, derandomize=True)
@given(st.text(min_size=1, max_size=16))
def test_buckets_are_near_uniform(salt):
    key = salt.encode()[:64]
    counts = Counter(bucket_of(h, key) for h in HASHES)
    assert set(counts) <= set(range(100))
    assert chi2(counts, 100, len(HASHES)) < CHI2_99, counts.most_common(3)


@settings(max_examples=10, deadline=None, derandomize=True)
@given(st.text(min_size=1, max_size=16), st.text(min_size=1, max_size=16))
def test_salts_split_independently(a, b):
    """Deciles under one salt tell nothing of deciles under another: the 10x10 table is uniform.
    It is compared with the uniform table, not with one built from its own margins, so it has 99
    degrees of freedom (not 81) and the bound for a probability of about 1e-6 is CHI2_99."""
    if a == b:
        return
    table = Counter((bucket_of(h, a.encode()[:64]) // 10) * 10 + bucket_of(h, b.encode()[:64]) // 10
                    for h in HASHES)
    assert chi2(table, 100, len(HASHES)) < CHI2_99


def test_the_same_salt_gives_the_same_split_and_no_salt_differs_from_a_salt():
    assert [bucket_of(h, b"x") for h in HASHES[:1000]] == [bucket_of(h, b"x") for h in HASHES[:1000]]
    same = sum(bucket_of(h) == bucket_of(h, b"x") for h in HASHES[:10_000])
    assert same < 200          # independent: about 1 in 100 agree by chance


BUCKETED = """
segments:
  control:
    when: {bucket: {salt: exp-7, lt: 55}}
  treated-payers:
    when:
      all:
        - not: {bucket: {salt: exp-7, lt: 55}}
        - paid_orders: {gte: 1}
"""


def test_a_bucket_segment_is_entered_on_the_first_event_and_kept():
    catalog = parse_catalog(BUCKETED)
    t = instant("2025-01-01T00:00:00Z")
    events = [order_paid(c, t + i * DAY, f"o{c}{i}", 10.0) for i in range(3) for c in ("c0", "c1", "c2")]
    changes = run(events, catalog=catalog)
    # exp-7 buckets: c0 53, c1 59, c2 24
    assert segments_of(changes, "c0") == {"control"}
    assert segments_of(changes, "c1") == {"treated-payers"}
    assert segments_of(changes, "c2") == {"control"}
    assert len(changes) == 3, "each customer entered once, on the first event, and stayed"


def problems_of(when: str) -> list[str]:
    with pytest.raises(DefinitionError) as info:
        parse_catalog(textwrap.dedent(f"segments:\n  s:\n    when: {when}\n"), source="f.yaml")
    return info.value.problems


@pytest.mark.parametrize("when,words", [
    ("{bucket: {salt: exp-1}}", ["when.bucket", "needs a comparison"]),
    ("{bucket: {salt: 7, lt: 10}}", ["when.bucket.salt", "text of 1 to 64 bytes", "7"]),
    ("{bucket: {salt: '', lt: 10}}", ["when.bucket.salt", "''"]),
    ("{bucket: {salt: " + "x" * 65 + ", lt: 10}}", ["when.bucket.salt", "64 bytes"]),
    ("{bucket: {lt: 101}}", ["when.bucket.lt", "0 to 99", "101"]),
    ("{bucket: {gte: -1}}", ["when.bucket.gte", "-1"]),
    ("{bucket: {lt: 10.5}}", ["when.bucket.lt", "10.5"]),
    ("{bucket: {eq: true}}", ["when.bucket.eq", "True"]),
    ("{bucket: {in: [1, x]}}", ["when.bucket.in", "'x'"]),
    ("{bucket: {exists: true}}", ["when.bucket.exists", "does not apply", "bucket"]),
    ("{bucket: {within: 7d}}", ["when.bucket.within", "does not apply"]),
    ("{bucket: 10}", ["when.bucket", "{lt: 10}"]),
    ("{buckets: {lt: 10}}", ["did you mean 'bucket'"]),
])
def test_bad_bucket_conditions_are_named(when, words):
    problems = problems_of(when)
    assert len(problems) == 1, problems
    for word in words:
        assert word in problems[0], (word, problems[0])


def test_every_bucket_problem_at_once():
    problems = problems_of("{all: [{bucket: {salt: 5}}, {bucket: {lt: 200, gt: x}}]}")
    assert len(problems) == 4, problems      # bad salt, no comparison, 200, x
