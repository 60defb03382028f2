"""Checks over raw JSON bytes that a schema-driven decoder cannot make: how deep containers nest,
before anything parses them, and an exact parse that keeps every (key, value) pair of an object, so
a key named twice can be found. They know nothing of the event contract (stream.model.events)."""
from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

# ---- nesting depth ---------------------------------------------------------------------------------

# A string, escapes and all; one left open runs to the end. Each position matches at most one way, so
# the scan is linear whatever the bytes (no string start can fail and be retried further on).
_STRING = re.compile(rb'"[^"\\]*(?:\\.?[^"\\]*)*(?:"|\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_DEPTH_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}.__getitem__


def too_deep(raw: bytes, limit: int) -> bool:
    """Whether containers nest deeper than `limit`; only called on a message with more opening
    brackets than that (fewer cannot nest so deep): strings taken out, then the deepest running
    count of the brackets left, in C loops (no recursion; a 1 MiB message takes milliseconds)."""
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_DEPTH_STEP, brackets)), default=0) > limit


# ---- keys, repeats kept ----------------------------------------------------------------------------

def keys_in(value: object) -> int:
    """The keys of the objects in a free-form value (as parsed: a repeated key counts once)."""
    if type(value) is dict:
        return len(value) + sum(keys_in(v) for v in value.values())
    if type(value) is list:
        return sum(keys_in(v) for v in value)
    return 0


class Pairs(list[tuple[str, Any]]):
    """A JSON object as parsed for the exact check: its (key, value) pairs, repeats kept."""


def parse_pairs(raw: bytes) -> Any:
    """`raw` parsed by Python's json with every object as Pairs. Numbers are not converted (Python
    refuses integers of over 4300 digits, which msgspec skips in an ignored field). Raises what
    json.loads raises."""
    return json.loads(raw, object_pairs_hook=Pairs, parse_int=_zero, parse_float=_zero, strict=False)


def repeat_in(pairs: Pairs, names: frozenset[str] | None, path: str) -> tuple[str, str] | None:
    """The first key of `names` (None: any key) that `pairs` holds twice, with the object's path."""
    seen: set[str] = set()
    for key, _ in pairs:
        if names is None or key in names:
            if key in seen:
                return key, path
            seen.add(key)
    return None


def last(pairs: Pairs, name: str) -> Any:
    """A field's value as msgspec took it: the last one (a repeated field is caught before)."""
    return next((value for key, value in reversed(pairs) if key == name), None)


def _zero(_: str) -> int:
    return 0
