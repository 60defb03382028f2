"""bytes -> Event | DeadLetter: the decoding every input message goes through, compiled (setup.py),
since both runtimes and `segments replay` run it once per message. The checks beyond msgspec's own
(size, UTF-8, nesting depth, the time range, a key named twice) cost less than the parse they
guard; only a message that may hold a repeated key is parsed a second time (see _values_held).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cython
import msgspec

from stream.model.events import (EVENT_TYPES, MAX_DEPTH, AnyEvent, Attributes, CartUpdated, CustomerUpdated, DeadLetter,
                                 Event, OrderItem, OrderPlaced, oversized)
from stream.model.json_guards import Pairs, keys_in, last, parse_pairs, repeat_in, too_deep
from stream.model.json_scan import scan
from stream.model.time import EARLIEST, LATEST, to_datetime

# Instants the engine can add a rule's longest duration to and still write in RFC 3339.
_EARLIEST, _LATEST = to_datetime(EARLIEST), to_datetime(LATEST)


@cython.final
@cython.cclass
class Decoder:
    """bytes -> Event | DeadLetter. Never raises for bad input: a partition must keep moving."""
    max_bytes: int = cython.declare(cython.Py_ssize_t, visibility="readonly")
    _decode: Callable[[bytes], Event] = cython.declare(object, visibility="public")    # (a test swaps the parser)

    def __init__(self, max_bytes: int = 1 << 20):
        self._decode = msgspec.json.Decoder(AnyEvent).decode
        self.max_bytes = max_bytes

    def decode(self, raw: bytes | bytearray | memoryview) -> Event | DeadLetter:
        if type(raw) is not bytes:
            raw = bytes(raw)         # a memoryview or bytearray: dead letters keep an immutable copy
        if len(raw) > self.max_bytes:
            return oversized(raw, len(raw), self.max_bytes)
        if not raw.isascii():
            # JSON text is UTF-8 (RFC 8259); msgspec would skip bad bytes inside ignored fields.
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                return DeadLetter(f"not UTF-8: {exc.reason} at byte {exc.start}", raw)
        opens, keys, escaped = scan(raw)
        if opens > MAX_DEPTH and too_deep(raw, MAX_DEPTH):   # the count of brackets settles most
            return DeadLetter(f"invalid event: containers nested deeper than {MAX_DEPTH} levels", raw)
        try:
            event = self._decode(raw)
        except msgspec.ValidationError as exc:
            return DeadLetter(_repeated_type(raw) or _explain(str(exc)), raw)
        except msgspec.DecodeError as exc:
            return DeadLetter(f"not JSON: {exc}", raw)
        except RecursionError:
            # Unbalanced brackets can pass the depth check; the parser still stops at the stack's end.
            return DeadLetter("not JSON: nested too deep to parse", raw)
        except Exception as exc:     # whatever else a parser can raise: a partition must keep moving
            return DeadLetter(f"undecodable: {type(exc).__name__}: {exc}", raw)
        if not _EARLIEST <= event.occurred_at < _LATEST:
            return DeadLetter(f"invalid event: occurred_at {event.occurred_at.isoformat()} is outside "
                              f"1900-01-01 .. 9000-01-01 UTC - at `$.occurred_at`", raw)
        if escaped or keys != _values_held(event):
            repeated = _repeated_key(raw, event)     # a key may repeat (see _values_held)
            if repeated is not None:
                return DeadLetter(repeated, raw)
        return event


# ---- duplicate keys ----------------------------------------------------------------------------------
# {"type": "order_paid", ..., "type": "customer_erased"} is ambiguous: msgspec (and most parsers) take
# the last value, others the first. Such a message is a dead letter. Parsing every message twice to
# find out would cost several times the decoding, so the bytes are only counted first: a message
# with exactly as many keys as the decoded event holds values has no key twice. Only the others
# (unknown fields, escapes, nulls, or a repeated key) are parsed again, by Python's json.

@cython.cfunc
def _values_held(event: Event) -> cython.Py_ssize_t:
    """How many keys the event's values were read from: one per field it holds (not null).
    Decoder.decode compares it with the keys in the bytes (stream.model.json_scan): without
    escapes every `":` ends a key, and with whitespace taken out a `" :` counts too (inside a
    string as well, which can only make the count higher: it sends a message to the exact check,
    never past it). Each value held came from at least one key, so equal counts leave no key over
    for a repeat."""
    cls = type(event)
    held: cython.Py_ssize_t = _REQUIRED[cls]
    for name in _OPTIONAL[cls]:
        if getattr(event, name) is not None:
            held += 1
    if type(event) is OrderPlaced:          # (type(event), not cls: the checker narrows on it)
        for item in event.items:
            held += 3 if item.category is None else 4
    elif type(event) is CartUpdated:
        if event.items:
            held += keys_in(event.items)
    elif type(event) is CustomerUpdated:
        attributes, unset = event.attributes, msgspec.UNSET
        for name in _ATTRIBUTE_FIELDS:
            value = getattr(attributes, name)
            if value is not unset and value is not None:
                held += 1
        if attributes.custom:
            held += len(attributes.custom)
    return held


def _repeated_key(raw: bytes, event: Event) -> str | None:
    """The dead-letter reason if an object the contract reads names one of the contract's keys
    twice (any key, in `custom`), else None. Only called on what msgspec parsed, within MAX_DEPTH."""
    try:
        doc = parse_pairs(raw)
    except Exception as exc:
        return f"undecodable: duplicate keys cannot be ruled out ({type(exc).__name__}: {exc})"
    found = repeat_in(doc, _TOP_NAMES[type(event)], "$")
    if found is None and type(event) in (OrderPlaced, CustomerUpdated):
        inner = last(doc, "items" if type(event) is OrderPlaced else "attributes")
        if type(event) is OrderPlaced:
            for i, item in enumerate(inner):
                found = found or repeat_in(item, _ITEM_NAMES, f"$.items[{i}]")
        else:
            found = repeat_in(inner, _ATTRIBUTE_NAMES, "$.attributes")
            custom = last(inner, "custom")
            if found is None and isinstance(custom, Pairs):
                found = repeat_in(custom, None, "$.attributes.custom")
    if found is None:
        return None
    return _duplicate(*found)


def _repeated_type(raw: bytes) -> str | None:
    """Why a message msgspec refused is refused, if it is because it names `type` twice: msgspec
    then says that the second value is invalid, which hides the cause."""
    if raw.count(b'"type"') < 2 and b"\\" not in raw:
        return None
    try:
        doc = parse_pairs(raw)
    except Exception:
        return None          # not JSON, or too deep: msgspec's reason stands
    if isinstance(doc, Pairs) and repeat_in(doc, _TYPE, "$") is not None:
        return _duplicate("type", "$")
    return None


def _duplicate(key: str, path: str) -> str:
    shown = key if len(key) <= 64 else key[:64] + "..."
    return f"invalid event: duplicate key `{shown}` at `{path}` (an object names it twice, so its value is ambiguous)"


def _explain(message: str) -> str:
    """msgspec's messages name the JSON path already; only the tag errors need translating."""
    if message.startswith("Object missing required field `type`"):
        return "invalid event: no `type` field"
    if message.startswith("Invalid value") and message.endswith("at `$.type`"):
        given = message.split(" - ")[0][len("Invalid value "):]
        return f"unknown event type: {given}; known types: {', '.join(EVENT_TYPES)}"
    if message.startswith("Expected `object`") and "at `$" not in message:
        return f"invalid event: {message} (an event is a JSON object)"
    return f"invalid event: {message}"


def _names(cls: Any) -> frozenset[str]:     # (a Struct type: Cython takes `type` for builtin types only)
    return frozenset(f.encode_name for f in msgspec.structs.fields(cls))


# Per event type: how many keys it always has (its required fields and `type`), and the fields
# that may be absent or null. Free-form values nest at most MAX_DEPTH deep: _keys_in stays shallow.
_REQUIRED = {cls: 1 + sum(f.required for f in msgspec.structs.fields(cls)) for cls in EVENT_TYPES.values()}
_OPTIONAL = {cls: tuple(f.name for f in msgspec.structs.fields(cls) if not f.required) for cls in EVENT_TYPES.values()}
_ATTRIBUTE_FIELDS = tuple(f.name for f in msgspec.structs.fields(Attributes))
_TOP_NAMES = {cls: _names(cls) | {"type"} for cls in EVENT_TYPES.values()}
_TYPE = frozenset({"type"})
_ITEM_NAMES = _names(OrderItem)
_ATTRIBUTE_NAMES = _names(Attributes)
