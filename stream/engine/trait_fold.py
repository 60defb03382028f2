"""Folding events into the computed traits' histories (stream.model.state.TraitState, read by
stream.rules.traits). Only the folds of the event types some trait reads are wrapped: a catalog
without traits runs the folds of stream.engine.fold as they are, at no cost."""
from __future__ import annotations

from bisect import bisect_right
from typing import Any

from stream.engine.fold import Fold
from stream.model import events as ev
from stream.model.state import (TRAIT_EVENTS_KEEP, CustomerState, TraitState, TraitValue,
                                fold_oldest_trait_events, note_truncated)
from stream.rules.traits import EVENT_CLASSES, Trait


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
        folds[cls] = (_paying if event == "order_paid" else _recording)(folds[cls], tuple(group))
    if "order_paid" in by_event:
        folds[ev.OrderCancelled] = _cancelling(folds[ev.OrderCancelled],
                                               tuple(t.name for t in by_event["order_paid"]))
    return folds


def _recording(base: Fold, traits: tuple[Trait, ...]) -> Fold:
    def fold(st: CustomerState, e: ev.Event, t: int, now: int) -> None:
        base(st, e, t, now)
        for trait in traits:
            values = trait.entries(e)
            if values:
                record(st, trait, values, t, now, "")
    return fold


def _paying(base: Fold, traits: tuple[Trait, ...]) -> Fold:
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
            for trait in traits:
                values = trait.entries(e)
                if values:
                    record(st, trait, values, t, now, order_id)
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


def record(st: CustomerState, trait: Trait, values: list[TraitValue], t: int, now: int, order_id: str) -> None:
    """One event's entries into the trait's history, which stays in time order, free of events
    that left the window for good, and within TRAIT_EVENTS_KEEP."""
    horizon = trait.within
    if horizon is not None and now - t >= horizon:
        return                          # a late event already outside the window
    ts = st.traits.get(trait.name)
    if ts is None or ts.key != trait.key:
        ts = _own(st, trait)
    events = ts.events
    if not events or events[-1][0] <= t:
        if len(values) == 1:
            events.append((t, values[0], order_id))
        else:
            events.extend([(t, v, order_id) for v in values])
    else:                               # a late event: after the entries of its time and before
        at = bisect_right(events, t, key=_time)
        events[at:at] = [(t, v, order_id) for v in values]
    if horizon is not None and now - events[0][0] >= horizon:
        gone = 0
        while gone < len(events) and now - events[gone][0] >= horizon:
            gone += 1
        del events[:gone]
        if trait.event != "order_paid":       # (kept as in _cancelling)
            _drop_if_empty(st, trait.name, ts)
    if len(events) > TRAIT_EVENTS_KEEP:
        excess = len(events) - TRAIT_EVENTS_KEEP
        fold_oldest_trait_events(ts, excess)
        note_truncated("trait_events", f"{excess} oldest trait events left the one-by-one history at the bound of "
                                       f"{TRAIT_EVENTS_KEEP} ({'folded' if ts.fold else 'dropped'})")


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


def _own(st: CustomerState, trait: Trait) -> TraitState:
    """The trait's own history in the state, new when it has none under this definition (an
    order_paid trait's began before the payment joined the kept ones: _paying)."""
    ts = st.traits.get(trait.name)
    if ts is None or ts.key != trait.key:
        ts = st.traits[trait.name] = TraitState(trait.key, trait.fold)
    return ts


def _drop_if_empty(st: CustomerState, name: str, ts: TraitState) -> None:
    if not ts.events and ts.folded is None and not ts.tally:
        del st.traits[name]
