"""Folding events into customer state. Each fold keeps the state's bounds (see stream.model.state)."""
from __future__ import annotations

from bisect import insort
from collections.abc import Callable
from typing import TypeVar, cast

import cython
import msgspec
from cython.cimports.stream.engine.untrack import PyObject_GC_UnTrack  # type: ignore[import-untyped]

from stream.model import events as ev
from stream.model.state import (CANCELLED_KEEP, CATEGORIES_KEEP, CUSTOM_KEEP, ITEMS_KEEP, PAID_KEEP, CustomerState,
                                fold_oldest_paid, note_truncated, recount)
from stream.rules.nodes import Stream

_ITEMS_KEEP: int = cython.declare(cython.Py_ssize_t, ITEMS_KEEP)     # a C copy for record_time
Fold = Callable[[CustomerState, ev.Event, int, int], None]
E = TypeVar("E", bound=ev.Event)


def _fold_of(cls: type[E], fold: Callable[[CustomerState, E, int, int], None]) -> tuple[type[ev.Event], Fold]:
    """An entry of the table by event type, whose fold takes that type (checked here): the table is
    only ever read with an event's own type, which a Callable type cannot say, hence the cast."""
    return cls, cast(Fold, fold)


@cython.cfunc
def record_time(tables: dict[str, dict[str, tuple[int, ...]]], name: str, key: str, t: cython.longlong,
                keep: cython.Py_ssize_t, horizon: cython.longlong, now: cython.longlong) -> None:
    """Remember that `key` had an event at `t`: at most `keep` newest times per key, and keys in the
    order they were last touched, so the stalest key is always first (cheap to prune)."""
    if now - t >= horizon:
        return                       # a late event already outside every window that reads it
    table: dict[str, tuple[int, ...]] | None = tables.get(name)
    if table is None:
        table = tables[name] = {}
    times: tuple[int, ...] | None = table.pop(key, None)
    if times is None:
        times = (t,)
    else:
        last: cython.longlong = times[-1]
        if t >= last:
            times += (t,)
        else:                        # a late event: its time goes in order
            ordered = list(times)
            insort(ordered, t)
            times = tuple(ordered)
        if len(times) > keep:
            times = times[1:]
    PyObject_GC_UnTrack(times)       # only numbers in it (stream.engine.untrack)
    table[key] = times
    if len(table) > _ITEMS_KEEP:
        for stalest in table:
            del table[stalest]
            break
        return
    for times in table.values():     # the stalest key's times (first in the table)
        last = times[-1]
        # Rebuild only once the stalest key is an eighth of a window past expiry, so a steady
        # stream of events prunes now and then, not on every event.
        if now - last >= horizon + (horizon >> 3):
            tables[name] = _recent(table, horizon, now)
        break


@cython.cfunc
def _recent(table: dict[str, tuple[int, ...]], horizon: cython.longlong,
            now: cython.longlong) -> dict[str, tuple[int, ...]]:
    """The keys whose newest time is within `horizon` of now, in their order."""
    kept: dict[str, tuple[int, ...]] = {}
    last: cython.longlong
    for key, times in table.items():
        last = times[-1]
        if now - last < horizon:
            kept[key] = times
    return kept


@cython.final
@cython.cclass
class _Window:
    """A windowed stream a fold records into (see rules.Stream), in the types the fold reads."""
    name: str
    per_product: cython.bint
    keep: cython.Py_ssize_t
    horizon: cython.longlong

    def __init__(self, stream: Stream) -> None:
        self.name, self.per_product = stream.name, stream.per == "product"
        self.keep, self.horizon = stream.keep, stream.horizon


