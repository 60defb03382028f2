"""The input event contract: one msgspec Struct per event type, decoded and validated in one pass.

schemas/*.schema.json publish the same contract as JSON Schema; tests/model/test_contract.py keeps the two
in step. Unknown extra fields are ignored so producers can evolve without breaking consumers.
"""
from __future__ import annotations

import base64
import datetime as _dt
from typing import Annotated, Any

import msgspec

from stream.model.json_guards import Pairs, keys_in, last, parse_pairs, repeat_in, too_deep
from stream.model.json_scan import scan
from stream.model.time import EARLIEST, LATEST, to_datetime

# Instants the engine can add a rule's longest duration to and still write in RFC 3339.
_EARLIEST, _LATEST = to_datetime(EARLIEST), to_datetime(LATEST)

# Length bounds, in characters (what msgspec counts; UTF-8 takes up to 4 bytes each). Every string
# the state keeps comes through one of these, so they bound what a customer's state can hold
# (stream.model.state). Ids: a UUID is 36, a Shopify gid about 40; 128 leaves room for prefixed ids.
MAX_ID_CHARS = 128
MAX_CITY_CHARS = 128            # "Llanfairpwllgwyngyll..." is 58
MAX_PROFILE_CHARS = 64          # country (a name or an ISO code), gender (as the customer gave it)
MAX_CUSTOM_KEYS = 64            # per event; the state keeps at most CUSTOM_KEEP merged (stream.model.state)
MAX_CUSTOM_KEY_CHARS = 64
MAX_CUSTOM_TEXT_CHARS = 256     # a tier, a referral source, a preferred language: short labels

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_CHARS)]
SessionId = Annotated[str, msgspec.Meta(max_length=MAX_ID_CHARS)]
# An order's shipping address (non-empty when given) and the profile's own (may be empty).
ShipCity = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_CITY_CHARS)]
ShipCountry = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_PROFILE_CHARS)]
City = Annotated[str, msgspec.Meta(max_length=MAX_CITY_CHARS)]
ProfileText = Annotated[str, msgspec.Meta(max_length=MAX_PROFILE_CHARS)]
# Far above any real order in any currency, and where a float still holds whole units exactly
# (2**53 is about 9e15). It keeps every sum finite: a customer's paid_total is at most this times
# the number of its payments, so it could not reach float's 1.8e308 within 2**63 payments. msgspec
# rejects NaN and Infinity (not JSON) and numbers beyond float's range on its own.
MAX_AMOUNT = 1e15
Amount = Annotated[float, msgspec.Meta(ge=0, le=MAX_AMOUNT)]
# Containers nested deeper than this are refused before parsing: a real event nests 3 deep
# (event > items > item), and parsers recurse per level, so a message nested 100k deep would
# otherwise exhaust the stack, at a depth that differs between runtimes and call sites.
MAX_DEPTH = 64
# A timestamp without an offset is ambiguous across a marketplace's time zones: reject it.
Instant = Annotated[_dt.datetime, msgspec.Meta(tz=True)]
# The length pins it: in Python's re, `$` also matches before a trailing newline ("USD\n").
Currency = Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$", min_length=3, max_length=3)]
# Integers as msgpack (the state's encoding) holds them: a larger one would make the state unwritable.
CustomValue = (Annotated[str, msgspec.Meta(max_length=MAX_CUSTOM_TEXT_CHARS)]
               | Annotated[int, msgspec.Meta(ge=-(1 << 63), le=(1 << 63) - 1)] | float | bool)
Custom = Annotated[dict[Annotated[str, msgspec.Meta(max_length=MAX_CUSTOM_KEY_CHARS)], CustomValue],
                   msgspec.Meta(max_length=MAX_CUSTOM_KEYS)]


class Event(msgspec.Struct, tag_field="type", frozen=True, gc=False):
    event_id: Id
    customer_id: Id
    occurred_at: Instant


class OrderItem(msgspec.Struct, frozen=True, gc=False):
    product_id: Id
    quantity: Annotated[int, msgspec.Meta(ge=1)]
    price: Amount
    category: Id | None = None


class OrderPlaced(Event, tag="order_placed", frozen=True):
    order_id: Id
    total: Amount
    currency: Currency
    items: list[OrderItem]
    city: ShipCity | None = None
    country: ShipCountry | None = None


class OrderPaid(Event, tag="order_paid", frozen=True):
    order_id: Id
    amount: Amount


