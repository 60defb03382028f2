"""The input event contract: one msgspec Struct per event type, decoded and validated in one pass
(stream.model.decoding).

schemas/*.schema.json publish the same contract as JSON Schema; tests/model/test_contract.py keeps the two
in step. Unknown extra fields are ignored so producers can evolve without breaking consumers.
"""
from __future__ import annotations

import base64
import datetime as _dt
from typing import Annotated, Any

import msgspec

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
