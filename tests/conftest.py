"""Fixtures shared by the test packages: `serving`, the worker's HTTP server on a free loopback port
(tests/runtime/test_http.py serves on it, tests/cli/test_worker.py takes its port from a worker), and
`built`, the configs of the Kafka clients the product builds, recorded instead of connected
(tests/kafka/test_clients.py, and tests/cli/test_settings_args.py for the commands' properties), and
`sheds_counted`, what a state bound sheds counted into its metric (tests/model/test_state_bounds.py,
tests/runtime/test_metrics.py)."""
from __future__ import annotations

import pytest

from stream.backfill import handoff, sinks
from stream.backfill import plan as backfill_plan
from stream.backfill import reader as backfill_reader
from stream.kafka import clients, definitions_feed, topic_admin
from stream.kafka.embedded_broker import free_port
from stream.runtime import metrics
from stream.tools import produce
from stream.worker import loop
from tests.client_configs import Stop
from tests.helpers import LOOPBACK


@pytest.fixture
def serving():
    """serve(...) on a free loopback port, stopped after the test."""
    servers = []

    def start(routes=(), token_file=None, host=LOOPBACK, health=None):
        server = metrics.serve(free_port(), health or metrics.Health(), routes, host, token_file)
        servers.append(server)
        return server

    yield start
    for server in servers:
        metrics.stop(server)


@pytest.fixture
def built(monkeypatch):
    """Every client constructor of the product replaced by one that records its config and stops."""
    configs: list[dict] = []

    def record(config, *args, **kwargs):
        configs.append(dict(config))
        raise Stop
    for module in (topic_admin, clients, loop, backfill_plan, backfill_reader, sinks, handoff, definitions_feed,
                   produce):
        for name in ("Consumer", "Producer", "AdminClient"):
            # (stream.kafka.clients' own Consumer and Producer are the throwaway ones of kafka_problems)
            if hasattr(module, name) and not (module is clients and name != "AdminClient"):
                monkeypatch.setattr(module, name, record)
    return configs


@pytest.fixture
def sheds_counted() -> None:
    """As every driver does at start: what a bound sheds is counted into the metric read here."""
    metrics.count_sheds()
