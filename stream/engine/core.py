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

import cython

from stream.engine.fold import Fold, Folder
from stream.engine.redefinition import Redefinition
from stream.engine.store import MemoryStore, StateStore
from stream.engine.timers import TimerIndex
from stream.engine.trait_fold import with_traits
from stream.model import events as ev
from stream.model.buckets import customer_hash
from stream.model.changes import SegmentChange, make_change
from stream.model.state import DEDUP_WINDOW, SEEN_KEEP, CustomerState
from stream.model.time import BEFORE_TIME, from_datetime
from stream.rules.catalog import Catalog
from stream.rules.nodes import Segment

# C constants of the hot path (the model's values): comparing a C integer with a Python one would
# convert it on every event.
_WINDOW: int = cython.declare(cython.longlong, DEDUP_WINDOW)
_DEDUP_SLACK: int = cython.declare(cython.longlong, DEDUP_WINDOW >> 3)   # prune applied ids this far past expiry
_SEEN_KEEP: int = cython.declare(cython.Py_ssize_t, SEEN_KEEP)
_ERASED = ev.CustomerErased


@cython.cfunc
def _unexpired(seen: dict[str, int], now: cython.longlong) -> dict[str, int]:
    """The applied ids still inside the de-duplication window, in their order."""
    kept: dict[str, int] = {}
    for event_id, at in seen.items():
        if now - cython.cast(cython.longlong, at) < _WINDOW:
            kept[event_id] = at
    return kept


@cython.cfunc
def _earliest(timers: dict[str, int]) -> int | None:
    """The customer's next flip (the timer index's deadline for it), None without timers."""
    earliest: int | None = None
    for at in timers.values():
        if earliest is None or at < earliest:
            earliest = at
    return earliest


@cython.cfunc
def _record_exit(st: CustomerState, name: str, at: int) -> None:
    """The customer left segment `name` at `at` (a left_within reads it)."""
    if st.left is None:
        st.left = {name: at}
    else:
        st.left[name] = at


@cython.final
@cython.cclass
class Stats:
    """What an engine did so far (C counters: the engine bumps them on every event)."""
    applied: int = cython.declare(cython.longlong, visibility="public")
    duplicates: int = cython.declare(cython.longlong, visibility="public")
    late: int = cython.declare(cython.longlong, visibility="public")
    erased: int = cython.declare(cython.longlong, visibility="public")
    timers_fired: int = cython.declare(cython.longlong, visibility="public")
    changes: int = cython.declare(cython.longlong, visibility="public")

    def __init__(self) -> None:
        self.applied = self.duplicates = self.late = self.erased = self.timers_fired = self.changes = 0

    def __repr__(self) -> str:
        return "Stats(" + ", ".join(f"{name}={getattr(self, name)}" for name in STATS_FIELDS) + ")"


# Stats' counters by name (a compiled class has no dataclass fields to list them), for the drivers
# that sum the stats of several engines (stream.backfill.jobs).
STATS_FIELDS = ("applied", "duplicates", "late", "erased", "timers_fired", "changes")


