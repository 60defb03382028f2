"""Synthetic shoppers: a reproducible event stream with the shape of a marketplace's traffic.

Mostly browsing (views concentrate on a few products per customer, so some become window
shoppers), then carts and abandonment, orders with their payments and some cancellations.
Customers are drawn with a skew: a few are very active, most come back rarely.

shopper_events() is the fixed-size workload of the benchmark and the tests; shop_records() is the
endless, session-shaped stream behind `segments produce` and the demo.
"""
from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any, NamedTuple

import msgspec

from stream.model.time import DAY, HOUR, MINUTE, SECOND, format_rfc3339, parse_rfc3339

CATEGORIES = ("phones", "laptops", "kitchen", "toys", "books", "shoes", "beauty", "garden", "sport", "grocery")
START = parse_rfc3339("2025-01-01T00:00:00Z")


def shopper_events(customers: int, events: int, seed: int = 7, span_days: int = 90,
                   mix: tuple[float, float, float] = (0.80, 0.15, 0.05)) -> Iterator[bytes]:
    """`events` JSON lines over `customers` customers, `span_days` of stream time, in time order
    (payments follow their orders by up to 10 minutes, cancellations by up to 3 days).
    `mix` is the share of (views, orders+payments, carts)."""
    rng = random.Random(seed)
    step = span_days * DAY // max(events, 1)
    views, orders, _carts = mix
    order_cut, cart_cut = views, views + orders
    n = 0
    t = START
    later: list[tuple[int, int, bytes]] = []     # payments and cancellations, due a little later
    while n < events:
        t += rng.randint(0, 2 * step)
        while later and later[0][0] <= t:
            yield heapq.heappop(later)[2]
        # skew: squaring a uniform draw makes low customer numbers far more frequent
        cid = f"c{int(rng.random() ** 2 * customers)}"
        at = format_rfc3339(t)
        roll = rng.random()
        if roll < order_cut:
            product = _product_for(cid, rng)
            category = product_category(product)
            yield (f'{{"type":"product_viewed","event_id":"v{n}","customer_id":"{cid}","occurred_at":"{at}",'
                   f'"product_id":"{product}","category":"{category}"}}').encode()
            n += 1
        elif roll < cart_cut:
            # an order and its payment count as two events of the orders share
            product = _product_for(cid, rng)
            price = rng.choice((990, 4990, 12990, 45990, 159990))
            qty = rng.randint(1, 3)
            order = f"o{n}"
            category = product_category(product)
            yield (f'{{"type":"order_placed","event_id":"op{n}","customer_id":"{cid}","occurred_at":"{at}",'
                   f'"order_id":"{order}","total":{price * qty},"currency":"KZT","items":[{{"product_id":"{product}",'
                   f'"quantity":{qty},"price":{price},"category":"{category}"}}]}}').encode()
            paid = t + rng.randint(1, 600) * SECOND
            heapq.heappush(later, (paid, n, (
                f'{{"type":"order_paid","event_id":"pp{n}","customer_id":"{cid}","occurred_at":"{format_rfc3339(paid)}",'
                f'"order_id":"{order}","amount":{price * qty}}}').encode()))
            n += 2
            if rng.random() < 0.05 and n < events:
                cancelled = paid + rng.randint(1, 3 * 86400) * SECOND
                heapq.heappush(later, (cancelled, n, (
                    f'{{"type":"order_cancelled","event_id":"oc{n}","customer_id":"{cid}",'
                    f'"occurred_at":"{format_rfc3339(cancelled)}","order_id":"{order}"}}').encode()))
                n += 1
        else:
            cart = f"k{cid}"
            value = rng.choice((990, 4990, 12990, 45990))
            if rng.random() < 0.6:
                yield (f'{{"type":"cart_updated","event_id":"cu{n}","customer_id":"{cid}","occurred_at":"{at}",'
                       f'"cart_id":"{cart}","value":{value},"items":[]}}').encode()
            else:
                yield (f'{{"type":"cart_abandoned","event_id":"ca{n}","customer_id":"{cid}","occurred_at":"{at}",'
                       f'"cart_id":"{cart}","value":{value}}}').encode()
            n += 1
    for _, _, line in sorted(later):
        yield line


def _product_for(customer_id: str, rng: random.Random) -> str:
    """Each customer keeps coming back to the same handful of products (that is what makes window
    shoppers), with an occasional look at anything in a 50k catalogue."""
    if rng.random() < 0.7:
        return f"p{(hash_small(customer_id) + rng.randint(0, 4)) % 50_000}"
    return f"p{rng.randint(0, 49_999)}"


def hash_small(text: str) -> int:
    """A stable string hash (Python's own hash() changes per process), good enough for spreading."""
    h = 2166136261
    for ch in text.encode():
        h = ((h ^ ch) * 16777619) & 0xFFFFFFFF
    return h


