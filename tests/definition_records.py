"""Definitions topic records for tests without a broker: one parsed from a definition, and a
feed that gets one record at its first poll (stream.definitions.live.Feed)."""
from __future__ import annotations

import yaml

from stream.definitions.resolution import TopicRecord, parse_record


def record(name: str, definition: dict | None, offset: int = 0) -> TopicRecord:
    value = None if definition is None else yaml.safe_dump(definition).encode()
    parsed = parse_record(name.encode(), value, offset)
    assert parsed is not None
    return parsed


class OneRecordFeed:
    """A definitions topic that gets one record at the first poll."""

    topic = "defs"

    def __init__(self, arriving: TopicRecord):
        self.records: dict[str, TopicRecord] = {}
        self._arriving: TopicRecord | None = arriving

    def poll(self) -> bool:
        if self._arriving is None:
            return False
        self.records[self._arriving.name] = self._arriving
        self._arriving = None
        return True

    def close(self) -> None:
        pass
