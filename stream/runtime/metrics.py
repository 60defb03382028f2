"""Prometheus metrics of the worker, and its HTTP endpoints: /metrics, /healthz, /readyz.

The names are a contract with deploy/ (alerts, dashboard) and tests/deploy/test_deploy.py. Labels are
bounded: topics, partitions, event types, outcomes and segment names, never a customer id.
"""
from __future__ import annotations

import logging
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from stream.engine.timers import TimerIndex
from stream.model.changes import SegmentChange
from stream.model.state import on_shed
from stream.model.time import SECOND
from stream.runtime.http import App, Request, Response, Route, Server, read_token

log = logging.getLogger("segments.http")
_TEXT = "text/plain; charset=utf-8"
# Finer between 100 ms and 1 s, where a commit interval plus its commit lands: a p99 target of
# 250 ms must be told apart from 300 or 450 ms.
_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 10, 30, 60)

EVENTS = Counter("segments_events", "Input events by topic, type and outcome", ["topic", "type", "outcome"])
CHANGES = Counter("segments_changes", "Segment changes published", ["segment", "change"])
MEMBERS = Gauge("segments_members", "Current members per segment on this worker's partitions", ["segment"])
EVENT_TO_CHANGE = Histogram("segments_event_to_change_seconds",
                            "Event time to the commit of the segment change it caused", buckets=_LATENCY)
BATCH_SECONDS = Histogram("segments_batch_duration_seconds",
                          "First message consumed to committed output, per commit (its batch)",
                          buckets=_LATENCY)
BATCH_MESSAGES = Histogram("segments_batch_messages", "Messages per commit (its batch)",
                           buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000, 20000, 50000))
LAG = Gauge("segments_consumer_lag", "Messages behind the end of the partition", ["topic", "partition"])
STATE_CUSTOMERS = Gauge("segments_state_customers", "Customers in the partition's store (RocksDB estimate)",
                        ["partition"])
CACHE_HITS = Counter("segments_state_cache_hits", "State lookups served by the write-back cache")
CACHE_MISSES = Counter("segments_state_cache_misses", "State lookups that went to RocksDB")
TIMERS_PENDING = Gauge("segments_timers_pending", "Customers with a pending time-driven move")
TIMERS_FIRED = Counter("segments_timers_fired", "Timers fired")
TIMER_OVERDUE = Gauge("segments_timer_overdue_seconds",
                      "Wall clock minus the earliest pending timer deadline; 0 when none is due")
REBALANCES = Counter("segments_rebalances", "Partition assignments and revocations", ["kind"])
RESTORED = Counter("segments_restore_records", "Changelog records restored")
RESTORING = Gauge("segments_partitions_restoring", "Partitions being restored from their changelog")
ASSIGNED = Gauge("segments_assigned_partitions", "Input partitions this worker owns")
READY = Gauge("segments_ready", "1 once every assigned partition is restored and the worker is in its group")
UP = Gauge("segments_up", "1 while the worker runs")
BROKER_UP = Gauge("segments_broker_up",
                  "1 while the brokers answer, 0 while none does (stream.kafka.clients.BrokerWatch)")
# Segment definitions changed while running (stream.definitions.live)
DEFINITION_VERSION = Gauge("segments_definition_version", "Running version of each segment's definition",
                           ["segment"])
DEFINITIONS_REJECTED = Counter("segments_definitions_rejected", "Segment definitions rejected (the previous "
                               "one keeps running)", ["segment"])
DEFINITION_INCOMPLETE = Gauge("segments_definition_needs_backfill", "1 while a segment reads history the state "
                              "did not keep when it was defined", ["segment"])
REEVALUATIONS_RUNNING = Gauge("segments_reevaluations_running", "Partitions re-evaluating stored customers "
                              "after a definition change")
# Customer states that hit a bound and lost something (stream.model.state): reason is one of a fixed set.
STATE_TRUNCATED = Counter("segments_state_truncated", "Customer states that dropped data to stay within a "
                          "bound, by what was dropped", ["reason"])
REEVALUATED = Counter("segments_reevaluated_customers", "Stored customers re-evaluated after definition changes")

_state_log = logging.getLogger("segments.state")
_SHED_LOG_EVERY = 60.0         # seconds between log lines per truncation reason
_shed_logged: dict[str, float] = {}
_shed_unlogged: dict[str, int] = {}


