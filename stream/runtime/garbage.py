"""How the processes that hold engines collect garbage: the native worker, the Faust runtime,
`segments replay` and `segments backfill`.

The engine's customer states are many long-lived objects that hold no reference cycles
(stream.model.state). Each of the collector's full passes walks every tracked object, more with
every customer, and finds nothing among them: with Python's default thresholds they took about a
quarter of the engine's time (bench engine: 148k -> 197k events/s applied without them). While an
engine runs, full passes are made rare and the young generation larger; the young generations
still collect whatever cycles other code (clients, HTTP threads, exceptions) leaves behind.
"""
from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

# A young collection per 50,000 new container objects (Python's default: 700), a middle one per
# 20 of those, a full one per 100 middle ones (default 10 and 10): 100M allocations between full
# passes, and Python also waits until the survivors grew by a quarter since the last one.
THRESHOLDS = (50_000, 20, 100)


@contextlib.contextmanager
def rare_full_collections() -> Iterator[None]:
    """THRESHOLDS for the duration; the previous ones after."""
    before = gc.get_threshold()
    gc.set_threshold(*THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)


def settle() -> None:
    """After partitions were restored: what is alive now (their states and timer indexes) leaves
    the collector's generations for good (gc.freeze), so no full pass walks it again. Reference
    counting still frees each of them when it goes; cycles among them, which the states never
    make, would be kept. A collection first, so that no garbage already made is kept with them."""
    gc.collect()
    gc.freeze()
