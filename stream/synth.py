"""Synthetic shoppers: a reproducible event stream with the shape of a marketplace's traffic.

Mostly browsing (views concentrate on a few products per customer, so some become window
shoppers), then carts and abandonment, orders with their payments and some cancellations.
Customers are drawn with a skew: a few are very active, most come back rarely.
"""
from __future__ import annotations

import heapq
import random
from typing import Iterator

from .timeutil import DAY, SECOND, format_rfc3339, parse_rfc3339

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
            yield (f'{{"type":"product_viewed","event_id":"v{n}","customer_id":"{cid}","occurred_at":"{at}",'
                   f'"product_id":"{product}","category":"{CATEGORIES[hash_small(product) % len(CATEGORIES)]}"}}').encode()
            n += 1
        elif roll < cart_cut:
            # an order and its payment count as two events of the orders share
            product = _product_for(cid, rng)
            price = rng.choice((990, 4990, 12990, 45990, 159990))
            qty = rng.randint(1, 3)
            order = f"o{n}"
            yield (f'{{"type":"order_placed","event_id":"op{n}","customer_id":"{cid}","occurred_at":"{at}",'
                   f'"order_id":"{order}","total":{price * qty},"currency":"KZT","items":[{{"product_id":"{product}",'
                   f'"quantity":{qty},"price":{price},"category":"{CATEGORIES[hash_small(product) % len(CATEGORIES)]}"}}]}}').encode()
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
