"""Computed traits: the `traits:` section of a definitions file (its grammar checked by
stream.rules.trait_grammar). Each trait aggregates one event type's field (count, sum, avg, min,
max, most_frequent, distinct_count), optionally filtered on the event's fields (`where:`), over a
sliding window (`within: D`, `between: [D1, D2]`) or the customer's lifetime; conditions read it
as `trait.<name>` (stream.rules.compiler). What runs per event and per evaluation is here
(compiled: setup.py NATIVE).

The fold (stream.engine.trait_fold) keeps each trait's events in the state (model.state.TraitState);
`Trait.value` aggregates those inside the window at `now`, and says when the value next changes
with no event (an event entering or leaving the window), which is the condition's next flip.
Grammar and bounds: docs/traits.md, docs/state-bounds.md.
"""
from __future__ import annotations

import hashlib
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field as dataclass_field
from typing import Any, Literal, NamedTuple

import cython
import msgspec

from stream.model import events as ev
from stream.model.state import FOLD_NONE, FOLD_NUMBERS, FOLD_VALUES, CustomerState, TraitState, TraitValue
from stream.rules.attributes import Kind

AGGREGATIONS = ("count", "sum", "avg", "min", "max", "most_frequent", "distinct_count")

# The event contract's fields a trait can read (stream.model.events), with their kinds; `items.*`
# reads each item of an order (each counts).
FieldKind = Literal["number", "string"]
FIELDS: dict[str, dict[str, FieldKind]] = {
    "order_placed": {"order_id": "string", "total": "number", "currency": "string", "city": "string",
                     "country": "string", "items.product_id": "string", "items.quantity": "number",
                     "items.price": "number", "items.category": "string"},
    "order_paid": {"order_id": "string", "amount": "number"},
    "order_cancelled": {"order_id": "string"},
    "product_viewed": {"product_id": "string", "category": "string", "session_id": "string"},
    "cart_updated": {"cart_id": "string", "value": "number"},
    "cart_abandoned": {"cart_id": "string", "value": "number"},
}
EVENT_CLASSES: dict[str, type[ev.Event]] = {name: ev.EVENT_TYPES[name] for name in FIELDS}
# The state field group (stream.rules.attributes.CHANGED_BY) each event type changes: a segment
# reading a trait is re-evaluated by the events that feed it.
GROUPS = {"order_placed": "placed", "order_paid": "paid", "order_cancelled": "paid", "product_viewed": "views",
          "cart_updated": "cart", "cart_abandoned": "cart"}
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq, "ne": operator.ne, "gt": operator.gt, "gte": operator.ge, "lt": operator.lt,
    "lte": operator.le}
_canonical = msgspec.json.Encoder(order="sorted").encode

# What one event (and, for items.*, one of its items) reads: a field's value, or a filter's verdict.
Read = Callable[[Any, Any], Any]
Filter = Callable[[Any, Any], bool]


def _reader(field: str) -> Read:
    if field.startswith("items."):
        name = field[len("items."):]
        return lambda event, item: getattr(item, name)
    return lambda event, item: getattr(event, field)


Valuer = Callable[[CustomerState, int], tuple[TraitValue, int | None]]


@dataclass(frozen=True)
class Trait:
    name: str
    aggregation: str
    event: str                      # the event type's tag
    field: str | None               # None: a count of events
    kind: Kind                      # of its value, for the operators conditions may use
    within: int | None              # events with now - t < within count; None: lifetime
    after: int                      # ... and now - t >= after (between's nearer end; else 0)
    definition: dict[str, Any]
    per_item: bool                  # order_placed.items.*: each item is an entry
    entries: Callable[[Any], list[TraitValue]]      # the values one event adds (_entries_of)
    aggregate: Aggregate
    empty: TraitValue               # its value over no entries
    key: int                        # what it aggregates, whatever its version or description
    # (state, now) -> (its value at now, when time alone next changes it): _valuer
    value: Valuer = dataclass_field(init=False, repr=False, compare=False)

    @property
    def group(self) -> str:
        return GROUPS[self.event]

    @property
    def fold(self) -> str:
        """How its state folds events its bound pushes out (model.state.TraitState)."""
        if self.within is not None:
            return FOLD_NONE
        return FOLD_VALUES if self.aggregation in ("most_frequent", "distinct_count") else FOLD_NUMBERS

    @property
    def declines(self) -> bool:
        """Whether time alone can only lower its value: events only leave its window (none enter
        later, as with between), and each adds a non-negative amount (the contract's amounts)."""
        return self.within is not None and self.after == 0 and self.aggregation in ("count", "sum", "distinct_count")

    def history(self, st: CustomerState) -> TraitState | None:
        """What the state kept for this trait: its own history, once recorded under this definition;
        before that, for order_paid, the payments the state keeps one by one (and their folded
        count and sum), so a trait defined while running starts from them (docs/traits.md)."""
        ts = st.traits.get(self.name)
        if ts is not None and ts.key == self.key:
            return ts
        if self.event != "order_paid" or not (st.paid or st.folded):
            return None
        seeded = TraitState(self.key, self.fold)
        for order_id, (t, amount) in sorted(st.paid.items(), key=lambda item: item[1][0]):
            seeded.events.extend((t, v, order_id) for v in self.entries(_Payment(order_id, amount)))
        if st.folded is not None and self.within is None and self.where is None \
                and self.aggregation in ("count", "sum", "avg"):
            seeded.folded = (st.folded[0], st.folded[1], None, None)
        return seeded

    @property
    def where(self) -> object:
        return self.definition.get("where")

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", _valuer(self))