@cython.final
@cython.cclass
class Folder:
    """The fold for each event type, specialised to the windowed streams the catalog needs."""
    _view_streams: list[_Window]
    _order_streams: list[_Window]
    folds: dict[type[ev.Event], Fold] = cython.declare(dict, visibility="public")

    def __init__(self, streams: list[Stream]):
        self._view_streams = [_Window(s) for s in streams if s.event == "product_viewed"]
        self._order_streams = [_Window(s) for s in streams if s.event == "order_placed"]
        self.folds = dict((
            _fold_of(ev.OrderPlaced, self.order_placed),
            _fold_of(ev.OrderPaid, self.order_paid),
            _fold_of(ev.OrderCancelled, self.order_cancelled),
            _fold_of(ev.ProductViewed, self.product_viewed),
            _fold_of(ev.CartUpdated, self.cart_updated),
            _fold_of(ev.CartAbandoned, self.cart_abandoned),
            _fold_of(ev.CustomerUpdated, self.customer_updated),
        ))

    def product_viewed(self, st: CustomerState, e: ev.ProductViewed, t: cython.longlong,
                       now: cython.longlong) -> None:
        last_viewed = st.last_viewed
        if last_viewed is None or t > last_viewed:
            st.last_viewed = t
        w: _Window
        for w in self._view_streams:
            record_time(st.streams, w.name, e.product_id if w.per_product else e.category, t, w.keep, w.horizon, now)

    def order_placed(self, st: CustomerState, e: ev.OrderPlaced, t: cython.longlong, now: cython.longlong) -> None:
        st.orders_placed += 1
        last_placed = st.last_placed
        if last_placed is None or t > last_placed:
            st.last_placed = t
        bought = st.categories_bought
        for item in e.items:
            if item.category is not None and item.category not in bought and len(bought) < CATEGORIES_KEEP:
                bought.append(item.category)
        # The shipping address fills the profile only where the customer's own profile is silent.
        if e.city is not None and st.city is None:
            st.city = e.city
        if e.country is not None and st.country is None:
            st.country = e.country
        w: _Window
        for w in self._order_streams:
            # dict.fromkeys, not set(): item order must not depend on the hash seed.
            keys = dict.fromkeys(i.product_id if w.per_product else i.category for i in e.items)
            for key in keys:
                if key is not None:
                    record_time(st.streams, w.name, key, t, w.keep, w.horizon, now)

    def order_paid(self, st: CustomerState, e: ev.OrderPaid, t: int, now: int) -> None:
        order_id = e.order_id
        if order_id in st.paid or order_id in st.cancelled:
            return                   # only the first payment counts; none after a cancellation
        paid = st.paid
        payment = (t, e.amount)
        PyObject_GC_UnTrack(payment)     # only numbers in it (stream.engine.untrack)
        paid[order_id] = payment
        if len(paid) > PAID_KEEP:
            fold_oldest_paid(st)
        recount(st)

    def order_cancelled(self, st: CustomerState, e: ev.OrderCancelled, t: int, now: int) -> None:
        cancelled = st.cancelled
        cancelled.pop(e.order_id, None)
        cancelled[e.order_id] = t
        if len(cancelled) > CANCELLED_KEEP:
            del cancelled[next(iter(cancelled))]
        if st.paid.pop(e.order_id, None) is not None:
            recount(st)

    def cart_updated(self, st: CustomerState, e: ev.CartUpdated, t: int, now: int) -> None:
        if st.cart_updated_at is None or t >= st.cart_updated_at:
            st.cart_updated_at, st.cart_value = t, e.value

    def cart_abandoned(self, st: CustomerState, e: ev.CartAbandoned, t: int, now: int) -> None:
        if st.abandoned_at is None or t >= st.abandoned_at:
            st.abandoned_at, st.abandoned_value = t, e.value

    def customer_updated(self, st: CustomerState, e: ev.CustomerUpdated, t: int, now: int) -> None:
        a = e.attributes
        unset = msgspec.UNSET
        if a.city is not unset:
            st.city = a.city
        if a.country is not unset:
            st.country = a.country
        if a.gender is not unset:
            st.gender = a.gender
        if a.email_opt_in is not unset:
            st.email_opt_in = a.email_opt_in
        if a.birth_date is not unset:
            st.birth_date = a.birth_date.isoformat() if a.birth_date is not None else None
        if a.custom is None:
            st.custom = {}
        elif a.custom is not unset:
            custom = st.custom
            custom.update(a.custom)
            if len(custom) > CUSTOM_KEEP:
                # Only new names were appended (updated ones keep their place), the last of them
                # last: those over the bound go, so the names the customer had stay.
                excess = len(custom) - CUSTOM_KEEP
                for _ in range(excess):
                    custom.popitem()
                note_truncated("custom_names",
                               f"{excess} new custom attribute names dropped at the bound of {CUSTOM_KEEP}")
