"""How a backfill's processes collect garbage. The engine's states are many long-lived objects that
hold no reference cycles (a backfill of 300k events leaves none to collect), so the collector's full
passes, each over every object tracked, more with every customer rebuilt, cost a backfill about a
quarter of its time and find nothing. During a run they are made rare; the young generations still
collect whatever cycles other code leaves behind."""
from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

_FULL_AFTER = 1000          # passes of the middle generation between full ones (Python's default: 10)


@contextlib.contextmanager
def rare_full_collections() -> Iterator[None]:
    young, middle, full = gc.get_threshold()
    gc.set_threshold(young, middle, max(full, _FULL_AFTER))
    try:
        yield
    finally:
        gc.set_threshold(young, middle, full)