class OrderCancelled(Event, tag="order_cancelled", frozen=True):
    order_id: Id


class ProductViewed(Event, tag="product_viewed", frozen=True):
    product_id: Id
    category: Id
    session_id: SessionId | None = None


class CartUpdated(Event, tag="cart_updated", frozen=True):
    cart_id: Id
    value: Amount
    items: list[Any]


class CartAbandoned(Event, tag="cart_abandoned", frozen=True):
    cart_id: Id
    value: Amount


class Attributes(msgspec.Struct, frozen=True, gc=False):
    # UNSET (absent) leaves a profile field as it is; an explicit null clears it.
    city: City | None | msgspec.UnsetType = msgspec.UNSET
    country: ProfileText | None | msgspec.UnsetType = msgspec.UNSET
    birth_date: _dt.date | None | msgspec.UnsetType = msgspec.UNSET
    gender: ProfileText | None | msgspec.UnsetType = msgspec.UNSET
    email_opt_in: bool | None | msgspec.UnsetType = msgspec.UNSET
    custom: Custom | None | msgspec.UnsetType = msgspec.UNSET


class CustomerUpdated(Event, tag="customer_updated", frozen=True):
    attributes: Attributes


class CustomerErased(Event, tag="customer_erased", frozen=True):
    pass


# What the decoder reads: the tag (`type`) picks the Struct.
AnyEvent = (OrderPlaced | OrderPaid | OrderCancelled | ProductViewed | CartUpdated | CartAbandoned | CustomerUpdated
            | CustomerErased)
EVENT_TYPES: dict[str, type[Event]] = {
    str(cls.__struct_config__.tag): cls for cls in (OrderPlaced, OrderPaid, OrderCancelled, ProductViewed, CartUpdated,
                                                     CartAbandoned, CustomerUpdated, CustomerErased)
}


class DeadLetter(msgspec.Struct, frozen=True, gc=False):
    """A message that could not become an event: why, and the original bytes, untouched (or, when
    `size` is set, only their first bytes: the message was too large to be held whole)."""
    reason: str
    raw: bytes
    size: int | None = None

    def to_json_line(self, **where: str | int) -> bytes:
        """One JSON line: the reason, where it came from, and the original bytes (text when they are
        UTF-8, base64 otherwise, so nothing is lost either way); a prefix adds `bytes` (the whole
        message's size) and `truncated: true`."""
        record: dict[str, str | int | bool] = {"reason": self.reason, **where}
        raw = self.raw
        if self.size is not None:
            raw = _whole_characters(raw)
            record["bytes"], record["truncated"] = self.size, True
        try:
            record["raw"] = raw.decode("utf-8")
        except UnicodeDecodeError:
            record["raw_base64"] = base64.b64encode(raw).decode("ascii")
        return msgspec.json.encode(record) + b"\n"


def _whole_characters(prefix: bytes) -> bytes:
    """A prefix cut inside a UTF-8 character loses that character's head, so the rest still reads
    as text."""
    try:
        prefix.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.reason == "unexpected end of data":
            return prefix[:exc.start]
    return prefix


def oversized(prefix: bytes, size: int, limit: int) -> DeadLetter:
    """The dead letter of a message over the size limit, of which only `prefix` is kept."""
    return DeadLetter(f"message of {size} bytes is over the {limit}-byte limit", prefix,
                      None if len(prefix) == size else size)


class Decoder:
    """bytes -> Event | DeadLetter. Never raises for bad input: a partition must keep moving."""

    def __init__(self, max_bytes: int = 1 << 20):
        self._decode = msgspec.json.Decoder(AnyEvent).decode
        self.max_bytes = max_bytes

    def decode(self, raw: bytes) -> Event | DeadLetter:
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

def _values_held(event: Event) -> int:
    """How many keys the event's values were read from: one per field it holds (not null).
    Decoder.decode compares it with the keys in the bytes (stream.model.json_scan): without
    escapes every `":` ends a key, and with whitespace taken out a `" :` counts too (inside a
    string as well, which can only make the count higher: it sends a message to the exact check,
    never past it). Each value held came from at least one key, so equal counts leave no key over
    for a repeat."""
    cls = type(event)
    held = _REQUIRED[cls]
    for name in _OPTIONAL[cls]:
        if getattr(event, name) is not None:
            held += 1
    if type(event) is OrderPlaced:
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


def _names(cls: type) -> frozenset[str]:
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
