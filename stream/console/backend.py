"""What the console reads and where it publishes, from either driver: the worker (its live
definitions, member counts and in-memory history, stream.worker.loop) or `segments console` (the
stores and the definitions topic, stream.cli.console). The pages (stream.console.routes) see only this."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from stream.console.history import History
from stream.kafka.publishing import Topic
from stream.rules.catalog import Catalog
from stream.storage.committed import CommittedStores


@dataclass(frozen=True)
class Sizes:
    counts: Mapping[str, int]
    note: str                      # where they come from and as of when, shown under the table


@dataclass(frozen=True)
class Backend:
    driver: str                                   # "worker" or "segments console", shown in the footer
    catalog: Callable[[], Catalog]                # the definitions running now, compiled
    stores: Callable[[], CommittedStores]         # the committed stores to read (raises NoStores)
    definitions: Callable[[], dict[str, Any]]     # as GET /definitions (LiveDefinitions.describe)
    sizes: Callable[[], Sizes]
    history: History
    moves_kept: bool                              # whether `history` records changes (the worker's does)
    topic: Topic | None                           # where the editor publishes; None: it cannot
    preview_seconds: float = 3.0                  # the editor's preview pass stops after this long
