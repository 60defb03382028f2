"""A from-scratch reference for segment membership: README "Semantics", written as plainly as possible.

Nothing here is shared with the engine: no compiled predicates (stream.rules.compiler), no folds
(stream.engine.fold), no engine. It reads the decoded event classes (stream.model.events) and the time helpers
(stream.model.time), interprets the raw YAML definition dicts itself, and recomputes everything from
the full history on every question. It is slow and unbounded on purpose; it is the specification
within the state's bounds (README "State bounds": 32 paid orders one by one, 1024 dedup ids, 64
custom names, 64 KiB per state...), which the histories generated against it stay inside;
tests/model/test_state_bounds.py checks what happens beyond them.

    history = History(events)              # every event so far, in arrival order, decoded
    history.memberships(now, definitions)  # {customer_id: frozenset(segment names)} at `now`

Semantics implemented (README "Semantics"):
- stream time is the largest occurred_at of the events so far, whatever became of them (a duplicate
  or an erasure of an unknown customer still moves it: it is the partition's clock);
- dedup: an event_id already applied for the same customer, at a stream time less than 7 days
  before the current one, is ignored entirely (it changes nothing, not even last_seen); the time
  remembered for an id is the stream time when it was applied;
- customer_erased forgets the customer's history and dedup memory entirely (it is never itself a
  duplicate: it erases its own id along with the rest);
- paid orders: the first order_paid per order counts; order_cancelled takes the order back out (also
  after payment) and blocks any later payment of it (arrival order);
- the profile follows arrival order: an absent attribute stays, null clears, custom merges key by key;
  an order's city/country fill the profile only where it has none;
- "latest" values (cart value, abandoned value) belong to the event with the largest occurred_at,
  the later arrival winning a tie;
- a comparison with a missing value (or, for custom fields, with a value of another kind: text vs
  number vs true/false) is false; "within N" is now - t < N; "ago: N" is now - t >= N;
- `bucket: {salt: S, ...}` compares the customer's bucket under salt S (README "Segment
  definitions" gives the formula, written out again here from the README, not imported);
- `trait.<name>` (docs/traits.md) aggregates, at `now`, the counted events of one type (for
  order_paid the counted payments, as paid_orders counts them) inside the window: `within: D`
  while now - t < D, `between: [D1, D2]` while D2 <= now - t < D1, lifetime without either; one
  entry per event, or per item for order_placed.items.*; items without the field are no entries.
  count and sum of nothing are 0, avg/min/max/most_frequent of nothing absent; most_frequent's
  ties go to the smallest value;
- `rfm.r|f|m|cell` (docs/rfm.md) scores the measures at `now` against the `rfm:` section's cut
  points: R is levels minus the number of cuts D with now - last >= D, F and M one plus the number
  of cuts at or below the value; a customer missing any measure has no scores (every comparison
  false); the cell is looked up on R and F put on the 1..5 scale (rounded half up);
- `segment: {name: N}` (README "Segment definitions") holds while the customer is a member of N at
  the same instant; `for: D` once a member for D or longer (now - entered >= D, `entered` the start
  of the current membership); `left_within: D` while not a member and now - (the last exit) < D.
  Segments are evaluated referenced first (ties by name), so one instant moves a segment and the
  segments referencing it. Membership then depends on the past, not only on the history at `now`:
  the oracle walks the customer's timeline, evaluating every segment at each event's stream time
  (with that prefix of the history) and, between arrivals, at every instant anything could flip
  (event times plus each duration in the definitions, UTC midnights around birthdays, entries plus
  `for:`, exits plus `left_within:`); an erasure starts the customer's timeline afresh.
"""
from __future__ import annotations

import calendar
import datetime as dt
import hashlib
import math
import json
import operator
from bisect import bisect_right
from collections import Counter
from fractions import Fraction
from pathlib import Path
from typing import Any

import msgspec
import yaml

from stream.model import events as ev
from stream.model.time import DAY, from_datetime, parse_duration, parse_rfc3339, to_datetime

