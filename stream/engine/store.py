"""The engine's port to wherever customer states live (StateStore), and the in-memory store that
replays and tests use. The RocksDB partition store (stream.storage.rocksdb_store) is the other
implementation; the engine sees only this protocol."""
from __future__ import annotations

from typing import Protocol

from stream.model.state import CustomerState


class StateStore(Protocol):
    """Where customer states live. The engine mutates a state it got, then puts it back, so a
    write-back store learns what became dirty."""

    def get(self, customer_id: str) -> CustomerState | None: ...
    def put(self, customer_id: str, state: CustomerState) -> None: ...
    def delete(self, customer_id: str) -> None: ...


class MemoryStore(dict[str, CustomerState]):
    """The in-process store for replays and tests."""
    put = dict.__setitem__

    def delete(self, customer_id: str) -> None:
        self.pop(customer_id, None)
