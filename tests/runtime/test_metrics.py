"""What a state bound sheds, as stream.runtime.metrics reports it: counted once a driver asks (and
once however often it asks), and logged at most once a minute per reason with the count since."""
from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from stream.model import events as ev
from stream.model.state import MAX_STATE_BYTES, CustomerState, dump_state
from stream.runtime import metrics
from tests.state_sizes import truncated, wide

pytestmark = pytest.mark.usefixtures("sheds_counted")


def test_sheds_are_counted_once_a_driver_asks_and_once_however_often_it_does():
    """Importing the metrics installs nothing (stream.runtime.metrics.count_sheds does, explicitly);
    a second call does not count each shed twice."""
    program = (
        "from stream.model import state\n"
        "from stream.runtime import metrics\n"
        "assert state._shed_hooks == [], state._shed_hooks\n"
        "metrics.count_sheds()\n"
        "metrics.count_sheds()\n"
        "metrics.Health()\n"
        "assert state._shed_hooks == [metrics.count_shed], state._shed_hooks\n"
    )
    subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)


def test_a_shed_is_counted_and_logged_once_a_minute_per_reason(monkeypatch, caplog):
    monkeypatch.setattr(metrics, "_shed_logged", {})
    monkeypatch.setattr(metrics, "_shed_unlogged", {})
    before = truncated("categories")
    caplog.set_level(logging.WARNING, logger="segments.state")

    def shed() -> None:
        state = CustomerState(0, 0, categories_bought=[wide(i, ev.MAX_ID_CHARS) for i in range(400)])
        assert len(dump_state(state)) <= MAX_STATE_BYTES

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "segments.state"]

    for _ in range(3):
        shed()
    assert truncated("categories") == before + 3
    assert len(lines()) == 1 and lines()[0].startswith("customer state bound (categories): a state of ")
    assert lines()[0].endswith("; 0 more since the last such line")
    metrics._shed_logged["categories"] -= 61           # a minute later
    shed()
    assert len(lines()) == 2 and lines()[1].endswith("; 2 more since the last such line")