@cython.final
@cython.cclass
class Engine:
    store: StateStore = cython.declare(object, visibility="public")
    timers: TimerIndex = cython.declare(object, visibility="public")
    now: int = cython.declare(cython.longlong, visibility="public")
    stats: Stats = cython.declare(Stats, visibility="public")
    catalog: Catalog = cython.declare(object, visibility="public")
    _folds: dict[type[ev.Event], Fold]
    _affected: dict[type[ev.Event], tuple[Segment, ...]]
    _on_create: dict[type[ev.Event], tuple[Segment, ...]]
    # Segment references (stream.rules.catalog): whether any segment is referenced (a timer's
    # segments then take their dependants along), and the segments whose exits are recorded.
    _cascades: bool = cython.declare(cython.bint)
    _recorded: frozenset[str]

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
        self._folds = with_traits(Folder(catalog.streams).folds, catalog.traits)
        self._affected = catalog.affected
        self._on_create = catalog.on_create
        self._cascades = bool(catalog.dependants)
        self._recorded = catalog.recorded

    def reevaluate(self, customer_id: str, st: CustomerState, redefinition: Redefinition,
                   out: list[SegmentChange]) -> bool:
        """Bring one stored customer up to the running catalog for the redefined segments, at now:
        moves with cause "definition", pending flips set or cleared. Puts the state back (and
        returns True) only when something changed, so an unchanged customer costs no write."""
        by_name, now = self.catalog.by_name, self.now
        member, timers = st.member, st.timers
        changed = False
        if st.left is not None and not self._recorded.issuperset(st.left):   # exits no definition reads now
            st.left = {name: at for name, at in st.left.items() if name in self._recorded} or None
            changed = True
        names: Iterable[str] = redefinition.segments
        if self._cascades:                       # the referenced before their dependants
            names = self.catalog.evaluation_order_of(redefinition.segments)
        for name in names:
            removed_version = redefinition.segments[name]
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
                    if name in self._recorded:
                        _record_exit(st, name, now)
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
        if out is None:
            out = []
        t: cython.longlong = from_datetime(event.occurred_at)
        if t > self.now:
            self._fire_until(t, out)     # timers due at or before the event fire first
            self.now = t
        elif t < self.now:
            self.stats.late += 1
        now: cython.longlong = self.now
        customer_id: str = event.customer_id
        event_id: str = event.event_id
        kind = type(event)
        store = self.store
        st = store.get(customer_id)

        if kind is _ERASED:
            if st is not None:
                self._erase(customer_id, st, now, event_id, out)
            self.stats.applied += 1
            return out

        segments: tuple[Segment, ...]
        seen: dict[str, int]
        if st is None:
            st = CustomerState(first_seen=t, last_seen=t, id_hash=customer_hash(customer_id))
            segments = self._on_create[kind]
            seen = st.seen
        else:
            seen = st.seen
            before = seen.get(event_id)
            if before is not None:
                if now - cython.cast(cython.longlong, before) < _WINDOW:
                    self.stats.duplicates += 1
                    return out
                del seen[event_id]       # re-applied: re-insert below, keeping time order
            # Ids are inserted in stream-time order, so the first is the oldest.
            for oldest in seen.values():
                if now - cython.cast(cython.longlong, oldest) >= _WINDOW + _DEDUP_SLACK:
                    st.seen = seen = _unexpired(seen, now)
                break
            if t > cython.cast(cython.longlong, st.last_seen):
                st.last_seen = t
            elif t < cython.cast(cython.longlong, st.first_seen):
                st.first_seen = t
            segments = self._affected[kind]
        seen[event_id] = now
        while len(seen) > _SEEN_KEEP:         # (more than one only in a state stored before the bound)
            for oldest_id in seen:           # the oldest (see stream.model.state)
                del seen[oldest_id]
                break
        self._folds[kind](st, event, t, now)
        self.stats.applied += 1
        if segments:
            self._evaluate(customer_id, st, segments, now, event_id, out)
        store.put(customer_id, st)
        return out

    @cython.cfunc
    def _evaluate(self, customer_id: str, st: CustomerState, segments: Iterable[Segment], now: cython.longlong,
                  event_id: str | None, out: list[SegmentChange]) -> None:
        member: dict[str, int] = st.member
        timers: dict[str, int] = st.timers
        at = now                             # as the Python int the tests and the state take
        changes: cython.Py_ssize_t = 0
        holds: cython.bint
        for seg in segments:
            holds, flip = seg.test(st, at)
            name: str = seg.name
            if holds != (name in member):
                if holds:
                    member[name] = at
                else:
                    del member[name]
                    if self._cascades and name in self._recorded:    # read by a left_within
                        _record_exit(st, name, at)
                out.append(make_change(customer_id, name, holds, now, event_id, seg.version))
                changes += 1
            if flip is None:
                timers.pop(name, None)
            else:
                timers[name] = flip
        self.timers.set(customer_id, _earliest(timers))
        if changes:
            self.stats.changes += changes

    @cython.cfunc
    def _fire_until(self, limit: cython.longlong, out: list[SegmentChange]) -> None:
        # Called before every event that moves time, mostly to find nothing due: the method is
        # called on the index (no bound method made), the catalog read only once something is.
        timer_index = self.timers
        while (due := timer_index.pop_due(limit)) is not None:
            deadline: cython.longlong = due[0]
            customer_id: str = due[1]
            st = self.store.get(customer_id)
            if st is None:
                continue
            by_name = self.catalog.by_name
            segments = []
            timers: dict[str, int] = st.timers
            for name, at in sorted(timers.items()):
                if at <= deadline:
                    if name in by_name:
                        segments.append(by_name[name])
                    else:
                        del timers[name]         # its segment is no longer defined
            if self._cascades:                   # the segments referencing them move in the same step
                segments = self.catalog.with_dependants(segments)
            self.stats.timers_fired += 1
            self._evaluate(customer_id, st, segments, deadline, None, out)
            if timers and min(timers.values()) <= deadline:
                # Every rule must report a flip strictly after now; anything else would refire
                # forever. Fail loudly instead of hanging the partition.
                raise AssertionError(f"segment timer for {customer_id!r} did not move past {deadline}: {timers}")
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
