"""Sizes at a customer state's bounds: the widest strings the contract lets in, and what the
metrics say the bounds shed. For the tests of the state bound (tests/model) and of its metric
(tests/runtime); the `sheds_counted` fixture (tests/conftest.py) makes the sheds counted."""
from __future__ import annotations

from prometheus_client import REGISTRY

WIDE = "\U0001F600"


def truncated(reason: str) -> float:
    return REGISTRY.get_sample_value("segments_state_truncated_total", {"reason": reason}) or 0.0


def wide(n: int, length: int) -> str:
    """A distinct string of `length` characters, as many UTF-8 bytes as that can be."""
    head = str(n)
    return head + WIDE * (length - len(head))
