"""The engine: pure, deterministic segment evaluation. No sockets, no files, no clock of its own.

    apply(event)  folds one event into its customer's state, re-evaluates the segments that read
                  what the event changed, and reports the moves (after firing timers due by then);
    advance(now)  moves stream time forward, firing due timers in deadline order.

Stream time ("now") is the largest `occurred_at` applied so far; a late event is folded and
evaluated at now. A time-driven move happens at the exact instant its condition flips, with that
instant as its `at`. Drivers own I/O and decide when to call advance (end of a replay, an idle
Kafka partition). Same calls, same changes, byte for byte.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from stream.engine.fold import Folder
from stream.engine.redefinition import Redefinition
from stream.engine.store import MemoryStore, StateStore
from stream.engine.timers import TimerIndex
from stream.model import events as ev
from stream.model.buckets import customer_hash
from stream.model.changes import SegmentChange, make_change
from stream.model.state import DEDUP_WINDOW, SEEN_KEEP, CustomerState
from stream.model.time import BEFORE_TIME, from_datetime
from stream.rules.catalog import Catalog
from stream.rules.nodes import Segment

_DEDUP_SLACK = DEDUP_WINDOW >> 3     # prune applied ids once the oldest is this far past expiry


@dataclass
class Stats:
    applied: int = 0
    duplicates: int = 0
    late: int = 0
    erased: int = 0
    timers_fired: int = 0
    changes: int = 0


class Engine:
    def __init__(self, catalog: Catalog, store: StateStore | None = None):
        self.store: StateStore = store if store is not None else MemoryStore()
        self.timers = TimerIndex()
        self.now = BEFORE_TIME
        self.stats = Stats()
        self.redefine(catalog)

    def redefine(self, catalog: Catalog) -> None:
        """Run `catalog` from now on: events fold and evaluate under it at once. A stored customer
        keeps its memberships of changed segments until reevaluate() reaches it (the driver walks
        its store, see Redefinition.between), so nothing is replayed."""
        self.catalog = catalog
        self._folds = Folder(catalog.streams).folds
        self._affected = catalog.affected
        self._on_create = catalog.on_create

    def reevaluate(self, customer_id: str, st: CustomerState, redefinition: Redefinition,
                   out: list[SegmentChange]) -> bool:
        """Bring one stored customer up to the running catalog for the redefined segments, at now:
        moves with cause "definition", pending flips set or cleared. Puts the state back (and
        returns True) only when something changed, so an unchanged customer costs no write."""
        by_name, now = self.catalog.by_name, self.now
        member, timers = st.member, st.timers
        changed = False
        for name, removed_version in redefinition.segments.items():
            seg = by_name.get(name)
            if seg is None:                      # removed (or not defined any more): exit, no timer
                if name in member:
                    del member[name]
                    version = removed_version if removed_version is not None else 1
                    out.append(make_change(customer_id, name, False, now, None, version, redefined=True))
                    self.stats.changes += 1
                    changed = True
                if timers.pop(name, None) is not None:
                    changed = True
                continue
            holds, flip = seg.test(st, now)
            if holds != (name in member):
                if holds:
                    member[name] = now
                else:
                    del member[name]
                out.append(make_change(customer_id, name, holds, now, None, seg.version, redefined=True))
                self.stats.changes += 1
                changed = True
            if flip is None:
                if timers.pop(name, None) is not None:
                    changed = True
            elif timers.get(name) != flip:
                timers[name] = flip
                changed = True
        if changed:
            self.timers.set(customer_id, min(timers.values()) if timers else None)
            self.store.put(customer_id, st)
        return changed

    def restore(self, states: Iterable[tuple[str, CustomerState]], now: int | None = None) -> None:
        """Rebuild the timer index from stored states (timers live in the state, so they survive
        restarts and partition moves) and resume stream time."""
        for customer_id, state in states:
            self.timers.set(customer_id, state.deadline())
        if now is not None:
            self.now = max(self.now, now)

    def advance(self, now: int, out: list[SegmentChange] | None = None) -> list[SegmentChange]:
        """Fire every timer due at or before `now`, in deadline order; stream time becomes `now`."""
        out = [] if out is None else out
        self._fire_until(now, out)
        if now > self.now:
            self.now = now
        return out

    def apply(self, event: ev.Event, out: list[SegmentChange] | None = None) -> list[SegmentChange]:
        out = [] if out is None else out
        t = from_datetime(event.occurred_at)
        if t > self.now:
            self._fire_until(t, out)     # timers due at or before the event fire first
            self.now = t
        elif t < self.now:
            self.stats.late += 1
        now = self.now
        customer_id = event.customer_id
        store = self.store
        st = store.get(customer_id)

        if type(event) is ev.CustomerErased:
            if st is not None:
                self._erase(customer_id, st, now, event.event_id, out)
            self.stats.applied += 1
            return out

        if st is None:
            st = CustomerState(first_seen=t, last_seen=t, id_hash=customer_hash(customer_id))
            segments = self._on_create[type(event)]
        else:
            seen = st.seen
            before = seen.get(event.event_id)
            if before is not None:
                if now - before < DEDUP_WINDOW:
                    self.stats.duplicates += 1
                    return out
                del seen[event.event_id]     # re-applied: re-insert below, keeping time order
            # Ids are inserted in stream-time order, so the first is the oldest.
            if now - next(iter(seen.values()), now) >= DEDUP_WINDOW + _DEDUP_SLACK:
                st.seen = {k: v for k, v in seen.items() if now - v < DEDUP_WINDOW}
            if t > st.last_seen:
                st.last_seen = t
            elif t < st.first_seen:
                st.first_seen = t
            segments = self._affected[type(event)]
        seen = st.seen
        seen[event.event_id] = now
        while len(seen) > SEEN_KEEP:         # (more than one only in a state stored before the bound)
            del seen[next(iter(seen))]       # the oldest (see stream.model.state)
        self._folds[type(event)](st, event, t, now)
        self.stats.applied += 1
        if segments:
            self._evaluate(customer_id, st, segments, now, event.event_id, out)
        store.put(customer_id, st)
        return out

    def _evaluate(self, customer_id: str, st: CustomerState, segments: Iterable[Segment], now: int,
                  event_id: str | None, out: list[SegmentChange]) -> None:
        member, timers = st.member, st.timers
        changes = 0
        for seg in segments:
            holds, flip = seg.test(st, now)
            name = seg.name
            if holds != (name in member):
                if holds:
                    member[name] = now
                else:
                    del member[name]
                out.append(make_change(customer_id, name, holds, now, event_id, seg.version))
                changes += 1
            if flip is None:
                timers.pop(name, None)
            else:
                timers[name] = flip
        self.timers.set(customer_id, min(timers.values()) if timers else None)
        if changes:
            self.stats.changes += changes

    def _fire_until(self, limit: int, out: list[SegmentChange]) -> None:
        by_name = self.catalog.by_name
        while (due := self.timers.pop_due(limit)) is not None:
            deadline, customer_id = due
            st = self.store.get(customer_id)
            if st is None:
                continue
            segments = []
            for name, at in sorted(st.timers.items()):
                if at <= deadline:
                    if name in by_name:
                        segments.append(by_name[name])
                    else:
                        del st.timers[name]      # its segment is no longer defined
            self.stats.timers_fired += 1
            self._evaluate(customer_id, st, segments, deadline, None, out)
            if st.timers and min(st.timers.values()) <= deadline:
                # Every rule must report a flip strictly after now; anything else would refire
                # forever. Fail loudly instead of hanging the partition.
                raise AssertionError(f"segment timer for {customer_id!r} did not move past {deadline}: {st.timers}")
            self.store.put(customer_id, st)

    def _erase(self, customer_id: str, st: CustomerState, now: int, event_id: str,
               out: list[SegmentChange]) -> None:
        """Right to be forgotten: leave every segment (caused by the erasure), then drop the state,
        its timers and its de-duplication memory."""
        by_name = self.catalog.by_name
        for name in sorted(st.member):
            version = by_name[name].version if name in by_name else 1
            out.append(make_change(customer_id, name, False, now, event_id, version))
            self.stats.changes += 1
        self.store.delete(customer_id)
        self.timers.set(customer_id, None)
        self.stats.erased += 1
