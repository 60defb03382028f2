"""The synthetic shop stream (stream.tools.synth.shop_records): it decodes except the intended bad
share, has every event type, redeliveries and kind of bad message, looks like shopping, and is the
same bytes for the same seed."""
from __future__ import annotations

import itertools
from collections import Counter, defaultdict

from stream.engine.core import Engine
from stream.model.decoding import Decoder
from stream.model.events import EVENT_TYPES, DeadLetter, Event
from stream.rules.catalog import load_catalog
from stream.tools.synth import START, shop_records
from stream.model.time import SECOND, format_rfc3339, from_datetime

N = 30_000


def _records(n: int = N, **kwargs):
    return list(itertools.islice(shop_records(400, seed=11, **kwargs), n))


def test_everything_decodes_except_the_intended_bad_share():
    records = _records(bad_ratio=0.01)
    decode = Decoder().decode
    bad = 0
    for record in records:
        event = decode(record.value)
        if record.kind == "bad":
            assert type(event) is DeadLetter, record
            bad += 1
        else:
            assert isinstance(event, Event), (record, event)
            assert record.key == event.customer_id.encode(), "records are keyed by customer id"
    assert 0.005 * N < bad < 0.02 * N
    # The default share is about one in a thousand.
    default = Counter(r.kind for r in _records())
    assert 5 <= default["bad"] <= 70, default


def test_every_event_type_redeliveries_and_every_kind_of_bad_message():
    records = _records(bad_ratio=0.01)
    decode = Decoder().decode
    types = Counter(type(e).__struct_config__.tag for r in records if isinstance(e := decode(r.value), Event))
    assert set(types) == set(EVENT_TYPES), f"missing: {set(EVENT_TYPES) - set(types)}"
    assert types["product_viewed"] > types["order_placed"] > types["customer_erased"] > 0

    kinds = {reason.split(":")[0] for r in records if r.kind == "bad" for reason in [decode(r.value).reason]}
    assert {"invalid event", "unknown event type"} <= kinds and kinds & {"not JSON", "not UTF-8"}, kinds

    # A redelivery is an earlier record again, byte for byte (same event id), as Kafka would send it.
    seen: set[bytes] = set()
    redelivered = 0
    for record in records:
        if record.kind == "redelivery":
            assert record.value in seen
            redelivered += 1
        elif record.kind == "event":
            assert record.value not in seen, "event ids are unique"
        seen.add(record.value)
    assert redelivered > 10


def test_it_looks_like_shopping():
    """Sessions of views on the same products; payments after their orders; time moves forward;
    churned customers stop coming; the engine finds most of the catalog's segments in it."""
    records = _records(bad_ratio=0)
    decode = Decoder().decode
    events = [decode(r.value) for r in records if r.kind == "event"]
    times = [from_datetime(e.occurred_at) for e in events]
    assert times == sorted(times), "simulated time never goes back"
    assert format_rfc3339(times[0]).startswith("2025-01-01")

    placed: dict[str, str] = {}
    views: dict[str, list[str]] = defaultdict(list)
    last_seen: dict[str, int] = {}
    for event, t in zip(events, times, strict=True):
        tag = type(event).__struct_config__.tag
        last_seen[event.customer_id] = t
        if tag == "order_placed":
            placed[event.order_id] = event.customer_id
        elif tag in ("order_paid", "order_cancelled"):
            assert placed.get(event.order_id) == event.customer_id, "payments and cancellations follow their order"
        elif tag == "product_viewed":
            views[event.session_id].append(event.product_id)
    sessions = list(views.values())
    assert sum(len(s) for s in sessions) / len(sessions) > 2.5
    assert sum(len(s) > len(set(s)) for s in sessions) > len(sessions) / 4, "a session comes back to its products"
    # Some customers of the first weeks are never seen again (churn); newcomers take their place.
    assert sum(t < times[-1] - 30 * 86400 * SECOND for t in last_seen.values()) > 20
    assert any(int(c[1:]) >= 400 for c in last_seen)

    engine, out = Engine(load_catalog()), []
    for event in events:
        engine.apply(event, out)
    entered = Counter(c.segment for c in out if c.change == "entered")
    assert {"new-customer", "repeat-buyer", "high-value", "cart-abandoner", "window-shopper", "loyal"} <= set(entered)


def test_same_seed_same_bytes_and_a_clock_sets_the_times():
    def values(seed: int) -> list[bytes]:
        return [record.value for record in itertools.islice(shop_records(300, seed=seed), 5000)]
    first = values(5)
    assert first == values(5)
    assert first != values(6)

    ticks = itertools.count(1_900_000_000 * SECOND, 1000)
    live = list(itertools.islice(shop_records(300, seed=5, clock=lambda: next(ticks), run="r1-"), 500))
    decode = Decoder().decode
    stamps = [decode(r.value).occurred_at for r in live if r.kind == "event"]
    assert format_rfc3339(from_datetime(stamps[0])) == "2030-03-17T17:46:40Z"
    assert all(later > earlier for earlier, later in zip(stamps, stamps[1:], strict=False)), \
        "one clock reading per record"
    assert all(e.event_id.startswith("r1-") for r in live if isinstance(e := decode(r.value), Event))


def test_a_start_shifts_simulated_time_and_each_record_says_when_it_is_sent():
    """The demo plays the simulation from now on: the same records, every time moved by as much,
    and `at` (what the demo paces by) never going back, even for a redelivery of an older record."""
    shift = 700 * 86400 * SECOND
    plain = list(itertools.islice(shop_records(300, seed=5), 5000))
    moved = list(itertools.islice(shop_records(300, seed=5, start=START + shift), 5000))
    decode = Decoder().decode
    for before, after in zip(plain, moved, strict=True):
        assert after.at == before.at + shift
        if before.kind == "bad":
            continue
        t0, t1 = from_datetime(decode(before.value).occurred_at), from_datetime(decode(after.value).occurred_at)
        assert t1 - t0 == shift, (before, after)
        if before.kind == "event":
            assert before.at == t0, "an event is sent at its own time"
        else:
            assert t0 <= before.at, "a redelivery is sent after its event"
    assert all(b.at >= a.at for a, b in itertools.pairwise(moved)), "sent in simulated-time order"
    assert {r.kind for r in plain} == {"event", "redelivery", "bad"}
