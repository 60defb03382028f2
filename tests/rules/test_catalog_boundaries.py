"""Every segment of the default catalog at and around its boundaries: counts and sums on either side
of each threshold, and time flips exactly at the flip instant, 1 microsecond before and after.

README semantics: "within N" means now - t < N; "N ago or more" means now - t >= N; a move caused
by time alone happens exactly at the flip instant, with that instant as `at` and cause `time`.
"""
from __future__ import annotations

import pytest

from tests.helpers import (DAY, HOUR, cart_abandoned, cart_updated, instant, iso, order_cancelled,
                     order_placed, paid_orders, product_viewed, run, segments_of)

CID = "c-1"
# A base instant with a microsecond part, so every boundary is checked to the microsecond.
P = instant("2025-03-01T10:00:00.123456Z")
US = 1


def state_at(events, until) -> set[str]:
    return segments_of(run(events, until), CID)


# ------------------------------------------------------------------------------------------------
# counts and sums (membership right after the last payment)

COUNTS = [
    # amounts paid (one order each, an hour apart), segments the customer is in afterwards
    ([100.0], {"new-customer"}),
    ([0.0], {"new-customer"}),                                   # a free order is still a paid order
    ([100.0, 100.0], {"repeat-buyer"}),
    ([100.0] * 4, {"repeat-buyer"}),
    ([100.0] * 5, {"repeat-buyer", "loyal"}),
    ([10000.0] * 4 + [9999.99], {"repeat-buyer", "loyal"}),      # 49999.99: not a champion
    ([10000.0] * 5, {"repeat-buyer", "loyal", "champion"}),      # exactly 50000
    ([20000.0] * 4, {"repeat-buyer"}),                           # 80000 but only 4 orders
    ([99999.99], {"new-customer"}),
    ([100000.0], {"new-customer", "high-value"}),
    ([50000.0, 49999.99], {"repeat-buyer"}),                     # 99999.99 in two orders
    ([50000.0, 50000.0], {"repeat-buyer", "high-value"}),        # 100000 in two orders
    ([25000.0, 25000.0, 25000.0, 25000.0, 0.01], {"repeat-buyer", "loyal", "champion", "high-value"}),
]


@pytest.mark.parametrize("amounts, expected", COUNTS, ids=[f"{len(a)}x-total-{sum(a):.2f}" for a, _ in COUNTS])
def test_counts_and_totals(amounts, expected):
    times = [P + i * HOUR for i in range(len(amounts))]
    changes = run(paid_orders(CID, times, amounts))
    assert segments_of(changes, CID) == expected
    # every move so far was caused by a payment event, at that payment's instant
    assert all(c.cause == "event" and c.event_id is not None for c in changes)


def test_second_order_moves_new_customer_to_repeat_buyer_at_that_payment():
    events = paid_orders(CID, [P, P + DAY])
    changes = run(events)
    second = events[1]
    assert [(c.segment, c.change, c.at, c.event_id) for c in changes] == [
        ("new-customer", "entered", iso(P), events[0].event_id),
        ("new-customer", "exited", iso(P + DAY), second.event_id),
        ("repeat-buyer", "entered", iso(P + DAY), second.event_id),
    ]


# ------------------------------------------------------------------------------------------------
# full membership over time: the exact set at and around every flip

def _two_orders():
    return paid_orders(CID, [P - 10 * DAY, P])


def _five_orders_50000():
    return paid_orders(CID, [P - i * DAY for i in range(4, -1, -1)], 10000.0)


def _one_order_100000():
    return paid_orders(CID, [P], 100000.0)


def _one_order():
    return paid_orders(CID, [P], 100.0)


