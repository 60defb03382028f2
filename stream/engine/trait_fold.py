"""Folding events into the computed traits' histories (stream.model.state.TraitState, read by
stream.rules.traits). Only the folds of the event types some trait reads are wrapped: a catalog
without traits runs the folds of stream.engine.fold as they are, at no cost."""
from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from typing import Any

import cython

from stream.engine.fold import Fold
from stream.model import events as ev
from stream.model.state import (TRAIT_EVENTS_KEEP, CustomerState, TraitState, TraitValue,
                                fold_oldest_trait_events, note_truncated)
from stream.rules.traits import EVENT_CLASSES, Trait

# One trait's recording of one event: (state, event, t, now, order_id).
Recorder = Callable[[CustomerState, Any, int, int, str], None]


def with_traits(folds: dict[type[ev.Event], Fold], traits: dict[str, Trait]) -> dict[type[ev.Event], Fold]:
    """`folds`, those of the event types `traits` read recording into them too."""
    if not traits:
        return folds
    folds = dict(folds)
    by_event: dict[str, list[Trait]] = {}
    for trait in traits.values():
        by_event.setdefault(trait.event, []).append(trait)
    for event, group in by_event.items():
        cls = EVENT_CLASSES[event]
        recorders = tuple(recorder(trait) for trait in group)
        folds[cls] = (_paying(folds[cls], tuple(group), recorders) if event == "order_paid"
                      else _recording(folds[cls], recorders))
    if "order_paid" in by_event:
        folds[ev.OrderCancelled] = _cancelling(folds[ev.OrderCancelled],
                                               tuple(t.name for t in by_event["order_paid"]))
    return folds


def _recording(base: Fold, recorders: tuple[Recorder, ...]) -> Fold:
    def fold(st: CustomerState, e: ev.Event, t: int, now: int) -> None:
        base(st, e, t, now)
        for record in recorders:
            record(st, e, t, now, "")
    return fold


def _paying(base: Fold, traits: tuple[Trait, ...], recorders: tuple[Recorder, ...]) -> Fold:
    """As paid_orders counts: the first payment of an order, none after its cancellation. A trait
    without a history of its own yet starts from the payments kept (Trait.history), taken before
    this one joins them."""
    def fold(st: CustomerState, e: Any, t: int, now: int) -> None:
        order_id = e.order_id
        counted = order_id not in st.paid and order_id not in st.cancelled
        if counted:
            for trait in traits:
                _begin(st, trait)
        base(st, e, t, now)
        if counted:
            for record in recorders:
                record(st, e, t, now, order_id)
    return fold


def _cancelling(base: Fold, names: tuple[str, ...]) -> Fold:
    """A cancellation takes the order's payment out of the order_paid traits (also after payment)."""
    def fold(st: CustomerState, e: Any, t: int, now: int) -> None:
        base(st, e, t, now)
        order_id = e.order_id
        for name in names:
            ts = st.traits.get(name)
            # (a history recorded under another definition is replaced before it is read again).
            # An emptied one stays: without it the trait would be read from the kept payments
            # again (Trait.history), to the same value but at a cost on every evaluation.
            if ts is not None and any(entry[2] == order_id for entry in ts.events):
                ts.events = [entry for entry in ts.events if entry[2] != order_id]
    return fold


def _time(entry: tuple[int, TraitValue, str]) -> int:
    return entry[0]


def recorder(trait: Trait) -> Recorder:
    """How one event's entries go into the trait's history, which stays in time order, free of
    events that left the window for good, and within TRAIT_EVENTS_KEEP. A closure over the
    trait's parts: it runs for every event of the type."""
    name, key, fold, entries = trait.name, trait.key, trait.fold, trait.entries
    windowed: cython.bint = trait.within is not None
    horizon: cython.longlong = trait.within or 0
    # An order_paid trait's emptied history stays (see _cancelling).
    droppable: cython.bint = trait.event != "order_paid"

    @cython.locals(at=cython.longlong, clock=cython.longlong, gone=cython.Py_ssize_t, n=cython.Py_ssize_t)
    def record(st: CustomerState, e: Any, t: int, now: int, order_id: str) -> None:
        at, clock = t, now
        if windowed and clock - at >= horizon:
            return                          # a late event already outside the window
        values = entries(e)
        if not values:
            return
        ts = st.traits.get(name)
        if ts is None or ts.key != key:
            ts = st.traits[name] = TraitState(key, fold)
        events = ts.events
        if not events or cython.cast(cython.longlong, events[-1][0]) <= at:
            if len(values) == 1:
                events.append((t, values[0], order_id))
            else:
                events.extend([(t, v, order_id) for v in values])
        else:                               # a late event: after the entries of its time and before
            i = bisect_right(events, t, key=_time)
            events[i:i] = [(t, v, order_id) for v in values]
        n = len(events)
        if windowed and clock - cython.cast(cython.longlong, events[0][0]) >= horizon:
            gone = 0
            while gone < n and clock - cython.cast(cython.longlong, events[gone][0]) >= horizon:
                gone += 1
            del events[:gone]
            n -= gone
            if droppable and n == 0 and ts.folded is None and not ts.tally:
                del st.traits[name]
        if n > TRAIT_EVENTS_KEEP:
            excess = n - TRAIT_EVENTS_KEEP
            fold_oldest_trait_events(ts, excess)
            note_truncated("trait_events", f"{excess} oldest trait events left the one-by-one history at the "
                                           f"bound of {TRAIT_EVENTS_KEEP} ({'folded' if ts.fold else 'dropped'})")
    return record


def _begin(st: CustomerState, trait: Trait) -> None:
    """Without a history of its own under this definition, the trait's begins from what the state
    kept for it (Trait.history), if anything."""
    ts = st.traits.get(trait.name)
    if ts is None or ts.key != trait.key:
        kept = trait.history(st)
        if kept is not None:
            st.traits[trait.name] = kept
        elif ts is not None:
            del st.traits[trait.name]          # recorded under another definition: no longer read
