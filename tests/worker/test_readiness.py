"""The native worker's readiness (Worker._blocked, as /readyz answers it): a partition owned, brokers
answering, and the topics as at start."""
from __future__ import annotations

from stream.rules.catalog import load_catalog
from stream.runtime.settings import WorkerConfig
from stream.worker import loop


def _config() -> WorkerConfig:
    return WorkerConfig(bootstrap_servers="kafka:9092", instance_id="w")


def test_ready_needs_a_partition_answering_brokers_and_the_topics_as_at_start():
    # Before: /readyz 200 with no partition owned (after a wiped broker), or with no broker answering.
    w = loop.Worker(_config(), load_catalog())
    w.health.blocked, w.health.ready = w._blocked, True
    w.probe = type("Probe", (), {"topics_problem": None})()
    ready, why = w.health.readiness()
    assert not ready and "owns no partition" in why
    w.tasks[0] = object()
    assert w.health.readiness() == (True, "ready")
    w.probe.topics_problem = "topics not as the worker needs them (topic 'x' does not exist)"
    assert w.health.readiness() == (False, w.probe.topics_problem)
    w.probe.topics_problem = None
    w.watch.down("Connection refused")
    ready, why = w.health.readiness()
    assert not ready and "unreachable" in why and "Connection refused" in why
    w.watch.up()
    assert w.health.readiness() == (True, "ready")
    w.tasks.clear()