def count_shed(reason: str, what: str) -> None:
    """A customer state bound dropped something (stream.model.state reports it): count it, and log
    it at most once a minute per reason. `what` carries sizes and counts, never a state's values."""
    STATE_TRUNCATED.labels(reason).inc()
    now = time.monotonic()
    last = _shed_logged.get(reason)
    if last is not None and now - last < _SHED_LOG_EVERY:
        _shed_unlogged[reason] = _shed_unlogged.get(reason, 0) + 1
        return
    _shed_logged[reason] = now
    _state_log.warning("customer state bound (%s): %s; %d more since the last such line",
                       reason, what, _shed_unlogged.pop(reason, 0))


_counting_sheds = False


def count_sheds() -> None:
    """Count and log (count_shed) every state bound shed in this process from now on: the model,
    below the runtime, only reports them. Called by each driver that wants them counted (the
    replay, both runtimes through Health, the backfill); once per process, however often called."""
    global _counting_sheds
    if not _counting_sheds:
        _counting_sheds = True
        on_shed(count_shed)


class Health:
    """What /healthz and /readyz answer: the loop's heartbeat, and readiness."""

    def __init__(self, stale_after: float = 60.0):
        count_sheds()            # a runtime's process reports its sheds with the rest of its health
        self.stale_after = stale_after
        self.beat = time.monotonic()
        self.ready = False
        # Why the worker is not ready although `ready` may say so (brokers unreachable, topics not
        # as expected, no partition owned): None when nothing is wrong. Set by the runtime.
        self.blocked: Callable[[], str | None] = lambda: None

    def alive(self) -> bool:
        return time.monotonic() - self.beat < self.stale_after

    def readiness(self) -> tuple[bool, str]:
        """What /readyz answers: ready or not, and why not."""
        reason = self.blocked()
        if reason is not None:
            return False, reason
        return (True, "ready") if self.ready else (False, "restoring or not in a group yet")


def serve(port: int, health: Health, routes: Iterable[Route] = (), host: str = "0.0.0.0",
          token_file: Path | None = None) -> Server:
    """/metrics and the probes (open, for Prometheus and Kubernetes) and `routes` (stream.inspect.routes:
    personal data, served only with the bearer token in `token_file`; off without one), on host:port.
    Raises HttpSetupError naming the problem when the token file or the address is unusable (the
    command turns it into its exit status)."""
    token = read_token(token_file) if token_file is not None else None
    server = Server(App([*_probes(health), *routes], token), host, port)
    UP.set(1)
    private = [r.path for r in server.app.routes if not r.public]
    exposure = ("none on this runtime" if not private else
                f"{', '.join(private)} with the bearer token" if token else "off (no http_token_file)")
    log.info("http: %s (/metrics, /healthz, /readyz open; personal-data routes: %s)", server.url, exposure)
    return server


def _probes(health: Health) -> list[Route]:
    def healthz(_: Request) -> Response:
        alive = health.alive()
        return Response(200 if alive else 503, b"ok\n" if alive else b"processing loop stalled\n", _TEXT)

    def readyz(_: Request) -> Response:
        ready, why = health.readiness()
        return Response(200 if ready else 503, why.encode() + b"\n", _TEXT)

    return [Route("/metrics", "Prometheus metrics", lambda _: Response(200, generate_latest(), CONTENT_TYPE_LATEST),
                  public=True),
            Route("/healthz", "200 while the processing loop runs", healthz, public=True),
            Route("/readyz", "200 once in the group with every assigned partition restored", readyz, public=True)]


def stop(server: Server) -> None:
    UP.set(0)
    READY.set(0)
    server.stop()


def set_labelled(gauge: Gauge, values: dict[str, float]) -> None:
    """A labelled gauge holding exactly `values`: labels no longer present are removed."""
    (metric,) = gauge.collect()
    for labels in [m.labels for m in metric.samples]:
        if labels["segment"] not in values:
            gauge.remove(labels["segment"])
    for label, value in values.items():
        gauge.labels(label).set(value)


def count_changes(changes: list[SegmentChange]) -> None:
    """One increment per (segment, direction) per batch: per change would cost more than the engine."""
    for (segment, change), n in Tally((c.segment, c.change) for c in changes).items():
        CHANGES.labels(segment, change).inc(n)


def observe_timers(indexes: Iterable[TimerIndex]) -> None:
    """Pending time-driven moves over these engines' timer indexes, and how far past the wall
    clock the earliest deadline is (0 when none is due)."""
    pending, earliest = 0, None
    for index in indexes:
        pending += len(index)
        due = index.earliest()
        if due is not None and (earliest is None or due < earliest):
            earliest = due
    TIMERS_PENDING.set(pending)
    overdue = time.time() - earliest / SECOND if earliest is not None else 0.0
    TIMER_OVERDUE.set(max(overdue, 0.0))