TIMELINE = [
    # scenario, offset after P, exact segments at that instant
    (_one_order, 0, {"new-customer"}),
    (_one_order, 30 * DAY - US, {"new-customer"}),
    (_one_order, 30 * DAY, set()),
    (_one_order, 60 * DAY, set()),                     # one order: never at-risk
    (_one_order, 180 * DAY - US, set()),
    (_one_order, 180 * DAY, {"churned"}),
    (_one_order, 3650 * DAY, {"churned"}),
    (_two_orders, 0, {"repeat-buyer"}),
    (_two_orders, 60 * DAY - US, {"repeat-buyer"}),
    (_two_orders, 60 * DAY, {"at-risk"}),
    (_two_orders, 60 * DAY + US, {"at-risk"}),
    (_two_orders, 180 * DAY - US, {"at-risk"}),
    (_two_orders, 180 * DAY, {"churned"}),
    (_two_orders, 180 * DAY + US, {"churned"}),
    (_five_orders_50000, 0, {"repeat-buyer", "loyal", "champion"}),
    (_five_orders_50000, 30 * DAY - US, {"repeat-buyer", "loyal", "champion"}),
    (_five_orders_50000, 30 * DAY, {"repeat-buyer", "loyal"}),
    (_five_orders_50000, 60 * DAY - US, {"repeat-buyer", "loyal"}),
    (_five_orders_50000, 60 * DAY, {"loyal", "at-risk"}),
    (_five_orders_50000, 90 * DAY - US, {"loyal", "at-risk"}),
    (_five_orders_50000, 90 * DAY, {"at-risk"}),
    (_five_orders_50000, 180 * DAY, {"churned"}),
    (_one_order_100000, 0, {"new-customer", "high-value"}),
    (_one_order_100000, 30 * DAY, {"high-value"}),
    (_one_order_100000, 180 * DAY, {"high-value", "churned"}),
    (_one_order_100000, 3650 * DAY, {"high-value", "churned"}),   # high-value never expires
]


def _at(offset: int) -> str:
    return f"{offset // DAY}d{'-1us' if offset % DAY == DAY - 1 else '+1us' if offset % DAY == 1 else ''}"


@pytest.mark.parametrize("scenario, offset, expected", TIMELINE,
                         ids=[f"{s.__name__[1:]}@{_at(o)}" for s, o, _ in TIMELINE])
def test_membership_timeline(scenario, offset, expected):
    assert state_at(scenario(), P + offset) == expected


# ------------------------------------------------------------------------------------------------
# time flips: nothing at flip - 1us, the move exactly at the flip (cause time), nothing more at +1us

def _views(*offsets, product="p-1"):
    return [product_viewed(CID, P + o, product) for o in offsets]


FLIPS = [
    # id, events, segment, flip instant, True if the customer enters at the flip (else exits)
    ("new-customer-exit-30d", _one_order, "new-customer", P + 30 * DAY, False),
    ("repeat-buyer-exit-60d", _two_orders, "repeat-buyer", P + 60 * DAY, False),
    ("loyal-exit-90d", _five_orders_50000, "loyal", P + 90 * DAY, False),
    ("champion-exit-30d", _five_orders_50000, "champion", P + 30 * DAY, False),
    ("at-risk-enter-60d", _two_orders, "at-risk", P + 60 * DAY, True),
    ("at-risk-exit-180d", _two_orders, "at-risk", P + 180 * DAY, False),
    ("churned-enter-180d", _two_orders, "churned", P + 180 * DAY, True),
    ("churned-enter-180d-single-order", _one_order, "churned", P + 180 * DAY, True),
    ("cart-abandoner-exit-24h", lambda: [cart_abandoned(CID, P)], "cart-abandoner", P + 24 * HOUR, False),
    ("cart-abandoner-newer-abandonment-restarts",
     lambda: [cart_abandoned(CID, P), cart_abandoned(CID, P + 12 * HOUR)], "cart-abandoner", P + 36 * HOUR, False),
    ("window-shopper-exit-3rd-newest-7d", lambda: _views(0, HOUR, 2 * HOUR), "window-shopper", P + 7 * DAY, False),
    ("window-shopper-exit-4-views", lambda: _views(0, DAY, 2 * DAY, 3 * DAY), "window-shopper", P + 8 * DAY, False),
    ("window-shopper-exit-latest-product",
     lambda: _views(0, HOUR, 2 * HOUR) + _views(DAY, DAY + HOUR, DAY + 2 * HOUR, product="p-2"),
     "window-shopper", P + 8 * DAY, False),
    ("window-shopper-enter-when-order-block-ends",
     lambda: [order_placed(CID, P - DAY, "o-1", ["p-1"])] + _views(0, HOUR, 2 * HOUR),
     "window-shopper", P + 6 * DAY, True),
]


@pytest.mark.parametrize("events, segment, flip, enters", [f[1:] for f in FLIPS], ids=[f[0] for f in FLIPS])
def test_time_flip_exactly_at_the_instant(events, segment, flip, enters):
    evs = events()
    before = run(evs, flip - US)
    assert (segment in segments_of(before, CID)) is (not enters)

    at = run(evs, flip)
    assert (segment in segments_of(at, CID)) is enters
    assert at[: len(before)] == before
    new = [c for c in at[len(before):] if c.segment == segment]
    assert [(c.change, c.at, c.cause, c.event_id) for c in new] == [
        ("entered" if enters else "exited", iso(flip), "time", None)]

    after = run(evs, flip + US)
    assert [c for c in after if c.segment == segment] == [c for c in at if c.segment == segment]


