"""What a definition reads from a customer's state: the attributes, the groups of state fields
they belong to, and which events change each group. An event re-evaluates only the segments that
read a group its type changes (see CHANGED_BY)."""
from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable
from typing import Any, Literal

from stream.model import events as ev
from stream.model.state import CustomerState

# Which state field groups each event type can change. "seen" (first/last seen) changes with any
# applied event; erasure is handled by the engine (every segment is exited).
CHANGED_BY: dict[type, frozenset[str]] = {
    ev.OrderPlaced: frozenset({"placed", "profile", "seen"}),
    ev.OrderPaid: frozenset({"paid", "seen"}),
    ev.OrderCancelled: frozenset({"paid", "seen"}),
    ev.ProductViewed: frozenset({"views", "seen"}),
    ev.CartUpdated: frozenset({"cart", "seen"}),
    ev.CartAbandoned: frozenset({"cart", "seen"}),
    ev.CustomerUpdated: frozenset({"profile", "seen"}),
}


# The group of what never changes for a customer (its id, so its buckets): read once, on creation.
IDENTITY = "identity"


# What an attribute holds, which decides the operators it takes (stream.rules.compiler): "any" is
# a custom field (any JSON scalar), "bucket" the customer's hash bucket.
Kind = Literal["number", "time", "string", "date", "bool", "set", "any", "bucket"]


@dataclass(frozen=True)
class Attr:
    name: str
    kind: Kind
    group: str           # state field group it reads
    # Its value's type follows `kind` (an int for a time, a list for a set, ...): what compares is a
    # stream.rules.predicates.Value, what within/ago read an int, so the getter's own type is open.
    get: Callable[[CustomerState], Any]


def _average(st: CustomerState) -> float | None:
    return st.paid_total / st.paid_count if st.paid_count else None


ATTRS: dict[str, Attr] = {a.name: a for a in (
    Attr("paid_orders", "number", "paid", lambda st: st.paid_count),
    Attr("paid_total", "number", "paid", lambda st: st.paid_total),
    Attr("average_order_value", "number", "paid", _average),
    Attr("first_paid_at", "time", "paid", lambda st: st.first_paid),
    Attr("last_paid_at", "time", "paid", lambda st: st.last_paid),
    Attr("orders_placed", "number", "placed", lambda st: st.orders_placed),
    Attr("last_order_placed_at", "time", "placed", lambda st: st.last_placed),
    Attr("categories_bought", "set", "placed", lambda st: st.categories_bought),
    Attr("cart_updated_at", "time", "cart", lambda st: st.cart_updated_at),
    Attr("cart_value", "number", "cart", lambda st: st.cart_value),
    Attr("last_cart_abandoned_at", "time", "cart", lambda st: st.abandoned_at),
    Attr("last_cart_abandoned_value", "number", "cart", lambda st: st.abandoned_value),
    Attr("last_viewed_at", "time", "views", lambda st: st.last_viewed),
    Attr("first_seen_at", "time", "seen", lambda st: st.first_seen),
    Attr("last_seen_at", "time", "seen", lambda st: st.last_seen),
    Attr("city", "string", "profile", lambda st: st.city),
    Attr("country", "string", "profile", lambda st: st.country),
    Attr("gender", "string", "profile", lambda st: st.gender),
    Attr("birth_date", "date", "profile", lambda st: st.birth_date),
    Attr("email_opt_in", "bool", "profile", lambda st: st.email_opt_in),
)}

# Windowed counts: which events feed a stream, how the item key is read, and the group it changes.
STREAM_EVENTS = {"product_viewed": "views", "order_placed": "placed"}
STREAM_KEYS = ("product", "category")
