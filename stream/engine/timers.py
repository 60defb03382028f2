"""Which customer's segments can next change by time alone, and when."""
from __future__ import annotations

from heapq import heapify, heappop, heappush

import cython
from cython.cimports.stream.engine.untrack import PyObject_GC_UnTrack  # type: ignore[import-untyped]


@cython.cfunc
def _entry(deadline: int, customer_id: str) -> tuple[int, str]:
    """A heap entry, untracked by the garbage collector (a number and a string: stream.engine.untrack)."""
    entry = (deadline, customer_id)
    PyObject_GC_UnTrack(entry)
    return entry


@cython.final
@cython.cclass
class TimerIndex:
    """One pending deadline per customer (the earliest of its segments' next flips).

    A heap gives deadline order; rescheduling pushes a new entry and leaves the old one behind,
    recognised as stale because it no longer matches `_due`. The heap is rebuilt when stale entries
    outnumber live ones, so memory stays proportional to customers with a timer.
    """
    _heap: list[tuple[int, str]]
    _due: dict[str, int]

    def __init__(self) -> None:
        self._heap = []
        self._due = {}

    def __len__(self) -> int:
        return len(self._due)

    def __contains__(self, customer_id: str) -> bool:
        return customer_id in self._due

    def set(self, customer_id: str, deadline: int | None) -> None:
        due = self._due
        if deadline is None:
            due.pop(customer_id, None)
            return
        if due.get(customer_id) == deadline:
            return
        due[customer_id] = deadline
        heap = self._heap
        heappush(heap, _entry(deadline, customer_id))
        if len(heap) > 2 * len(due) + 4096:
            self._heap = heap = [_entry(d, c) for c, d in due.items()]
            heapify(heap)

    def pop_due(self, limit: cython.longlong) -> tuple[int, str] | None:
        """The earliest deadline at or before `limit` (ties by customer id), removed; or None."""
        heap, due = self._heap, self._due
        entry: tuple[int, str]
        while heap:
            entry = heap[0]
            deadline: cython.longlong = entry[0]
            if deadline > limit:
                break
            heappop(heap)
            customer_id: str = entry[1]
            if due.get(customer_id) == entry[0]:
                del due[customer_id]
                return entry
        return None

    def earliest(self) -> int | None:
        """The earliest pending deadline (stale heap entries on top are dropped on the way)."""
        heap, due = self._heap, self._due
        while heap and due.get(heap[0][1]) != heap[0][0]:
            heappop(heap)
        return heap[0][0] if heap else None
