"""Passes over the committed stores (stream.storage.committed) for the console: a page of a
segment's members, and counts of who would hold a definition or is in each segment.

Membership has no index: each pass reads the stores in key order. Their memory is bounded, their
time is not the same:
- members sorted by customer id: the scan stops once the page is full (the first pages cost little,
  a late page the customers before it);
- members sorted by a figure: the whole segment is read once, keeping only a heap of the best
  (page + 1) x PAGE_ROWS rows, at most MAX_PAGES pages deep (the CSV export has the rest);
- counts: decoding every customer, stopped after `seconds`, and then said to be cut short.
At a million customers a full pass takes seconds (about 2 s per million members read for a
sorted page, more for a count that decodes every customer).
"""
from __future__ import annotations

import heapq
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from stream.inspect.members import FIELDS, member_rows
from stream.model.state import CustomerState, load_state
from stream.rules.nodes import Segment
from stream.storage.committed import CommittedStores

PAGE_ROWS = 50
MAX_PAGES = 200
MAX_QUERY_CHARS = 200
SORTABLE = FIELDS[:6]          # customer_id, member_since and the figures: the text fields are not ordered
_CHECK_EVERY = 256             # customers between looks at the clock


@dataclass
class Page:
    rows: list[tuple[Any, ...]]
    more: bool                          # a next page exists
    matched: int | None = None          # members matching the search, when the pass read them all


class _Reversed:
    """A value that sorts the other way round."""
    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

    def __lt__(self, other: _Reversed) -> bool:
        return bool(self.value > other.value)

    def __eq__(self, other: object) -> bool:       # a tie goes on to the customer id
        return isinstance(other, _Reversed) and bool(self.value == other.value)

    __hash__ = None        # type: ignore[assignment]   # compared, never hashed


def member_page(stores: CommittedStores, segment: str, query: str, sort: str, descending: bool, page: int) -> Page:
    """Page `page` (from 0, below MAX_PAGES) of the members whose id contains `query`, by `sort`."""
    rows: Iterator[tuple[Any, ...]] = member_rows(stores.items(), segment)
    if query:
        rows = (row for row in rows if query in row[0])
    start = page * PAGE_ROWS
    if sort == "customer_id" and not descending:
        taken = list(islice(rows, start, start + PAGE_ROWS + 1))     # ids come in order: stop early
        return Page(taken[:PAGE_ROWS], len(taken) > PAGE_ROWS)
    column = SORTABLE.index(sort)
    matched = 0

    def key(row: tuple[Any, ...]) -> tuple[bool, Any, str]:
        value = row[column]
        ordered = 0 if value is None else _Reversed(value) if descending else value
        return value is None, ordered, row[0]        # missing figures last either way; ties by customer id

    def counted() -> Iterator[tuple[Any, ...]]:
        nonlocal matched
        for row in rows:
            matched += 1
            yield row

    best = heapq.nsmallest(start + PAGE_ROWS + 1, counted(), key=key)
    return Page(best[start:start + PAGE_ROWS], len(best) > start + PAGE_ROWS, matched)


@dataclass
class Tally:
    """What a counting pass read, and whether it read everything."""
    read: int = 0
    cut_short: bool = False
    about: int = 0                      # RocksDB's estimate of the customers stored (all partitions)
    seconds: float = 0.0
    counts: Counter[str] = field(default_factory=Counter)


def _states(stores: CommittedStores, seconds: float, tally: Tally) -> Iterator[tuple[int, CustomerState]]:
    """(the partition's stream time, state) of every stored customer, until `seconds` have passed."""
    started = time.perf_counter()
    deadline = started + seconds
    tally.about = sum(partition.approximate_customers() for partition in stores.partitions)
    try:
        for partition in stores.partitions:
            now = partition.stream_time or 0
            for key, data in partition.items():
                tally.read += 1
                if not tally.read % _CHECK_EVERY and time.perf_counter() > deadline:
                    tally.cut_short = True
                    return
                yield now, load_state(data, key.decode())
    finally:
        tally.seconds = time.perf_counter() - started


def would_hold(stores: CommittedStores, segment: Segment, seconds: float) -> Tally:
    """How many stored customers `segment`'s condition holds for now (counts["holding"])."""
    tally = Tally()
    for now, state in _states(stores, seconds, tally):
        if segment.test(state, now)[0]:
            tally.counts["holding"] += 1
    return tally


def segment_sizes(stores: CommittedStores, seconds: float) -> Tally:
    """Members per segment, as the stores say (counts[segment])."""
    tally = Tally()
    for _, state in _states(stores, seconds, tally):
        tally.counts.update(state.member.keys())
    return tally
