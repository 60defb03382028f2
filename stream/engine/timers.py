"""Which customer's segments can next change by time alone, and when."""
from __future__ import annotations

from heapq import heapify, heappop, heappush


class TimerIndex:
    """One pending deadline per customer (the earliest of its segments' next flips).

    A heap gives deadline order; rescheduling pushes a new entry and leaves the old one behind,
    recognised as stale because it no longer matches `_due`. The heap is rebuilt when stale entries
    outnumber live ones, so memory stays proportional to customers with a timer.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[int, str]] = []
        self._due: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._due)

    def __contains__(self, customer_id: str) -> bool:
        return customer_id in self._due

    def set(self, customer_id: str, deadline: int | None) -> None:
        if deadline is None:
            self._due.pop(customer_id, None)
            return
        if self._due.get(customer_id) == deadline:
            return
        self._due[customer_id] = deadline
        heappush(self._heap, (deadline, customer_id))
        if len(self._heap) > 2 * len(self._due) + 4096:
            self._heap = [(d, c) for c, d in self._due.items()]
            heapify(self._heap)

    def pop_due(self, limit: int) -> tuple[int, str] | None:
        """The earliest deadline at or before `limit` (ties by customer id), removed; or None."""
        heap, due = self._heap, self._due
        while heap and heap[0][0] <= limit:
            deadline, customer_id = heappop(heap)
            if due.get(customer_id) == deadline:
                del due[customer_id]
                return deadline, customer_id
        return None

    def earliest(self) -> int | None:
        """The earliest pending deadline (stale heap entries on top are dropped on the way)."""
        heap, due = self._heap, self._due
        while heap and due.get(heap[0][1]) != heap[0][0]:
            heappop(heap)
        return heap[0][0] if heap else None
