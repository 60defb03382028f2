"""The output contract: one segment-change event per move of one customer into or out of a segment."""
from __future__ import annotations

import hashlib
from typing import Literal

import msgspec

from stream.model.time import format_rfc3339


class SegmentChange(msgspec.Struct, frozen=True, gc=False):
    change_id: str
    customer_id: str
    segment: str
    change: Literal["entered", "exited"]
    at: str
    cause: Literal["event", "time", "definition"]
    event_id: str | None
    definition_version: int


def make_change(customer_id: str, segment: str, entered: bool, at: int,
                event_id: str | None, definition_version: int, redefined: bool = False) -> SegmentChange:
    """The id hashes everything that makes the transition what it is, so a worker that retries after
    a crash republishes the very same id and consumers can drop the duplicate. `redefined`: the move
    comes from a definition change (cause "definition", no event)."""
    change: Literal["entered", "exited"] = "entered" if entered else "exited"
    # msgpack frames each field with its length: no two different tuples share an encoding. The
    # cause joins the key only for definition moves, so event and time moves keep their ids.
    fields = (customer_id, segment, change, at, event_id, definition_version)
    key = _pack((*fields, "definition") if redefined else fields)
    change_id = hashlib.blake2b(key, digest_size=16).hexdigest()
    cause: Literal["event", "time", "definition"] = (
        "definition" if redefined else "event" if event_id is not None else "time")
    return SegmentChange(change_id, customer_id, segment, change, format_rfc3339(at),
                         cause, event_id, definition_version)


encode_change = msgspec.json.Encoder().encode
_pack = msgspec.msgpack.Encoder().encode
