"""stream.runtime.garbage: the collector's settings while an engine runs, and back after."""
from __future__ import annotations

import gc
import weakref

import pytest

from stream.runtime import garbage


def test_full_collections_are_rare_during_and_the_settings_come_back_after():
    before = gc.get_threshold()
    with garbage.rare_full_collections():
        assert gc.get_threshold() == garbage.THRESHOLDS
        young, middle, full = garbage.THRESHOLDS
        assert young * middle * full >= 10_000_000 > 700 * 10 * 10     # full passes far rarer than the default
    assert gc.get_threshold() == before
    with pytest.raises(RuntimeError), garbage.rare_full_collections():
        raise RuntimeError("an engine that fails")
    assert gc.get_threshold() == before


class _State:
    pass


def test_settle_freezes_what_is_alive_and_reference_counting_still_frees_it():
    frozen = gc.get_freeze_count()
    try:
        kept = [_State() for _ in range(1000)]
        garbage.settle()
        assert gc.get_freeze_count() >= frozen + 1000        # out of every generation: no pass walks them
        gone = weakref.ref(kept[0])
        del kept
        assert gone() is None                                 # freed when its last reference went
    finally:
        gc.unfreeze()