def test_at_risk_exit_and_churned_enter_share_one_instant():
    changes = run(_two_orders(), P + 180 * DAY)
    at_flip = {(c.segment, c.change, c.cause) for c in changes if c.at == iso(P + 180 * DAY)}
    assert at_flip == {("at-risk", "exited", "time"), ("churned", "entered", "time")}


def test_repeat_buyer_exit_and_at_risk_enter_share_one_instant():
    changes = run(_two_orders(), P + 60 * DAY)
    at_flip = {(c.segment, c.change, c.cause) for c in changes if c.at == iso(P + 60 * DAY)}
    assert at_flip == {("repeat-buyer", "exited", "time"), ("at-risk", "entered", "time")}


@pytest.mark.parametrize("cancel, exit_at", [
    ("ord-1", P + 30 * DAY),            # the older order cancelled: first paid is now P
    ("ord-2", P - 20 * DAY + 30 * DAY),  # the newer cancelled: first paid stays P - 20d
], ids=["cancel-older", "cancel-newer"])
def test_new_customer_exit_counts_from_first_paid(cancel, exit_at):
    events = paid_orders(CID, [P - 20 * DAY, P]) + [order_cancelled(CID, P + HOUR, cancel)]
    changes = run(events, P + 60 * DAY)
    nc = [(c.change, c.at, c.cause) for c in changes if c.segment == "new-customer"]
    assert nc == [
        ("entered", iso(P - 20 * DAY), "event"),
        ("exited", iso(P), "event"),
        ("entered", iso(P + HOUR), "event"),
        ("exited", iso(exit_at), "time"),
    ]


# ------------------------------------------------------------------------------------------------
# segments that time alone never enters

NEVER = [
    ("at-risk-needs-two-orders", _one_order, "at-risk"),
    ("repeat-buyer-needs-two-orders", _one_order, "repeat-buyer"),
    ("loyal-needs-five-orders", lambda: paid_orders(CID, [P - i * DAY for i in range(3, -1, -1)], 30000.0), "loyal"),
    ("champion-needs-five-orders", lambda: paid_orders(CID, [P - i * DAY for i in range(3, -1, -1)], 30000.0),
     "champion"),
    ("high-value-below-100000", lambda: paid_orders(CID, [P], 99999.99), "high-value"),
    ("window-shopper-two-views", lambda: _views(0, HOUR), "window-shopper"),
    ("window-shopper-three-products", lambda: [product_viewed(CID, P + i, f"p-{i}") for i in range(3)],
     "window-shopper"),
    ("cart-abandoner-needs-abandonment", lambda: [cart_updated(CID, P)], "cart-abandoner"),
    ("churned-needs-an-order", lambda: [cart_abandoned(CID, P), product_viewed(CID, P, "p-1")], "churned"),
]


@pytest.mark.parametrize("events, segment", [n[1:] for n in NEVER], ids=[n[0] for n in NEVER])
def test_never_entered(events, segment):
    changes = run(events(), P + 400 * DAY)
    assert [c for c in changes if c.segment == segment] == []


# ------------------------------------------------------------------------------------------------
# cart-abandoner: within 24h of the abandonment, and no order placed at or after it

A = P


def _order(at, oid="o-1"):
    return order_placed(CID, at, oid, ["p-9"])


CART = [
    ("abandon-only", lambda: [cart_abandoned(CID, A)],
     [("entered", A, "event"), ("exited", A + 24 * HOUR, "time")]),
    ("order-at-the-same-instant-after", lambda: [cart_abandoned(CID, A), _order(A)],
     [("entered", A, "event"), ("exited", A, "event")]),
    ("order-at-the-same-instant-before", lambda: [_order(A), cart_abandoned(CID, A)], []),
    ("order-1us-before", lambda: [_order(A - US), cart_abandoned(CID, A)],
     [("entered", A, "event"), ("exited", A + 24 * HOUR, "time")]),
    ("order-1us-after", lambda: [cart_abandoned(CID, A), _order(A + US)],
     [("entered", A, "event"), ("exited", A + US, "event")]),
    ("order-1us-before-expiry", lambda: [cart_abandoned(CID, A), _order(A + 24 * HOUR - US)],
     [("entered", A, "event"), ("exited", A + 24 * HOUR - US, "event")]),
    ("order-at-expiry-finds-it-expired", lambda: [cart_abandoned(CID, A), _order(A + 24 * HOUR)],
     [("entered", A, "event"), ("exited", A + 24 * HOUR, "time")]),
    ("newer-abandonment-after-order-re-enters",
     lambda: [cart_abandoned(CID, A), _order(A + HOUR), cart_abandoned(CID, A + 12 * HOUR)],
     [("entered", A, "event"), ("exited", A + HOUR, "event"),
      ("entered", A + 12 * HOUR, "event"), ("exited", A + 36 * HOUR, "time")]),
    ("cart-update-alone", lambda: [cart_updated(CID, A)], []),
]


