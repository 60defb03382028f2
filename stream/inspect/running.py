"""The definitions a partition store was evaluated under, as the worker recorded them in it (the
Running record under DEFINITIONS_KEY, stream.definitions.live). `segments members`, `explain` and
`segments console` read them so that a segment added with `segments define` (the definitions topic)
is known to them too, one removed through it is not, and a customer is explained by the definitions
that placed it, not only by the segments file.
"""
from __future__ import annotations

from typing import Any

import msgspec

from stream.definitions.resolution import Running, decode_running, file_definitions, same, version_of
from stream.rules.catalog import Catalog, compile_catalog
from stream.rules.problems import DefinitionError
from stream.storage.committed import Partition
from stream.storage.keys import DEFINITIONS_KEY


def stored_running(partition: Partition, file_catalog: Catalog) -> Running | None:
    """The partition's Running record; None for a store that has no record of it (nothing committed
    yet, or written before definitions were recorded) or an unreadable one. A definition the segments
    file holds unchanged (same version) is taken as the file writes it: the stored copy's keys are
    sorted, which would change how its conditions are shown."""
    raw = partition.meta(DEFINITIONS_KEY)
    if raw is None:
        return None
    try:
        running = decode_running(raw)
    except msgspec.DecodeError:
        return None
    file = file_definitions(file_catalog)
    return msgspec.structs.replace(running, definitions={
        name: file[name] if name in file and _unchanged(file[name], definition) else definition
        for name, definition in running.definitions.items()})


def stored_catalog(partition: Partition, file_catalog: Catalog) -> Catalog | None:
    """The definitions the partition's last committed batch ran, compiled; None as stored_running."""
    running = stored_running(partition, file_catalog)
    if running is None:
        return None
    try:
        return compile_catalog(running.definitions, f"the definitions p{partition.number} runs")
    except DefinitionError:
        return None


def explaining(partition: Partition, current: Catalog) -> Catalog:
    """The definitions to explain a customer of `partition` by: those of its last committed batch,
    which its stored state is as of (a change taken up since, or on another partition first, is not
    in it yet), else `current`. The one choice of `segments explain`, GET /customers/<id> and the
    console's customer page."""
    return stored_catalog(partition, current) or current


def _unchanged(file: dict[str, Any], stored: dict[str, Any]) -> bool:
    return same(file, stored) and version_of(file) == version_of(stored)


def known_segments(partitions: list[Partition], file_catalog: Catalog) -> list[str]:
    """Every segment name some partition runs (its record's, or the segments file's for a partition
    without one: what the worker assumes of it), the file's first in its order; the file's when
    there are no partitions. A segment of the file removed through the topic is not one."""
    running: dict[str, None] = {}
    for partition in partitions:
        stored = stored_catalog(partition, file_catalog)
        running.update(dict.fromkeys((stored or file_catalog).by_name))
    if not partitions:
        running = dict.fromkeys(file_catalog.by_name)
    return [name for name in file_catalog.by_name if name in running] + [n for n in running
                                                                          if n not in file_catalog.by_name]
