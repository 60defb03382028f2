"""The input event contract: one msgspec Struct per event type, decoded and validated in one pass.

schemas/*.schema.json publish the same contract as JSON Schema; tests/test_contract.py keeps the two
in step. Unknown extra fields are ignored so producers can evolve without breaking consumers.
"""
from __future__ import annotations

import base64
import datetime as _dt
from typing import Annotated, Any, Union

import msgspec

from .timeutil import EARLIEST, LATEST, to_datetime

# Instants the engine can add a rule's longest duration to and still write in RFC 3339.
_EARLIEST, _LATEST = to_datetime(EARLIEST), to_datetime(LATEST)

# Length bounds, in characters (what msgspec counts; UTF-8 takes up to 4 bytes each). Every string
# the state keeps comes through one of these, so they bound what a customer's state can hold
# (stream.state). Ids: a UUID is 36, a Shopify gid about 40; 128 leaves room for prefixed ids.
MAX_ID_CHARS = 128
MAX_CITY_CHARS = 128            # "Llanfairpwllgwyngyll..." is 58
MAX_PROFILE_CHARS = 64          # country (a name or an ISO code), gender (as the customer gave it)
MAX_CUSTOM_KEYS = 64            # per event; the state keeps at most CUSTOM_KEEP merged (stream.state)
MAX_CUSTOM_KEY_CHARS = 64
MAX_CUSTOM_TEXT_CHARS = 256     # a tier, a referral source, a preferred language: short labels

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_CHARS)]
SessionId = Annotated[str, msgspec.Meta(max_length=MAX_ID_CHARS)]
# An order's shipping address (non-empty when given) and the profile's own (may be empty).
ShipCity = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_CITY_CHARS)]
ShipCountry = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_PROFILE_CHARS)]
City = Annotated[str, msgspec.Meta(max_length=MAX_CITY_CHARS)]
ProfileText = Annotated[str, msgspec.Meta(max_length=MAX_PROFILE_CHARS)]
Amount = Annotated[float, msgspec.Meta(ge=0)]
# A timestamp without an offset is ambiguous across a marketplace's time zones: reject it.
Instant = Annotated[_dt.datetime, msgspec.Meta(tz=True)]
# The length pins it: in Python's re, `$` also matches before a trailing newline ("USD\n").
Currency = Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$", min_length=3, max_length=3)]
# Integers as msgpack (the state's encoding) holds them: a larger one would make the state unwritable.
CustomValue = Union[Annotated[str, msgspec.Meta(max_length=MAX_CUSTOM_TEXT_CHARS)],
                    Annotated[int, msgspec.Meta(ge=-(1 << 63), le=(1 << 63) - 1)], float, bool]
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


class OrderPlaced(Event, tag="order_placed"):
    order_id: Id
    total: Amount
    currency: Currency
    items: list[OrderItem]
    city: ShipCity | None = None
    country: ShipCountry | None = None


class OrderPaid(Event, tag="order_paid"):
    order_id: Id
    amount: Amount


class OrderCancelled(Event, tag="order_cancelled"):
    order_id: Id


class ProductViewed(Event, tag="product_viewed"):
    product_id: Id
    category: Id
    session_id: SessionId | None = None


class CartUpdated(Event, tag="cart_updated"):
    cart_id: Id
    value: Amount
    items: list[Any]


class CartAbandoned(Event, tag="cart_abandoned"):
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


class CustomerUpdated(Event, tag="customer_updated"):
    attributes: Attributes


class CustomerErased(Event, tag="customer_erased"):
    pass


EVENT_TYPES: dict[str, type[Event]] = {
    cls.__struct_config__.tag: cls  # type: ignore[misc]
    for cls in (OrderPlaced, OrderPaid, OrderCancelled, ProductViewed, CartUpdated,
                CartAbandoned, CustomerUpdated, CustomerErased)
}
AnyEvent = Union[tuple(EVENT_TYPES.values())]  # type: ignore[valid-type]


class DeadLetter(msgspec.Struct, frozen=True, gc=False):
    """A message that could not become an event: why, and the original bytes, untouched."""
    reason: str
    raw: bytes

    def to_json_line(self, **where: Any) -> bytes:
        """One JSON line: the reason, where it came from, and the original bytes (text when they are
        UTF-8, base64 otherwise, so nothing is lost either way)."""
        record: dict[str, Any] = {"reason": self.reason, **where}
        try:
            record["raw"] = self.raw.decode("utf-8")
        except UnicodeDecodeError:
            record["raw_base64"] = base64.b64encode(self.raw).decode("ascii")
        return msgspec.json.encode(record) + b"\n"


class Decoder:
    """bytes -> Event | DeadLetter. Never raises for bad input: a partition must keep moving."""

    def __init__(self, max_bytes: int = 1 << 20):
        self._decode = msgspec.json.Decoder(AnyEvent).decode
        self.max_bytes = max_bytes

    def decode(self, raw: bytes) -> Event | DeadLetter:
        if type(raw) is not bytes:
            raw = bytes(raw)         # a memoryview or bytearray: dead letters keep an immutable copy
        if len(raw) > self.max_bytes:
            return DeadLetter(f"message of {len(raw)} bytes is over the {self.max_bytes}-byte limit", raw)
        if not raw.isascii():
            # JSON text is UTF-8 (RFC 8259); msgspec would skip bad bytes inside ignored fields.
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                return DeadLetter(f"not UTF-8: {exc.reason} at byte {exc.start}", raw)
        try:
            event = self._decode(raw)
        except msgspec.ValidationError as exc:
            return DeadLetter(_explain(str(exc)), raw)
        except msgspec.DecodeError as exc:
            return DeadLetter(f"not JSON: {exc}", raw)
        if not _EARLIEST <= event.occurred_at < _LATEST:
            return DeadLetter(f"invalid event: occurred_at {event.occurred_at.isoformat()} is outside "
                              f"1900-01-01 .. 9000-01-01 UTC - at `$.occurred_at`", raw)
        return event


def _explain(message: str) -> str:
    """msgspec's messages name the JSON path already; only the tag errors need translating."""
    if message.startswith("Object missing required field `type`"):
        return "invalid event: no `type` field"
    if message.startswith("Invalid value") and message.endswith("at `$.type`"):
        return f"unknown event type: {message.split(' - ')[0][len('Invalid value '):]}; known types: {', '.join(EVENT_TYPES)}"
    if message.startswith("Expected `object`") and "at `$" not in message:
        return f"invalid event: {message} (an event is a JSON object)"
    return f"invalid event: {message}"