@pytest.mark.parametrize("events, expected", [c[1:] for c in CART], ids=[c[0] for c in CART])
def test_cart_abandoner(events, expected):
    changes = run(events(), A + 10 * DAY)
    got = [(c.change, c.at, c.cause) for c in changes if c.segment == "cart-abandoner"]
    assert got == [(change, iso(at), cause) for change, at, cause in expected]


# ------------------------------------------------------------------------------------------------
# window-shopper: 3 views of the same product within 7d, no order of it within 7d

def _ordered(at, products=("p-1",)):
    return order_placed(CID, P + at, f"o-{at}", list(products))


WINDOW = [
    ("three-views", lambda: _views(0, HOUR, 2 * HOUR),
     [("entered", 2 * HOUR, "event"), ("exited", 7 * DAY, "time")]),
    ("third-view-1us-inside-window", lambda: _views(0, DAY, 7 * DAY - US),
     [("entered", 7 * DAY - US, "event"), ("exited", 7 * DAY, "time")]),
    ("third-view-exactly-7d-later", lambda: _views(0, DAY, 7 * DAY), []),
    ("three-different-products", lambda: [product_viewed(CID, P + i * HOUR, f"p-{i}") for i in range(3)], []),
    ("two-views-per-product", lambda: _views(0, HOUR) + _views(0, HOUR, product="p-2"), []),
    ("order-of-another-product-does-not-block",
     lambda: _views(0, HOUR) + [_ordered(90 * 60 * 10**6, ["p-2"])] + _views(2 * HOUR),
     [("entered", 2 * HOUR, "event"), ("exited", 7 * DAY, "time")]),
    ("order-after-views-exits-and-blocks-for-good", lambda: _views(0, HOUR, 2 * HOUR) + [_ordered(3 * HOUR)],
     [("entered", 2 * HOUR, "event"), ("exited", 3 * HOUR, "event")]),
    ("order-block-ends-exactly-at-third-view",
     lambda: [_ordered(2 * HOUR - 7 * DAY)] + _views(0, HOUR, 2 * HOUR),
     [("entered", 2 * HOUR, "event"), ("exited", 7 * DAY, "time")]),
    ("order-block-ends-1us-after-third-view",
     lambda: [_ordered(2 * HOUR - 7 * DAY + US)] + _views(0, HOUR, 2 * HOUR),
     [("entered", 2 * HOUR + US, "time"), ("exited", 7 * DAY, "time")]),
    ("order-block-ends-with-the-views", lambda: [_ordered(0)] + _views(0, HOUR, 2 * HOUR), []),
    ("order-block-ends-1us-before-the-views", lambda: [_ordered(-US)] + _views(0, HOUR, 2 * HOUR),
     [("entered", 7 * DAY - US, "time"), ("exited", 7 * DAY, "time")]),
    ("views-after-order-block",
     lambda: _views(0, HOUR, 2 * HOUR) + [_ordered(3 * HOUR)] + _views(5 * DAY, 5 * DAY + HOUR, 6 * DAY),
     [("entered", 2 * HOUR, "event"), ("exited", 3 * HOUR, "event"),
      ("entered", 7 * DAY + 3 * HOUR, "time"), ("exited", 12 * DAY, "time")]),
]


@pytest.mark.parametrize("events, expected", [w[1:] for w in WINDOW], ids=[w[0] for w in WINDOW])
def test_window_shopper(events, expected):
    changes = run(events(), P + 30 * DAY)
    got = [(c.change, c.at, c.cause) for c in changes if c.segment == "window-shopper"]
    assert got == [(change, iso(P + at), cause) for change, at, cause in expected]
