"""Prometheus metrics of the worker. Label values are bounded: outcomes and segment names, never a
customer id."""
from __future__ import annotations

from collections import Counter as Tally

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from .changes import SegmentChange

EVENTS = Counter("segments_events", "Input events by outcome", ["outcome"])
CHANGES = Counter("segments_changes", "Segment changes published", ["segment", "change"])
BATCH_SECONDS = Histogram("segments_batch_duration_seconds", "Time from consume to committed output of a batch",
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
ASSIGNED = Gauge("segments_assigned_partitions", "Input partitions this worker owns")


def serve(port: int) -> None:
    start_http_server(port, addr="0.0.0.0")


def count_changes(changes: list[SegmentChange]) -> None:
    """One increment per (segment, direction) per batch: per change would cost more than the engine."""
    for (segment, change), n in Tally((c.segment, c.change) for c in changes).items():
        CHANGES.labels(segment, change).inc(n)
