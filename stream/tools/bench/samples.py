"""Realistic customer states for the benchmarks that fill a store: the engine's states after a
run of synthetic shopper events, serialized as the stores keep them."""
from __future__ import annotations

from stream.engine.core import Engine

from stream.engine.store import MemoryStore
from stream.model.decoding import Decoder
from stream.model.events import Event
from stream.model.state import dump_state
from stream.rules.catalog import Catalog
from stream.tools.synth import shopper_events


def sample_states(customers: int, events: int, seed: int, catalog: Catalog) -> tuple[list[bytes], int]:
    """The serialized states after `events` synthetic events over about `customers` customers, and
    the stream time they reached."""
    store = MemoryStore()
    engine = Engine(catalog, store)
    decode = Decoder().decode
    for line in shopper_events(customers, events, seed):
        event = decode(line)
        if isinstance(event, Event):       # (synthetic events always are)
            engine.apply(event)
    return [dump_state(state) for state in store.values()], engine.now