DEDUP_WINDOW = 7 * DAY
CATALOG_PATH = Path(__file__).resolve().parent.parent / "stream" / "rules" / "catalog.yaml"

TIME_ATTRIBUTES = {
    "first_paid_at", "last_paid_at", "last_order_placed_at", "cart_updated_at",
    "last_cart_abandoned_at", "last_viewed_at", "first_seen_at", "last_seen_at",
}
DATE_ATTRIBUTES = {"birth_date"}


def load_traits(text: str) -> dict[str, dict[str, Any]]:
    """Trait name -> its raw definition dict (the `traits:` section; none: empty)."""
    return dict(yaml.safe_load(text).get("traits") or {})


def load_rfm(text: str) -> dict[str, Any] | None:
    """The raw `rfm:` section (none: None)."""
    return yaml.safe_load(text).get("rfm")


def load_definitions(text: str | None = None) -> dict[str, dict[str, Any]]:
    """Segment name -> its raw definition dict, straight from the YAML (the default catalog if no
    text is given)."""
    if text is None:
        text = CATALOG_PATH.read_text(encoding="utf-8")
    return dict(yaml.safe_load(text)["segments"])


def micros(event: ev.Event) -> int:
    return from_datetime(event.occurred_at)


# ------------------------------------------------------------------------------------------------
# The history: which events count, per customer


class History:
    """The events that count for each customer after de-duplication and erasure, in arrival order,
    each with its occurred_at in microseconds."""

    def __init__(self, events: list[ev.Event], traits: dict[str, dict[str, Any]] | None = None,
                 rfm: dict[str, Any] | None = None, previous: History | None = None):
        """`previous`: the History of all of `events` but the last, if at hand (it is made when
        needed: segment references read the timeline up to the last event)."""
        self.events = list(events)
        self.previous = previous
        self._timelines: dict[str, Timeline] = {}
        self.traits = traits or {}
        self.rfm = rfm
        self.stream_time: int | None = None
        self.times: list[int] = []                       # occurred_at of every event, in order
        self.applied: dict[str, list[tuple[int, ev.Event]]] = {}
        applied_at: dict[str, dict[str, int]] = {}       # customer -> event_id -> stream time
        for event in events:
            t = micros(event)
            self.times.append(t)
            now = t if self.stream_time is None else max(self.stream_time, t)
            self.stream_time = now
            customer = event.customer_id
            if isinstance(event, ev.CustomerErased):
                self.applied.pop(customer, None)
                applied_at.pop(customer, None)
                continue
            remembered = applied_at.setdefault(customer, {})
            if event.event_id in remembered and now - remembered[event.event_id] < DEDUP_WINDOW:
                continue                                 # a redelivery: ignored entirely
            remembered[event.event_id] = now
            self.applied.setdefault(customer, []).append((t, event))
        self._attributes = {c: attributes(evs) for c, evs in self.applied.items()}

    def memberships(self, now: int, definitions: dict[str, dict[str, Any]]) -> dict[str, frozenset[str]]:
        """Every customer with at least one segment at `now`, and those segments."""
        if any(references(d["when"]) for d in definitions.values()):
            return self.timeline(definitions).memberships(now)
        result = {}
        for customer, evs in self.applied.items():
            person = Customer(customer, self._attributes[customer], evs, self.traits, self.rfm)
            names = frozenset(name for name, d in definitions.items() if holds(d["when"], person, now))
            if names:
                result[customer] = names
        return result


    def timeline(self, definitions: dict[str, dict[str, Any]]) -> Timeline:
        key = json.dumps(definitions, sort_keys=True, default=str)
        if key not in self._timelines:
            self._timelines[key] = Timeline(self, definitions)
        return self._timelines[key]


# ------------------------------------------------------------------------------------------------
# Segment references: the membership timeline