# -- shop sessions: the generator behind `segments produce` and `segments demo` ---------------------
#
# A small discrete-event simulation of a shop's customers. Each customer comes back now and then
# (a few very often, most rarely) for a browsing session: several views in a row of the same few
# products, sometimes a cart that is updated and then abandoned or ordered; orders are followed by
# their payment, a few are cancelled (also after payment). Customers fill in and change their
# profile, some stop coming (churn) and a rare one asks to be erased; newcomers with fresh ids take
# the place of those who left. On top of that come Kafka's redeliveries (the same record twice)
# and a small share of bad messages (not JSON, wrong schema, unknown type).
#
# Everything drawn comes from random.Random seeded by `seed`: the same arguments give the same
# bytes. With a `clock`, each record's `occurred_at` is the clock's reading when the record is
# taken from the generator (live traffic at the wall clock's pace); otherwise it is the simulated
# time, from `start` (START unless said otherwise: the demo starts it at the wall clock and plays it
# faster, pacing each record by its `at`).

_encode = msgspec.json.Encoder().encode

# (city, country, weight)
_CITIES = (("Almaty", "KZ", 30), ("Astana", "KZ", 20), ("Shymkent", "KZ", 9), ("Karaganda", "KZ", 6),
           ("Aktobe", "KZ", 5), ("Tashkent", "UZ", 8), ("Bishkek", "KG", 5))
_CITY_WEIGHTS = tuple(w for _, _, w in _CITIES)
_TIERS = ("bronze", "silver", "gold", "platinum")
_TIER_AT = {3: "silver", 8: "gold", 15: "platinum"}          # paid orders -> custom.tier upgrade
# Price range per category (KZT), indexed like CATEGORIES.
_PRICES = ((59_990, 459_990), (199_990, 899_990), (2_990, 59_990), (1_990, 19_990), (990, 7_990),
           (9_990, 59_990), (1_990, 24_990), (2_990, 39_990), (4_990, 99_990), (290, 4_990))
_CATALOGUE = 50_000

# Per returning visit; per order.
_ERASE = 0.002
_PAID = 0.92
_CANCEL_PAID = 0.04
_CANCEL_UNPAID = 0.6

_VISIT, _EMIT, _ARRIVE = 0, 1, 2


class ShopRecord(NamedTuple):
    key: bytes | None        # the customer id: what the record is partitioned by
    value: bytes
    kind: str                # "event", "redelivery" (an earlier record again) or "bad"
    at: int                  # the simulated time it is sent at (microseconds), whatever `occurred_at` says


class _Shopper:
    __slots__ = ("cid", "favourites", "gap", "churn", "visits", "paid", "carts", "orders",
                 "city", "country", "erased")

    def __init__(self, cid: str, rng: random.Random):
        self.cid = cid
        self.favourites = [f"p{rng.randrange(_CATALOGUE)}" for _ in range(rng.randint(2, 6))]
        # Mean days between visits, log-uniform from 8 hours to 40 days: a few very active
        # customers make much of the traffic, most come back rarely.
        self.gap = math.exp(rng.uniform(math.log(1 / 3), math.log(40))) * DAY
        self.churn = rng.uniform(0.01, 0.12)      # chance, after a visit, of never coming back
        self.visits = self.paid = self.carts = self.orders = 0
        self.city: str | None = None
        self.country: str | None = None
        self.erased = False


def product_category(product: str) -> str:
    return CATEGORIES[hash_small(product) % len(CATEGORIES)]


