"""The definitions a partition store was evaluated under, as the worker recorded them in it (the
Running record under DEFINITIONS_KEY, stream.definitions.live). `segments members` and `explain`
read them so that a segment added with `segments define` (the definitions topic) is known to them
too, and a customer is explained by the definitions that placed it, not only by the segments file.
"""
from __future__ import annotations

from typing import Any

import msgspec

from stream.definitions.resolution import decode_running, file_definitions, same, version_of
from stream.rules.catalog import Catalog, compile_catalog
from stream.rules.problems import DefinitionError
from stream.storage.committed import Partition
from stream.storage.keys import DEFINITIONS_KEY


def stored_catalog(partition: Partition, file_catalog: Catalog) -> Catalog | None:
    """The definitions the partition's last committed batch ran; None for a store that has no record
    of them (nothing committed yet, or written before definitions were recorded) or an unreadable one.
    A definition the segments file holds unchanged (same version) is taken as the file writes it: the
    stored copy's keys are sorted, which would change how its conditions are shown."""
    raw = partition.db.get(DEFINITIONS_KEY)
    if raw is None:
        return None
    try:
        running = decode_running(raw).definitions
        file = file_definitions(file_catalog)
        return compile_catalog({name: file[name] if name in file and _unchanged(file[name], definition) else definition
                                for name, definition in running.items()}, f"the definitions p{partition.number} runs")
    except (msgspec.DecodeError, DefinitionError):
        return None


def _unchanged(file: dict[str, Any], stored: dict[str, Any]) -> bool:
    return same(file, stored) and version_of(file) == version_of(stored)


def known_segments(partitions: list[Partition], file_catalog: Catalog) -> list[str]:
    """Every segment name of the segments file or of any partition's running definitions, in that order."""
    names = dict.fromkeys(file_catalog.by_name)
    for partition in partitions:
        stored = stored_catalog(partition, file_catalog)
        if stored is not None:
            names.update(dict.fromkeys(stored.by_name))
    return list(names)
