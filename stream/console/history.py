"""What the console shows of the past, kept by the worker in memory and bounded:

- per segment, its size sampled at most every SAMPLE_SECONDS, the last SAMPLES samples (a ring:
  24 hours at one sample every 10 s), for the size chart;
- per segment, the entries and exits of each of the last HOURS wall-clock hours, for the
  entered/exited chart;
- per customer, its last CHANGES_PER_CUSTOMER segment changes, for the last CUSTOMERS customers
  that changed (least recently changed forgotten first).

Worst case about 1 MB per segment (SAMPLES samples of some 110 bytes), and CUSTOMERS x
CHANGES_PER_CUSTOMER small records (some 55 MB at the bounds, measured with tracemalloc and
17-character ids), whatever the number of customers. It starts empty with the process (a restarted
worker's charts begin again), and a worker keeps only its own partitions' changes: in a group of
several, each worker's console shows its share of the moves.
"""
from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from stream.model.changes import SegmentChange

SAMPLE_SECONDS = 10.0
SAMPLES = 8640
HOURS = 48
CUSTOMERS = 20_000
CHANGES_PER_CUSTOMER = 10


@dataclass(frozen=True)
class Moves:
    hour: int               # wall clock hour, seconds since the epoch // 3600
    entered: int
    exited: int


@dataclass(frozen=True)
class Change:
    at: str                 # the change's own time (RFC 3339)
    segment: str
    change: str             # entered | exited
    cause: str              # event | time | definition


class History:
    """Written by the worker's loop after each commit, read by the HTTP threads."""

    def __init__(self, sample_seconds: float = SAMPLE_SECONDS, samples: int = SAMPLES, hours: int = HOURS,
                 customers: int = CUSTOMERS, per_customer: int = CHANGES_PER_CUSTOMER):
        self.sample_seconds, self.per_customer, self.customers = sample_seconds, per_customer, customers
        self._samples: dict[str, deque[tuple[float, int]]] = {}
        self._moves: dict[str, deque[list[int]]] = {}        # [hour, entered, exited], oldest first
        self._recent: OrderedDict[str, deque[Change]] = OrderedDict()
        self._ring, self._hours = samples, hours
        self._next_sample = float("-inf")
        self._lock = threading.Lock()

    def sample(self, sizes: Mapping[str, int], now: float) -> None:
        """The segments' sizes at `now` (wall clock seconds), kept if a sample is due."""
        with self._lock:
            if now < self._next_sample:
                return
            self._next_sample = now + self.sample_seconds
            for segment, size in sizes.items():
                self._samples.setdefault(segment, deque(maxlen=self._ring)).append((now, size))
            for gone in self._samples.keys() - sizes.keys():    # a segment removed: its history goes too
                del self._samples[gone]
                self._moves.pop(gone, None)

    def record(self, changes: Iterable[SegmentChange], now: float) -> None:
        """Committed changes, counted in the hour of `now` (when they were published)."""
        hour = int(now // 3600)
        with self._lock:
            for change in changes:
                ring = self._moves.setdefault(change.segment, deque(maxlen=self._hours))
                if not ring or ring[-1][0] != hour:
                    ring.append([hour, 0, 0])
                ring[-1][1 if change.change == "entered" else 2] += 1
                recent = self._recent.get(change.customer_id)
                if recent is None:
                    recent = self._recent[change.customer_id] = deque(maxlen=self.per_customer)
                    while len(self._recent) > self.customers:
                        self._recent.popitem(last=False)
                else:
                    self._recent.move_to_end(change.customer_id)
                recent.append(Change(change.at, change.segment, change.change, change.cause))

    def sizes(self, segment: str) -> list[tuple[float, int]]:
        with self._lock:
            return list(self._samples.get(segment, ()))

    def moves(self, segment: str, now: float) -> list[Moves]:
        """Entries and exits of each of the last HOURS hours up to `now`'s, oldest first (0 for none)."""
        last = int(now // 3600)
        with self._lock:
            counted = {hour: (entered, exited) for hour, entered, exited in self._moves.get(segment, ())}
        return [Moves(hour, *counted.get(hour, (0, 0))) for hour in range(last - self._hours + 1, last + 1)]

    def changes(self, customer_id: str) -> list[Change]:
        """The customer's recent changes, newest first."""
        with self._lock:
            return list(reversed(self._recent.get(customer_id, ())))
