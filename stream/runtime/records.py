"""The records the runtimes publish besides the changes and the state: their shape (as both
runtimes' producers take it) and the membership record."""
from __future__ import annotations

import msgspec

from stream.model.state import CustomerState
from stream.model.time import format_rfc3339

Headers = list[tuple[str, str | bytes | None]]
# (topic, key, value, partition, headers): partition None lets the producer's partitioner pick it.
Record = tuple[str, bytes | None, bytes | None, int | None, Headers | None]
_encode_json = msgspec.json.Encoder().encode


def membership(customer_id: str, state: CustomerState | None, at: str) -> bytes | None:
    """The customer's membership record: current segments with member-since instants, as of `at`
    (the partition's stream time, formatted once per batch); None (a tombstone) once erased, so
    the compacted topic forgets the customer too."""
    if state is None:
        return None
    return _encode_json({"customer_id": customer_id, "at": at,
                         "segments": {name: format_rfc3339(since) for name, since in sorted(state.member.items())}})

