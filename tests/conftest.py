"""Fixtures shared by the test packages: `serving`, the worker's HTTP server on a free loopback port
(tests/runtime/test_http.py serves on it, tests/cli/test_worker.py takes its port from a worker)."""
from __future__ import annotations

import pytest

from stream.kafka.embedded_broker import free_port
from stream.runtime import metrics
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