def references(node: Any) -> list[dict[str, Any]]:
    """Every `segment:` condition's mapping in a condition tree."""
    found = []
    if isinstance(node, list):
        for child in node:
            found += references(child)
    elif isinstance(node, dict):
        for key, value in node.items():
            found += [value] if key == "segment" else references(value)
    return found


def evaluation_order(definitions: dict[str, dict[str, Any]]) -> list[str]:
    """Again and again the smallest name whose references all come before it."""
    order: list[str] = []
    while len(order) < len(definitions):
        order.append(min(name for name, d in definitions.items() if name not in order
                         and all(r["name"] in order for r in references(d["when"]))))
    return order


def all_durations(node: Any) -> tuple[set[int], set[int]]:
    """(every duration in a definition but the references' and birthdays', the days of each
    birthday_within): from an event at t, such a condition can only flip at t + one of them."""
    spans: set[int] = set()
    days: set[int] = set()
    if isinstance(node, list):
        for child in node:
            more, more_days = all_durations(child)
            spans |= more
            days |= more_days
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "segment":
                continue
            if key in ("within", "ago", "without_order_within"):
                spans.add(parse_duration(value))
            elif key == "between":
                spans.update(parse_duration(v) for v in value)
            elif key == "birthday_within":
                days.add(parse_duration(value) // DAY)
            else:
                more, more_days = all_durations(value)
                spans |= more
                days |= more_days
    return spans, days


class Membership:
    """One customer's memberships at one instant: segment -> since when a member, and segment ->
    when it last left."""

    def __init__(self, since: dict[str, int] | None = None, left: dict[str, int] | None = None):
        self.since = dict(since or {})
        self.left = dict(left or {})


class Timeline:
    """The memberships of every customer of `history` from its stream time on, the history fixed:
    evaluated at the history's last event, then at every instant after it where anything can flip."""

    def __init__(self, history: History, definitions: dict[str, dict[str, Any]]):
        self.history = history
        self.definitions = definitions
        self.order = evaluation_order(definitions)
        spans, days = all_durations(list(definitions.values()) + list(history.traits.values()))
        # R drops at the last order plus each recency cut point
        spans |= {parse_duration(cut) for cut in ((history.rfm or {}).get("cuts") or {}).get("recency", [])}
        self.starts = sorted({t + span for t in history.times for span in spans})
        self.birthday_days = days
        self.points: list[tuple[int, dict[str, Membership]]] = []
        if history.stream_time is None:
            return
        previous = history.previous or History(history.events[:-1], history.traits, history.rfm)
        before = previous.timeline(definitions).states(history.stream_time) if previous.stream_time is not None else {}
        self.points.append((history.stream_time, self.evaluate(history.stream_time, before)))

    def memberships(self, now: int) -> dict[str, frozenset[str]]:
        return {c: frozenset(m.since) for c, m in sorted(self.states(now).items()) if m.since}

    def states(self, now: int) -> dict[str, Membership]:
        """Every customer's memberships at `now` (at or after the history's stream time)."""
        assert self.points and now >= self.points[0][0], "asked before the history's stream time"
        while self.points[-1][0] < now:
            x = self.next_instant(self.points[-1][0], self.points[-1][1])
            if x is None or x > now:
                break
            self.points.append((x, self.evaluate(x, self.points[-1][1])))
        return self.points[bisect_right([x for x, _ in self.points], now) - 1][1]

    def changes(self, lo: int, hi: int) -> set[int]:
        """The instants in (lo, hi] where some customer's memberships change."""
        self.states(hi)
        found = set()
        for (_, a), (x, b) in zip(self.points, self.points[1:], strict=False):
            if lo < x <= hi and {c: m.since.keys() for c, m in a.items() if m.since} != \
                    {c: m.since.keys() for c, m in b.items() if m.since}:
                found.add(x)
        return found

    def next_instant(self, after: int, states: dict[str, Membership]) -> int | None:
        """The first instant after `after` where some condition could flip."""
        found = self.starts[bisect_right(self.starts, after):][:1]
        for d in self.definitions.values():
            for ref in references(d["when"]):
                for m in states.values():
                    if "for" in ref and ref["name"] in m.since:
                        found.append(m.since[ref["name"]] + parse_duration(ref["for"]))
                    if "left_within" in ref and ref["name"] in m.left:
                        found.append(m.left[ref["name"]] + parse_duration(ref["left_within"]))
        if self.birthday_days:
            for born in self.birth_dates():
                for year in range(to_datetime(after).year - 1, to_datetime(after).year + 2):
                    leap_day = (born.month, born.day) == (2, 29) and not calendar.isleap(year)
                    birthday = dt.date(year, born.month, 28 if leap_day else born.day)
                    found.append(midnight(birthday + dt.timedelta(days=1)))
                    found += [midnight(birthday - dt.timedelta(days=n - 1)) for n in self.birthday_days]
        later = [x for x in found if x > after]
        return min(later) if later else None

    def birth_dates(self) -> set[dt.date]:
        return {e.attributes.birth_date for evs in self.history.applied.values() for _, e in evs
                if isinstance(e, ev.CustomerUpdated) and e.attributes.birth_date not in (None, msgspec.UNSET)}

    def evaluate(self, now: int, before: dict[str, Membership]) -> dict[str, Membership]:
        """Every segment of every customer at `now`, referenced ones first, from the memberships
        just before; a customer the history does not hold (erased) has none."""
        after = {}
        for customer, evs in sorted(self.history.applied.items()):
            old = before.get(customer, Membership())
            m = Membership(old.since, old.left)
            person = Customer(customer, self.history._attributes[customer], evs, self.history.traits,
                              self.history.rfm, m)
            for name in self.order:
                if holds(self.definitions[name]["when"], person, now):
                    m.since.setdefault(name, now)
                elif name in m.since:
                    del m.since[name]
                    m.left[name] = now
            after[customer] = m
        return after


def midnight(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days * DAY


# ------------------------------------------------------------------------------------------------
# Attributes, computed directly from a customer's counted events


def attributes(evs: list[tuple[int, ev.Event]]) -> dict[str, Any]:
    def times(kind: type) -> list[int]:
        return [t for t, e in evs if isinstance(e, kind)]

    def latest(kind: type) -> tuple[int, ev.Event] | None:
        # largest occurred_at; on a tie the later arrival (max keeps the first maximum, so reverse)
        found = [(t, e) for t, e in evs if isinstance(e, kind)]
        return max(reversed(found), key=lambda te: te[0]) if found else None

    # payments: the first per order counts, a cancellation removes it and blocks later payments
    paid: dict[str, tuple[int, float]] = {}
    cancelled: set[str] = set()
    for t, e in evs:
        if isinstance(e, ev.OrderPaid):
            if e.order_id not in paid and e.order_id not in cancelled:
                paid[e.order_id] = (t, e.amount)
        elif isinstance(e, ev.OrderCancelled):
            cancelled.add(e.order_id)
            paid.pop(e.order_id, None)
    paid_times = [t for t, _ in paid.values()]
    paid_total = math.fsum(amount for _, amount in paid.values())

    placed = [e for _, e in evs if isinstance(e, ev.OrderPlaced)]
    cart = latest(ev.CartUpdated)
    abandoned = latest(ev.CartAbandoned)

    # the profile, in arrival order
    profile: dict[str, Any] = {"city": None, "country": None, "gender": None,
                               "birth_date": None, "email_opt_in": None}
    custom: dict[str, Any] = {}
    for _, e in evs:
        if isinstance(e, ev.CustomerUpdated):
            for name in profile:
                value = getattr(e.attributes, name)
                if value is not msgspec.UNSET:
                    profile[name] = value
            if e.attributes.custom is not msgspec.UNSET:
                custom.update(e.attributes.custom)
        elif isinstance(e, ev.OrderPlaced):
            for name in ("city", "country"):
                if profile[name] is None and getattr(e, name) is not None:
                    profile[name] = getattr(e, name)

    all_times = [t for t, _ in evs]
    return {
        "paid_orders": len(paid),
        "paid_total": paid_total,
        "average_order_value": paid_total / len(paid) if paid else None,
        "first_paid_at": min(paid_times, default=None),
        "last_paid_at": max(paid_times, default=None),
        "orders_placed": len(placed),
        "last_order_placed_at": max(times(ev.OrderPlaced), default=None),
        "categories_bought": {i.category for e in placed for i in e.items if i.category is not None},
        "cart_updated_at": cart[0] if cart else None,
        "cart_value": cart[1].value if cart else None,
        "last_cart_abandoned_at": abandoned[0] if abandoned else None,
        "last_cart_abandoned_value": abandoned[1].value if abandoned else None,
        "last_viewed_at": max(times(ev.ProductViewed), default=None),
        "first_seen_at": min(all_times, default=None),
        "last_seen_at": max(all_times, default=None),
        **profile,
        "custom": custom,
    }


class Customer:
    def __init__(self, customer_id: str, attrs: dict[str, Any], evs: list[tuple[int, ev.Event]],
                 traits: dict[str, dict[str, Any]] | None = None, rfm: dict[str, Any] | None = None,
                 membership: Membership | None = None):
        self.membership = membership or Membership()
        self.customer_id = customer_id
        self.attrs = attrs
        self.events = evs
        self.traits = traits or {}
        self.rfm = rfm

    def get(self, name: str) -> Any:
        if name.startswith("custom."):
            return self.attrs["custom"].get(name[len("custom."):])
        return self.attrs[name]


# ------------------------------------------------------------------------------------------------
# Conditions, interpreted from the YAML


def holds(condition: dict[str, Any], person: Customer, now: int) -> bool:
    (key, arg), = condition.items()
    if key == "all":
        return all(holds(c, person, now) for c in arg)
    if key == "any":
        return any(holds(c, person, now) for c in arg)
    if key == "not":
        return not holds(arg, person, now)
    if key == "repeated":
        return repeated(arg, person, now)
    if key == "segment":
        return segment_holds(arg, person.membership, now)
    if key == "bucket":
        value = bucket(person.customer_id, arg.get("salt", ""))
        return all(operator_holds(key, op, operand, value, person, now)
                   for op, operand in arg.items() if op != "salt")
    if key.startswith("trait."):
        value = trait(person.traits[key[len("trait."):]], person, now)
    elif key.startswith("rfm."):
        value = rfm_value(person, key[len("rfm."):], now)
    else:
        value = person.get(key)
    return all(operator_holds(key, op, operand, value, person, now) for op, operand in arg.items())


def segment_holds(ref: dict[str, Any], m: Membership, now: int) -> bool:
    """A member of ref's segment (for: since D or longer), or with left_within: D not a member, and
    the last exit less than D ago."""
    name = ref["name"]
    if "left_within" in ref:
        return name not in m.since and name in m.left and now - m.left[name] < parse_duration(ref["left_within"])
    if "for" in ref:
        return name in m.since and now - m.since[name] >= parse_duration(ref["for"])
    return name in m.since


COMPARISONS = {"eq": operator.eq, "ne": operator.ne, "gt": operator.gt,
               "gte": operator.ge, "lt": operator.lt, "lte": operator.le}


def operator_holds(name: str, op: str, operand: Any, value: Any, person: Customer, now: int) -> bool:
    if op == "exists":
        return (value is not None) == operand
    if op == "within":
        return value is not None and now - value < parse_duration(operand)
    if op == "ago":
        return value is not None and now - value >= parse_duration(operand)
    if op == "birthday_within":
        return value is not None and birthday_within(value, now, parse_duration(operand) // DAY)
    if op == "contains":
        return operand in value
    if op == "contains_any":
        return any(v in value for v in operand)
    if op == "in":
        return any(compare(operator.eq, value, literal(name, v)) for v in operand)
    if isinstance(operand, dict):                # {attr: NAME}: compare with another attribute
        return compare(COMPARISONS[op], value, person.get(operand["attr"]))
    return compare(COMPARISONS[op], value, literal(name, operand))


def literal(name: str, value: Any) -> Any:
    """A YAML literal in the attribute's own terms: instants as microseconds, dates as dates."""
    if name in TIME_ATTRIBUTES:
        return from_datetime(value) if isinstance(value, dt.datetime) else parse_rfc3339(value)
    if name in DATE_ATTRIBUTES:
        return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)
    return value


def kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "text"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def compare(op: Any, a: Any, b: Any) -> bool:
    if a is None or b is None or kind(a) != kind(b):
        return False
    return op(a, b)


def bucket(customer_id: str, salt: str) -> int:
    """The README's formula: blake2b-64 of the id, then blake2b-64 of that keyed with the salt, mod 100."""
    inner = hashlib.blake2b(customer_id.encode("utf-8"), digest_size=8).digest()
    outer = hashlib.blake2b(inner, digest_size=8, key=salt.encode("utf-8")).digest()
    return int.from_bytes(outer, "big") % 100


def birthday_within(born: dt.date, now: int, days: int) -> bool:
    """A birthday (29 February falls on 28 February in common years) on one of the `days` UTC
    calendar days starting today."""
    today = to_datetime(now).date()
    for k in range(days):
        day = today + dt.timedelta(days=k)
        if (day.month, day.day) == (born.month, born.day):
            return True
        if (born.month, born.day) == (2, 29) and (day.month, day.day) == (2, 28) \
                and not calendar.isleap(day.year):
            return True
    return False


def repeated(spec: dict[str, Any], person: Customer, now: int) -> bool:
    """Some item has at least `at_least` counted events with now - t < within, and (with
    without_order_within W) no order_placed of that item with now - t < W."""
    kind_ = ev.ProductViewed if spec["event"] == "product_viewed" else ev.OrderPlaced
    per = spec.get("per", "product")
    window = parse_duration(spec["within"])
    counts: Counter[str] = Counter()
    for t, e in person.events:
        if isinstance(e, kind_) and now - t < window:
            counts.update(items_of(e, per))
    blocked: set[str] = set()
    if "without_order_within" in spec:
        block = parse_duration(spec["without_order_within"])
        for t, e in person.events:
            if isinstance(e, ev.OrderPlaced) and now - t < block:
                blocked |= items_of(e, per)
    return any(n >= spec["at_least"] and item not in blocked for item, n in counts.items())


def items_of(event: ev.Event, per: str) -> set[str]:
    """The items (products or categories) one event is about; an order counts once per item."""
    if isinstance(event, ev.ProductViewed):
        return {event.product_id if per == "product" else event.category}
    if per == "product":
        return {i.product_id for i in event.items}
    return {i.category for i in event.items if i.category is not None}


# ------------------------------------------------------------------------------------------------
# Computed traits

AGGREGATIONS = ("count", "sum", "avg", "min", "max", "most_frequent", "distinct_count")


def counted_payments(person: Customer) -> list[tuple[int, ev.OrderPaid]]:
    """The payments paid_orders counts: the first per order, unless the order is cancelled (before
    or after it, in arrival order)."""
    paid: dict[str, tuple[int, ev.OrderPaid]] = {}
    cancelled: set[str] = set()
    for t, e in person.events:
        if isinstance(e, ev.OrderPaid) and e.order_id not in paid and e.order_id not in cancelled:
            paid[e.order_id] = (t, e)
        elif isinstance(e, ev.OrderCancelled):
            cancelled.add(e.order_id)
            paid.pop(e.order_id, None)
    return list(paid.values())


def in_window(spec: dict[str, Any], age: int) -> bool:
    if "within" in spec:
        return age < parse_duration(spec["within"])
    if "between" in spec:
        far, near = (parse_duration(d) for d in spec["between"])
        return near <= age < far
    return True


def field_of(event: Any, item: Any, field: str) -> Any:
    if field.startswith("items."):
        return getattr(item, field[len("items."):])
    return getattr(event, field)


def where_holds(where: dict[str, Any], event: Any, item: Any) -> bool:
    for field, ops in where.items():
        value = field_of(event, item, field)
        for op, operand in ops.items():
            if op == "exists":
                ok = (value is not None) == operand
            elif op == "in":
                ok = value is not None and value in operand
            else:
                ok = value is not None and COMPARISONS[op](value, operand)
            if not ok:
                return False
    return True


def trait(spec: dict[str, Any], person: Customer, now: int) -> Any:
    """The trait's value at `now`, from the customer's whole counted history."""
    (aggregation, target), = ((k, spec[k]) for k in AGGREGATIONS if k in spec)
    event_type, _, field = target.partition(".")
    if event_type == "order_paid":
        occurrences: list[tuple[int, Any]] = counted_payments(person)
    else:
        cls = ev.EVENT_TYPES[event_type]
        occurrences = [(t, e) for t, e in person.events if isinstance(e, cls)]
    values = []
    for t, e in occurrences:
        if not in_window(spec, now - t):
            continue
        for item in (e.items if field.startswith("items.") else [None]):
            if not where_holds(spec.get("where", {}), e, item):
                continue
            value = field_of(e, item, field) if field else "one event"
            if value is not None:
                values.append(value)
    if aggregation == "count":
        return len(values)
    if aggregation == "distinct_count":
        return len(set(values))
    if aggregation == "sum":
        return math.fsum(values)
    if not values:
        return None
    if aggregation == "avg":
        return math.fsum(values) / len(values)
    if aggregation == "min":
        return min(values)
    if aggregation == "max":
        return max(values)
    counts = Counter(values)
    top = max(counts.values())
    return min(v for v, n in counts.items() if n == top)


# ------------------------------------------------------------------------------------------------
# RFM scores (docs/rfm.md)


def measure(person: Customer, name: str, now: int) -> Any:
    if name.startswith("trait."):
        return trait(person.traits[name[len("trait."):]], person, now)
    return person.get(name)


def rfm_value(person: Customer, which: str, now: int) -> Any:
    """rfm.r, .f, .m (1..levels) or .cell at now; None for a customer missing a measure."""
    spec = person.rfm or {}
    levels = spec.get("levels", 5)
    last = measure(person, spec.get("recency", "last_paid_at"), now)
    frequency = measure(person, spec.get("frequency", "paid_orders"), now)
    monetary = measure(person, spec.get("monetary", "paid_total"), now)
    if last is None or frequency is None or monetary is None:
        return None
    cuts = spec["cuts"]
    age = now - last
    r = levels - sum(1 for d in cuts["recency"] if age >= parse_duration(d))
    f = 1 + sum(1 for c in cuts["frequency"] if frequency >= c)
    m = 1 + sum(1 for c in cuts["monetary"] if monetary >= c)
    if which == "r":
        return r
    if which == "f":
        return f
    if which == "m":
        return m
    return cell(on_five(r, levels), on_five(f, levels))


def on_five(score: int, levels: int) -> int:
    """1 + 4 (score - 1) / (levels - 1), rounded half up."""
    return 1 + math.floor(Fraction(4 * (score - 1), levels - 1) + Fraction(1, 2))


def cell(r: int, f: int) -> str:
    """docs/rfm.md's table, row by row (R from 5 down)."""
    if r == 5:
        return "new" if f == 1 else "potential-loyalist" if f <= 3 else "champions"
    if r == 4:
        return "promising" if f == 1 else "potential-loyalist" if f <= 3 else "loyal"
    if r == 3:
        return "about-to-sleep" if f <= 2 else "need-attention" if f == 3 else "loyal"
    if r == 1 and f == 1:
        return "lost"
    return "hibernating" if f <= 2 else "at-risk" if f <= 4 else "cannot-lose"
