"""Small builders shared by the tests.

Events are written as JSON bytes and decoded through `stream.model.decoding.Decoder`, so every test goes
through the real input contract. Instants are integer microseconds since the Unix epoch (UTC), the
engine's own unit; `instant()` and `iso()` convert with the standard library only, so the tests do
not check the engine's time handling against itself.
"""
from __future__ import annotations

import datetime as _dt
import itertools
import json
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any
from collections.abc import Iterable

from stream.model.changes import SegmentChange
from stream.engine.core import Engine
from stream.model.decoding import Decoder
from stream.model.events import DeadLetter, Event
from stream.rules.catalog import Catalog, load_catalog, parse_catalog

US = 1
SECOND = 1_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
_ids = itertools.count(1)
_decoder = Decoder()


# ------------------------------------------------------------------------------------------------
# time

def instant(text: str) -> int:
    """RFC 3339 text (with an offset or Z) -> microseconds since the epoch."""
    dt = _dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if dt.tzinfo is None:
        raise ValueError(f"test timestamps need an offset: {text!r}")
    return (dt - _EPOCH) // _dt.timedelta(microseconds=1)


def iso(us: int) -> str:
    """Microseconds -> the output contract's form: UTC with Z, fraction only when non-zero."""
    dt = _EPOCH + _dt.timedelta(microseconds=us)
    if dt.microsecond:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _when(at: int | str) -> str:
    """An event's occurred_at as input text (offset form, microsecond precision)."""
    if isinstance(at, str):
        return at
    return (_EPOCH + _dt.timedelta(microseconds=at)).isoformat(timespec="microseconds")


# ------------------------------------------------------------------------------------------------
# events

def event_bytes(type_: str, cid: str, at: int | str, event_id: str | None = None, **fields: Any) -> bytes:
    record = {"type": type_, "event_id": event_id if event_id is not None else f"e-{next(_ids)}",
              "customer_id": cid, "occurred_at": _when(at), **fields}
    return json.dumps(record, separators=(",", ":")).encode("utf-8")


def decode(raw: bytes) -> Event:
    """Decode through the real contract; a dead letter here is a broken test, so fail loudly."""
    decoded = _decoder.decode(raw)
    if isinstance(decoded, DeadLetter):
        raise AssertionError(f"test built an invalid event: {decoded.reason}: {raw!r}")
    return decoded


def event(type_: str, cid: str, at: int | str, event_id: str | None = None, **fields: Any) -> Event:
    return decode(event_bytes(type_, cid, at, event_id, **fields))


def order_placed(cid: str, at: int | str, order_id: str, products: Iterable[str | tuple[str, str | None]] = ("p-1",),
                 total: float = 100.0, city: str | None = None, country: str | None = None,
                 event_id: str | None = None) -> Event:
    """`products`: product ids, or (product_id, category) pairs."""
    items = []
    for p in products:
        product_id, category = (p, "general") if isinstance(p, str) else p
        item = {"product_id": product_id, "quantity": 1, "price": 1.0}
        if category is not None:
            item["category"] = category
        items.append(item)
    fields: dict[str, Any] = {"order_id": order_id, "total": total, "currency": "KZT", "items": items}
    if city is not None:
        fields["city"] = city
    if country is not None:
        fields["country"] = country
    return event("order_placed", cid, at, event_id, **fields)


def order_paid(cid: str, at: int | str, order_id: str, amount: float, event_id: str | None = None) -> Event:
    return event("order_paid", cid, at, event_id, order_id=order_id, amount=amount)


def order_cancelled(cid: str, at: int | str, order_id: str, event_id: str | None = None) -> Event:
    return event("order_cancelled", cid, at, event_id, order_id=order_id)


def product_viewed(cid: str, at: int | str, product_id: str, category: str = "general",
                   event_id: str | None = None) -> Event:
    return event("product_viewed", cid, at, event_id, product_id=product_id, category=category)


def cart_updated(cid: str, at: int | str, value: float = 100.0, cart_id: str = "cart-1",
                 event_id: str | None = None) -> Event:
    return event("cart_updated", cid, at, event_id, cart_id=cart_id, value=value, items=[])