def product_price(product: str) -> int:
    """A product's price, stable across runs: within its category's range, ending in 90."""
    h = hash_small(product)
    low, high = _PRICES[h % len(CATEGORIES)]
    return low + ((h >> 8) % ((high - low) // 1000 + 1)) * 1000


def shop_records(customers: int, seed: int = 7, clock: Callable[[], int] | None = None, *,
                 bad_ratio: float = 0.001, redelivery_ratio: float = 0.002,
                 run: str = "", start: int = START) -> Iterator[ShopRecord]:
    """An endless stream of keyed records from a base of about `customers` customers.

    `clock` (microseconds since the epoch, read once per record) replaces the simulated time in
    `occurred_at`; the records are otherwise the same. `bad_ratio` and `redelivery_ratio` are
    the shares of bad messages and of redeliveries, drawn from a second random stream, so the
    events themselves do not depend on them. `run` prefixes every event id: runs with different
    prefixes do not deduplicate each other's events (the engine drops an event id it has seen).
    `start` is when simulated time begins (the same records, shifted in time).
    """
    if customers < 1:
        raise ValueError("customers must be at least 1")
    rng = random.Random(seed)
    noise = random.Random(f"{seed}/noise")
    heap: list[tuple[int, int, int, Any, Any]] = []
    seq = 0

    def push(t: int, action: int, shopper: Any, payload: Any = None) -> None:
        nonlocal seq
        heapq.heappush(heap, (t, seq, action, shopper, payload))
        seq += 1

    newcomers = customers

    def newcomer(t: int) -> None:
        """Someone left: a new customer arrives within a few days, keeping the base's size."""
        nonlocal newcomers
        push(t + int(rng.expovariate(1 / 3) * DAY) + 1, _ARRIVE, f"c{newcomers}")
        newcomers += 1

    # The base arrives over the first two weeks.
    for i in range(customers):
        push(start + rng.randrange(14 * DAY), _ARRIVE, f"c{i}")

    event_no = bad_no = 0
    redeliveries: list[tuple[int, int, bytes, bytes]] = []    # (due record number, seq, key, value)
    emitted = 0

    while True:
        t, _, action, shopper, payload = heapq.heappop(heap)
        if action == _ARRIVE:
            shopper = _Shopper(shopper, rng)
            action = _VISIT
        if action == _VISIT:
            _visit(shopper, t, rng, push, newcomer)
            continue
        if shopper.erased and payload[0] != "customer_erased":
            continue                 # what was still due for a customer who has been erased
        kind, fields = payload
        while redeliveries and redeliveries[0][0] <= emitted:
            _, _, key, value = heapq.heappop(redeliveries)
            emitted += 1
            yield ShopRecord(key, value, "redelivery", t)
        at = format_rfc3339(t if clock is None else clock())
        key = shopper.cid.encode()
        if bad_ratio > 0 and noise.random() < bad_ratio:
            bad_no += 1
            emitted += 1
            yield ShopRecord(key, _bad_message(noise, shopper.cid, at, f"{run}x{bad_no}"), "bad", t)
        value = _encode({"type": kind, "event_id": f"{run}e{event_no}", "customer_id": shopper.cid,
                         "occurred_at": at, **fields})
        event_no += 1
        emitted += 1
        yield ShopRecord(key, value, "event", t)
        if redelivery_ratio > 0 and noise.random() < redelivery_ratio:
            heapq.heappush(redeliveries, (emitted + noise.randint(0, 40), emitted, key, value))


def _visit(s: _Shopper, t: int, rng: random.Random, push: Callable[..., None],
           newcomer: Callable[[int], None]) -> None:
    """Plan one visit: its events go on the heap at their simulated times."""
    s.visits += 1
    if s.visits == 1:
        if rng.random() < 0.7:
            push(t, _EMIT, s, ("customer_updated", {"attributes": _profile(s, rng)}))
    else:
        if rng.random() < _ERASE:
            s.erased = True
            push(t, _EMIT, s, ("customer_erased", {}))
            newcomer(t)
            return
        if rng.random() < 0.04:
            push(t, _EMIT, s, ("customer_updated", {"attributes": _profile_change(s, rng)}))
    t += rng.randint(1, 30) * SECOND
    session = f"s{s.cid}-{s.visits}"
    # The session looks at one to three products, mostly ones this customer keeps coming back to.
    focus = [rng.choice(s.favourites) if rng.random() < 0.7 else f"p{rng.randrange(_CATALOGUE)}"
             for _ in range(rng.randint(1, 3))]
    views = 1 + min(int(rng.expovariate(1 / 3.5)), 20)
    for _ in range(views):
        product = rng.choice(focus) if rng.random() < 0.85 else f"p{rng.randrange(_CATALOGUE)}"
        push(t, _EMIT, s, ("product_viewed", {"product_id": product, "category": product_category(product),
                                              "session_id": session}))
        t += rng.randint(5, 150) * SECOND
    intent = rng.random()
    if intent < 0.22:                         # a cart, then abandoned or ordered
        s.carts += 1
        cart = f"k{s.cid}-{s.carts}"
        items: list[dict[str, Any]] = []
        for _ in range(rng.randint(1, 3)):
            product = rng.choice(focus)
            for item in items:
                if item["product_id"] == product:
                    item["quantity"] += 1
                    break
            else:
                items.append({"product_id": product, "quantity": 1, "price": product_price(product)})
            push(t, _EMIT, s, ("cart_updated", {"cart_id": cart, "value": _value(items),
                                                "items": [dict(i) for i in items]}))
            t += rng.randint(10, 120) * SECOND
        if rng.random() < 0.55:
            # The shop declares a cart abandoned after some quiet time.
            push(t + rng.randint(30, 90) * MINUTE, _EMIT, s,
                 ("cart_abandoned", {"cart_id": cart, "value": _value(items)}))
        else:
            t = _order(s, t, items, rng, push)
    elif intent < 0.26:                       # buy now, no cart
        product = rng.choice(focus)
        t = _order(s, t, [{"product_id": product, "quantity": 1, "price": product_price(product)}], rng, push)
    if rng.random() < s.churn:
        newcomer(t)                           # this one does not come back
        return
    push(t + max(HOUR, int(rng.expovariate(1 / s.gap))), _VISIT, s)


def _order(s: _Shopper, t: int, items: list[dict[str, Any]], rng: random.Random,
           push: Callable[..., None]) -> int:
    s.orders += 1
    order = f"o{s.cid}-{s.orders}"
    fields: dict[str, Any] = {"order_id": order, "total": _value(items), "currency": "KZT",
                              "items": [{**i, "category": product_category(i["product_id"])} for i in items]}
    if rng.random() < 0.3:                    # a delivery address on the order
        city, country, _ = rng.choices(_CITIES, _CITY_WEIGHTS)[0]
        fields["city"], fields["country"] = city, country
    push(t, _EMIT, s, ("order_placed", fields))
    if rng.random() < _PAID:
        paid = t + rng.randint(5, 600) * SECOND
        push(paid, _EMIT, s, ("order_paid", {"order_id": order, "amount": fields["total"]}))
        if rng.random() < _CANCEL_PAID:
            push(paid + rng.randint(1, 120) * HOUR, _EMIT, s, ("order_cancelled", {"order_id": order}))
        else:
            s.paid += 1
            tier = _TIER_AT.get(s.paid)
            if tier is not None:
                push(paid + 1 * SECOND, _EMIT, s, ("customer_updated", {"attributes": {"custom": {"tier": tier}}}))
        return paid
    if rng.random() < _CANCEL_UNPAID:
        push(t + rng.randint(24, 48) * HOUR, _EMIT, s, ("order_cancelled", {"order_id": order}))
    return t


def _value(items: list[dict[str, Any]]) -> int:
    return sum(i["price"] * i["quantity"] for i in items)


def _profile(s: _Shopper, rng: random.Random) -> dict[str, Any]:
    s.city, s.country, _ = rng.choices(_CITIES, _CITY_WEIGHTS)[0]
    profile: dict[str, Any] = {"city": s.city, "country": s.country}
    if rng.random() < 0.8:
        profile["birth_date"] = f"{rng.randint(1955, 2007)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    if rng.random() < 0.6:
        profile["gender"] = rng.choice(("female", "male"))
    profile["email_opt_in"] = rng.random() < 0.55
    profile["custom"] = {"tier": "bronze", "signup_channel": rng.choice(("web", "app", "store"))}
    return profile


def _profile_change(s: _Shopper, rng: random.Random) -> dict[str, Any]:
    roll = rng.random()
    if roll < 0.35:                            # moved
        s.city, s.country, _ = rng.choices(_CITIES, _CITY_WEIGHTS)[0]
        return {"city": s.city, "country": s.country}
    if roll < 0.65:
        return {"email_opt_in": rng.random() < 0.5}
    if roll < 0.8:
        return {"custom": {"tier": rng.choice(_TIERS), "newsletter_topics": rng.choice(("deals", "new", "none"))}}
    if roll < 0.92:
        return {"birth_date": f"{rng.randint(1955, 2007)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"}
    return {"gender": None}                     # cleared


def _bad_message(rng: random.Random, cid: str, at: str, event_id: str) -> bytes:
    """Not JSON, the wrong schema, or an unknown type: what a consumer must survive."""
    roll = rng.random()
    if roll < 0.34:                           # not JSON
        return rng.choice((
            f'{{"type":"product_viewed","event_id":"{event_id}","customer_id":"{cid}","occurred_at":"{at}",'.encode(),
            b"\xff\xfe" + cid.encode() + b"\x00",
            f"type=order_paid customer={cid} at={at}".encode(),
        ))
    if roll < 0.67:                           # JSON, but not a valid event
        return rng.choice((
            _encode({"type": "order_paid", "event_id": event_id, "customer_id": cid, "occurred_at": at,
                     "order_id": "o?", "amount": "12990"}),
            _encode({"type": "product_viewed", "event_id": event_id, "customer_id": cid,
                     "occurred_at": at.rstrip("Z"), "product_id": "p1", "category": "books"}),
            _encode({"type": "order_placed", "event_id": event_id, "customer_id": cid, "occurred_at": at,
                     "order_id": "o?", "total": -5, "currency": "KZT", "items": []}),
            _encode([{"type": "cart_abandoned", "customer_id": cid}]),
        ))
    return _encode({"type": rng.choice(("wishlist_added", "review_posted", "coupon_redeemed")),
                    "event_id": event_id, "customer_id": cid, "occurred_at": at})
