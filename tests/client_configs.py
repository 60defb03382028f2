"""The Kafka client configs the product builds, recorded instead of connected: the security settings
the tests give (SECURE), whether a recorded config carries them, and reaching a client's construction.
The `built` fixture (tests/conftest.py) does the recording, for the tests of stream.kafka.clients and
of the commands' librdkafka properties."""
from __future__ import annotations

import pytest

SECURE = {"security.protocol": "SASL_SSL", "sasl.mechanisms": "PLAIN", "sasl.username": "worker",
          "sasl.password": "hunter2"}


class Stop(Exception):
    """Raised by a recorded client constructor: the test has its config and needs no client."""


def has_settings(config: dict) -> bool:
    return all(config.get(k) == v for k, v in SECURE.items()) and config.get("allow.auto.create.topics") == "false"


def reach(call) -> None:
    with pytest.raises(Stop):
        call()