def _valuer(trait: Trait) -> Valuer:
    """Trait.value: the trait at `now`, and the next instant after it at which time alone changes
    it (an entry leaving the window, or with `between` one entering it). The entries are in time
    order, so the window is a slice [lo, hi). A closure over the trait's parts: it runs for every
    evaluation of every segment reading the trait."""
    name, key, aggregate, empty, history = trait.name, trait.key, trait.aggregate, trait.empty, trait.history
    windowed: cython.bint = trait.within is not None
    span: cython.longlong = trait.within or 0
    near: cython.longlong = trait.after

    @cython.locals(n=cython.Py_ssize_t, lo=cython.Py_ssize_t, hi=cython.Py_ssize_t, start=cython.longlong,
                   end=cython.longlong, leaves=cython.longlong)
    def value(st: CustomerState, now: int) -> tuple[TraitValue, int | None]:
        ts = st.traits.get(name)
        if ts is None or ts.key != key:
            ts = history(st)
            if ts is None:
                return empty, None
        events = ts.events
        n = len(events)
        if not windowed:
            return aggregate(events, 0, n, ts), None
        lo, hi = 0, n
        start = now - span                           # in the window: t > start
        while lo < n and cython.cast(cython.longlong, events[lo][0]) <= start:
            lo += 1
        nxt: int | None = None
        if near:
            end = now - near                         # ... and t <= end
            while hi > lo and cython.cast(cython.longlong, events[hi - 1][0]) > end:
                hi -= 1
            if hi < n:
                nxt = events[hi][0] + near           # the next to enter
        if lo < hi:
            leaves = cython.cast(cython.longlong, events[lo][0]) + span     # the first to leave
            if nxt is None or leaves < nxt:
                nxt = leaves
        return aggregate(events, lo, hi, ts), nxt
    return value


class _Payment(NamedTuple):
    """A kept payment (CustomerState.paid) as the fields an order_paid trait reads."""
    order_id: str
    amount: float


def _empty(aggregation: str) -> TraitValue:
    return 0 if aggregation in ("count", "distinct_count") else 0.0 if aggregation == "sum" else None


# An aggregation over the entries [lo, hi) of a history and what it folded of older ones (a
# lifetime trait's): one function each, chosen at load, as they run on every evaluation.
Entries = list[tuple[int, TraitValue, str]]
Aggregate = Callable[[Entries, int, int, TraitState], TraitValue]
_NO_FOLD = (0, 0.0, None, None)


def _count(events: Entries, lo: int, hi: int, ts: TraitState) -> int:
    return hi - lo + (ts.folded[0] if ts.folded is not None else 0)


def _sum(events: Entries, lo: int, hi: int, ts: TraitState) -> float:
    numbers: list[Any] = [e[1] for e in events[lo:hi]]            # a numeric field's (checked at load)
    if ts.folded is not None:
        numbers.append(ts.folded[1])
    return math.fsum(numbers)


def _avg(events: Entries, lo: int, hi: int, ts: TraitState) -> float | None:
    n = _count(events, lo, hi, ts)
    return _sum(events, lo, hi, ts) / n if n else None


def _extreme(pick: Callable[..., Any], folded_at: int) -> Aggregate:
    def extreme(events: Entries, lo: int, hi: int, ts: TraitState) -> TraitValue:
        kept = [e[1] for e in events[lo:hi]]
        folded = (ts.folded or _NO_FOLD)[folded_at]
        if folded is not None:
            kept.append(folded)
        return pick(kept) if kept else None
    return extreme


def _tally(events: Entries, lo: int, hi: int, ts: TraitState) -> dict[Any, int]:
    tally: dict[Any, int] = dict(ts.tally)
    for e in events[lo:hi]:
        tally[e[1]] = tally.get(e[1], 0) + 1
    return tally


def _distinct_count(events: Entries, lo: int, hi: int, ts: TraitState) -> TraitValue:
    if not ts.tally:                # (a windowed trait's: only a lifetime one folds a tally)
        return len({e[1] for e in events[lo:hi]})
    return len(_tally(events, lo, hi, ts))


def _most_frequent(events: Entries, lo: int, hi: int, ts: TraitState) -> TraitValue:
    tally = _tally(events, lo, hi, ts)
    if not tally:
        return None
    top: TraitValue = min(tally.items(), key=lambda item: (-item[1], item[0]))[0]   # ties: the smallest value
    return top


_AGGREGATES: dict[str, Aggregate] = {
    "count": _count, "sum": _sum, "avg": _avg, "min": _extreme(min, 2), "max": _extreme(max, 3),
    "most_frequent": _most_frequent, "distinct_count": _distinct_count}