def cart_abandoned(cid: str, at: int | str, value: float = 100.0, cart_id: str = "cart-1",
                   event_id: str | None = None) -> Event:
    return event("cart_abandoned", cid, at, event_id, cart_id=cart_id, value=value)


def customer_updated(cid: str, at: int | str, event_id: str | None = None, **attributes: Any) -> Event:
    """Only the attributes given are sent; pass None to send an explicit null."""
    return event("customer_updated", cid, at, event_id, attributes=attributes)


def customer_erased(cid: str, at: int | str, event_id: str | None = None) -> Event:
    return event("customer_erased", cid, at, event_id)


def paid_orders(cid: str, times: Iterable[int], amounts: Iterable[float] | float = 100.0,
                prefix: str = "ord") -> list[Event]:
    """One order_paid per time (order ids prefix-1, prefix-2, ...)."""
    times = list(times)
    amounts = [amounts] * len(times) if isinstance(amounts, (int, float)) else list(amounts)
    assert len(amounts) == len(times)
    return [order_paid(cid, t, f"{prefix}-{i}", a) for i, (t, a) in enumerate(zip(times, amounts, strict=True), 1)]


# ------------------------------------------------------------------------------------------------
# running

@lru_cache(maxsize=1)
def default_catalog() -> Catalog:
    return load_catalog()


def catalog_from(catalog: Catalog | str | None) -> Catalog:
    """None: the default catalog; a string: YAML text of a segments file."""
    if catalog is None:
        return default_catalog()
    if isinstance(catalog, str):
        return parse_catalog(catalog)
    return catalog


def engine(catalog: Catalog | str | None = None) -> Engine:
    return Engine(catalog_from(catalog))


def run_engine(events: Iterable[Event], until: int | str | None = None,
               catalog: Catalog | str | None = None) -> tuple[Engine, list[SegmentChange]]:
    eng = engine(catalog)
    out: list[SegmentChange] = []
    for e in events:
        eng.apply(e, out)
    if until is not None:
        eng.advance(instant(until) if isinstance(until, str) else until, out)
    return eng, out


def run(events: Iterable[Event], until: int | str | None = None,
        catalog: Catalog | str | None = None) -> list[SegmentChange]:
    """Apply the events in order on a fresh engine, then advance to `until`; every change."""
    return run_engine(events, until, catalog)[1]


def apply_change(members: dict[str, set[str]], change: SegmentChange) -> None:
    """One change applied to customer -> segments, checking that enters and exits alternate."""
    current = members.setdefault(change.customer_id, set())
    if change.change == "entered":
        assert change.segment not in current, f"entered twice without an exit: {change}"
        current.add(change.segment)
    else:
        assert change.segment in current, f"exited without being in: {change}"
        current.remove(change.segment)


def membership(changes: Iterable[SegmentChange]) -> dict[str, set[str]]:
    """customer -> segments they are in after these changes."""
    members: dict[str, set[str]] = {}
    for change in changes:
        apply_change(members, change)
    return members


def segments_of(changes: Iterable[SegmentChange], cid: str) -> set[str]:
    return membership(changes).get(cid, set())


def moves(changes: Iterable[SegmentChange], cid: str | None = None,
          segment: str | None = None) -> list[tuple[str, str, str, str, str | None]]:
    """Compact (segment, change, at, cause, event_id) tuples, optionally filtered."""
    return [(c.segment, c.change, c.at, c.cause, c.event_id) for c in changes
            if (cid is None or c.customer_id == cid) and (segment is None or c.segment == segment)]


# ------------------------------------------------------------------------------------------------
# the command

LOOPBACK = "127.0.0.1"      # the only address the HTTP tests serve on or send to

def segments_cli() -> list[str]:
    """The `segments` command as a user runs it: the installed script, else the package's main."""
    cli = Path(sys.executable).with_name("segments")
    return [str(cli)] if cli.exists() else [sys.executable, "-m", "stream.cli"]