def _always(event: Any, item: Any) -> bool:
    return True


def _entries_of(aggregation: str, field: str | None, per_item: bool, accepts: Filter | None
                ) -> Callable[[Any], list[TraitValue]]:
    """What one event adds to a trait: one value per item that passes `where` (items.*), else at
    most one. A missing value (an item without a category) is no entry; a count keeps no values.
    The plain cases (no items, no filter) get their own function: it runs for every event of the
    type."""
    counts = aggregation == "count"
    if field is None:
        one: list[TraitValue] = [None]
        if accepts is None:
            return lambda event: one             # (never changed by its callers)
        return lambda event: one if accepts(event, None) else []
    if not per_item and accepts is None:
        get = operator.attrgetter(field)

        def plain(event: Any) -> list[TraitValue]:
            v = get(event)
            return [] if v is None else [None] if counts else [v]
        return plain
    read = _reader(field)
    passes = accepts or _always

    def entries(event: Any) -> list[TraitValue]:
        rows = event.items if per_item else (None,)
        values = [read(event, item) for item in rows if passes(event, item)]
        return [None if counts else v for v in values if v is not None]
    return entries


# ------------------------------------------------------------------------------------------------
# What `where:` compiles to (stream.rules.trait_grammar checks it): run for every event of the type


def field_filter(field: str, op: str, operand: Any) -> Filter:
    """One operator of `where:` on one field, its operand checked at load."""
    read = _reader(field)
    if op == "exists":
        return lambda event, item: (read(event, item) is not None) is operand
    if op == "in":
        members = frozenset(operand)
        return lambda event, item: read(event, item) in members
    compare = _COMPARE[op]

    def test(event: Any, item: Any) -> bool:
        v = read(event, item)
        return v is not None and compare(v, operand)
    return test


def all_filters(tests: list[Filter]) -> Filter:
    if len(tests) == 1:
        return tests[0]
    return lambda event, item: all(test(event, item) for test in tests)


def new_trait(name: str, aggregation: str, event: str, field: str | None, within: int | None, after: int,
          definition: dict[str, Any], accepts: Filter | None) -> Trait:
    """A trait of a checked definition (stream.rules.trait_grammar)."""
    kind: Kind = FIELDS[event][field] if aggregation == "most_frequent" and field is not None else "number"
    per_item = field is not None and field.startswith("items.")
    return Trait(name, aggregation, event, field, kind, within, after, definition, per_item,
                 _entries_of(aggregation, field, per_item, accepts), _AGGREGATES[aggregation],
                 _empty(aggregation), definition_key(definition))


def definition_key(definition: dict[str, Any]) -> int:
    """What a trait aggregates, as a number stable across processes and builds: its definition
    without version and description (which change nothing it records)."""
    what = {k: v for k, v in definition.items() if k not in ("version", "description")}
    return int.from_bytes(hashlib.blake2b(_canonical(what), digest_size=8).digest(), "big") >> 1


# ------------------------------------------------------------------------------------------------
# Conditions on a trait: `trait.<name>: {op: literal, ...}`

TRAIT_OPERATORS: dict[str, set[str]] = {"number": {"eq", "ne", "gt", "gte", "lt", "lte", "in", "exists"},
                                        "string": {"eq", "ne", "in", "exists"}}


TraitTest = Callable[[CustomerState, int], tuple[bool, int | None]]


def condition(trait: Trait, holds: Callable[[TraitValue], bool]) -> TraitTest:
    """The compiled test of `exists` or `in`: whether `holds` of the value at now, flipping no
    later than the value's next change (the engine re-evaluates then, and moves the customer if
    the verdict changed)."""
    value = trait.value

    def test(st: CustomerState, now: int) -> tuple[bool, int | None]:
        v, nxt = value(st, now)
        return holds(v), nxt
    return test


_COMPARISONS = ("eq", "ne", "gt", "gte", "lt", "lte")


def comparison(trait: Trait, op: str, literal: int | float | str) -> TraitTest:
    """The compiled test of a comparison with a literal (of the trait's kind, checked at load); a
    missing value satisfies none. A value that time can only lower settles some verdicts for good
    (a false `gte`, a true `lt`): those wait for no timer."""
    value = trait.value
    code: cython.Py_ssize_t = _COMPARISONS.index(op)
    settles: cython.bint = trait.declines and code >= 2
    settled: cython.bint = code >= 4              # lt, lte: true for good; gt, gte: false for good

    @cython.locals(verdict=cython.bint)
    def test(st: CustomerState, now: int) -> tuple[bool, int | None]:
        v, nxt = value(st, now)
        if v is None:
            verdict = False
        elif code == 0:
            verdict = v == literal
        elif code == 1:
            verdict = v != literal
        elif code == 2:
            verdict = v > literal           # type: ignore[operator]  # (of one kind: checked at load)
        elif code == 3:
            verdict = v >= literal          # type: ignore[operator]
        elif code == 4:
            verdict = v < literal           # type: ignore[operator]
        else:
            verdict = v <= literal          # type: ignore[operator]
        if settles and verdict == settled:
            return verdict, None
        return verdict, nxt
    return test
