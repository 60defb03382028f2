"""Per-customer state: one bounded, compact record holding only what segment rules read. Each part
is bounded, and dump_state never returns more than MAX_STATE_BYTES: a state over it sheds in a
fixed order, each shed reported to the on_shed hooks (the bounds and the order: docs/state-bounds.md).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

import msgspec

from stream.model.buckets import customer_hash
from stream.model.time import DAY

STATE_FORMAT = 1          # first byte of every serialized record; bump and migrate on change
PAID_KEEP = 32
CANCELLED_KEEP = 32
ITEMS_KEEP = 256
CATEGORIES_KEEP = 64
DEDUP_WINDOW = 7 * DAY
# A shopper viewing a hundred products a day stays within it; duplicates (producer retries) come
# soon after their original, so the newest ids are the ones worth remembering.
SEEN_KEEP = 1024
CUSTOM_KEEP = 64
# Computed traits (stream.rules.traits): per trait, its newest events one by one, and for a lifetime
# most_frequent / distinct_count trait the counts of at most TRAIT_VALUES_KEEP values folded out of
# them (docs/state-bounds.md).
TRAIT_EVENTS_KEEP = 128
TRAIT_VALUES_KEEP = 64
# The synthetic marketplace's states average under 1 KB; the bound is for the extreme customer.
MAX_STATE_BYTES = 64 * 1024


TraitValue = int | float | str | None
# How a trait folds the events its bound pushes out (TraitState.fold): a windowed trait drops them
# (they would leave its window anyway, but never at their own instant once folded).
FOLD_NONE, FOLD_NUMBERS, FOLD_VALUES = "", "numbers", "values"


class TraitState(msgspec.Struct, array_like=True, gc=False):
    """One computed trait's kept history: (occurred_at, value, order_id) in time order, arrivals
    of equal times in arrival order; order_id only for order_paid (a cancellation takes its entry
    out), else "". Values are the aggregated field's (None for a count). Beyond TRAIT_EVENTS_KEEP
    the oldest leave: a lifetime trait folds them into `folded` (count, sum, min, max) or `tally`
    (value -> count) by `fold`, a windowed one drops them. `key` names the definition recorded
    (stream.rules.traits.Trait.key): a trait redefined differently ignores, then replaces, it."""
    key: int = 0
    fold: str = FOLD_NONE
    events: list[tuple[int, TraitValue, str]] = msgspec.field(default_factory=list)
    folded: tuple[int, float, int | float | None, int | float | None] | None = None
    tally: list[tuple[int | float | str, int]] = msgspec.field(default_factory=list)


class CustomerState(msgspec.Struct, array_like=True, gc=False):
    # gc=False: these records hold only strings, numbers and containers of them, never cycles, and
    # a million of them would otherwise make every garbage collection pass slow.
    first_seen: int
    last_seen: int
    # paid orders: order_id -> (paid_at, amount) for the newest PAID_KEEP, plus folded aggregates
    paid: dict[str, tuple[int, float]] = msgspec.field(default_factory=dict)
    folded: tuple[int, float, int, int] | None = None   # count, total, first_at, last_at
    cancelled: dict[str, int] = msgspec.field(default_factory=dict)
    # aggregates over all counted payments, kept up to date by the fold (read on every evaluation)
    paid_count: int = 0
    paid_total: float = 0.0
    first_paid: int | None = None
    last_paid: int | None = None
    orders_placed: int = 0
    last_placed: int | None = None
    categories_bought: list[str] = msgspec.field(default_factory=list)
    cart_updated_at: int | None = None
    cart_value: float | None = None
    abandoned_at: int | None = None
    abandoned_value: float | None = None
    last_viewed: int | None = None
    # windowed event times: stream name -> item key -> ascending times (see rules.Stream). Tuples,
    # not lists: msgpack writes both as the same array, and CPython's cyclic GC stops tracking a
    # tuple of ints (and then the tables holding only such tuples), so the many small windows of a
    # large store cost the collector nothing; lists it scanned on every full collection.
    streams: dict[str, dict[str, tuple[int, ...]]] = msgspec.field(default_factory=dict)
    city: str | None = None
    country: str | None = None
    gender: str | None = None
    birth_date: str | None = None
    email_opt_in: bool | None = None
    custom: dict[str, str | int | float | bool] = msgspec.field(default_factory=dict)
    # engine bookkeeping: applied event ids, current memberships, pending time-driven flips
    seen: dict[str, int] = msgspec.field(default_factory=dict)
    member: dict[str, int] = msgspec.field(default_factory=dict)      # segment -> member since
    timers: dict[str, int] = msgspec.field(default_factory=dict)      # segment -> next flip
    # blake2b of the customer id (stream.model.buckets), for `bucket:` conditions, which see the state
    # only. Last and optional: a record written before it existed decodes with None, and
    # load_state fills it in from the key.
    id_hash: int | None = None
    # computed traits' histories: trait name -> its TraitState. Last, and left out of the record
    # while empty (dump_state), so a state without traits is written as before traits existed.
    traits: dict[str, TraitState] = msgspec.field(default_factory=dict)
    # segment -> the instant the customer last left it, kept only for the segments a definition
    # reads with `segment: {name: ..., left_within: ...}` (so bounded by the catalog); None while
    # there is none (no empty table in every state of a catalog without them). After traits, and
    # left out of the record while None, like them while empty (_encode_state).
    left: dict[str, int] | None = None

    def deadline(self) -> int | None:
        return min(self.timers.values()) if self.timers else None


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(CustomerState).decode
_PREFIX = bytes([STATE_FORMAT])
_FIELDS = len(CustomerState.__struct_fields__)
_ARRAY16 = b"\xdc"                   # msgpack's array header for 16 to 65535 elements
_EMPTY_MAP = b"\x80"
_NIL = b"\xc0"


def _header(fields: int) -> bytes:
    return _ARRAY16 + fields.to_bytes(2, "big")


_FULL_HEADER = _header(_FIELDS)


def _encode_state(state: CustomerState) -> bytes:
    """The record without its trailing `left` while None, then `traits` while empty (msgspec
    writes every field of an array-like struct): a state without them keeps the bytes the build
    before them wrote, and any build reads both (missing last fields decode as their defaults).
    Fields are left out from the end only: `traits` only with `left` left out too."""
    data = _encode(state)
    if state.left is not None or not (data.startswith(_FULL_HEADER) and data.endswith(_NIL)):
        return data
    if state.traits or not data.endswith(_EMPTY_MAP + _NIL):
        return _header(_FIELDS - 1) + data[len(_FULL_HEADER):-1]
    return _header(_FIELDS - 2) + data[len(_FULL_HEADER):-2]


def dump_state(state: CustomerState) -> bytes:
    """The stored bytes of `state`, at most MAX_STATE_BYTES: a state over the bound is first shed
    in place (see the module docstring), so what the engine holds is what is stored."""
    data = _PREFIX + _encode_state(state)
    if len(data) <= MAX_STATE_BYTES:
        return data
    size, shed_from = len(data), []
    # First only the parts that hold a real share of the record, in the order of least harm (a
    # state swollen by custom values keeps its dedup ids); then, if need be, anything that is left.
    for share in (MAX_STATE_BYTES // 8, 0):
        for reason, field, shed in _SHEDS:
            shed_any = False
            while (len(data) > MAX_STATE_BYTES and len(_encode(getattr(state, field))) > share
                   and shed(state)):
                shed_any = True
                data = _PREFIX + _encode_state(state)
            if shed_any:
                shed_from.append(reason)
            if len(data) <= MAX_STATE_BYTES:
                for reason in dict.fromkeys(shed_from):
                    note_truncated(reason, f"a state of {size} bytes was over the {MAX_STATE_BYTES}-byte "
                                           f"bound, now {len(data)}")
                return data
    # Only segment memberships and timers are left, and the catalog bounds those.
    raise ValueError(f"customer state of {len(data)} bytes cannot be brought within {MAX_STATE_BYTES} bytes")


# What a bound dropped: hook(reason, what), `what` in sizes and counts only (see note_truncated).
ShedHook = Callable[[str, str], None]
_shed_hooks: list[ShedHook] = []


def on_shed(hook: ShedHook) -> None:
    """Call `hook(reason, what)` for every state bound that drops something from now on. The
    runtime installs the one that counts and logs (stream.runtime.metrics)."""
    _shed_hooks.append(hook)


def note_truncated(reason: str, what: str) -> None:
    """Report a state bound that dropped something to the installed hooks. `what` must never
    carry a value from the state (ids, attributes): only sizes and counts."""
    for hook in _shed_hooks:
        hook(reason, what)


def fold_oldest_paid(st: CustomerState) -> None:
    """The oldest paid order leaves the one-by-one list for the folded aggregates (whose totals
    do not change: recount() counts both)."""
    paid = st.paid
    oldest = min(paid, key=lambda k: paid[k][0])
    at, amount = paid.pop(oldest)
    if st.folded is None:
        st.folded = (1, amount, at, at)
    else:
        count, total, first, last = st.folded
        st.folded = (count + 1, math.fsum((total, amount)), min(first, at), max(last, at))


def recount(st: CustomerState) -> None:
    """Aggregates over counted payments; fsum makes the total independent of payment order."""
    times = [p[0] for p in st.paid.values()]
    amounts = [p[1] for p in st.paid.values()]
    count = len(times)
    if st.folded is not None:
        folded_count, folded_total, first, last = st.folded
        count += folded_count
        amounts.append(folded_total)
        times += (first, last)
    st.paid_count = count
    st.paid_total = math.fsum(amounts)
    st.first_paid = min(times) if times else None
    st.last_paid = max(times) if times else None


_V = TypeVar("_V")


def _halve(mapping: dict[str, _V], newest: bool = False) -> dict[str, _V]:
    """`mapping` without its newer half (by insertion order), or with only it: newest=True. The
    half dropped is rounded up, so a single entry goes too."""
    items = list(mapping.items())
    drop = (len(items) + 1) // 2
    return dict(items[drop:] if newest else items[:len(items) - drop])


def _shed_seen(st: CustomerState) -> bool:
    if not st.seen:
        return False
    st.seen = _halve(st.seen, newest=True)      # ids are inserted in stream-time order
    return True


def _shed_streams(st: CustomerState) -> bool:
    if not any(st.streams.values()):
        return False
    # Items are kept in the order they were last touched: the stalest go first.
    st.streams = {name: _halve(table, newest=True) for name, table in st.streams.items()}
    return True


def fold_oldest_trait_events(ts: TraitState, n: int) -> None:
    """The oldest `n` events leave a trait's one-by-one history: into its aggregates (a lifetime
    trait, by its `fold`) or gone (a windowed one)."""
    leaving, ts.events = ts.events[:n], ts.events[n:]
    if ts.fold == FOLD_NUMBERS:
        numbers = [v for _, v, _ in leaving if isinstance(v, (int, float)) and not isinstance(v, bool)]
        count, total, low, high = ts.folded if ts.folded is not None else (0, 0.0, None, None)
        if numbers:
            low = min(numbers) if low is None else min(low, *numbers)
            high = max(numbers) if high is None else max(high, *numbers)
        ts.folded = (count + len(leaving), math.fsum((total, *numbers)), low, high)
    elif ts.fold == FOLD_VALUES:
        tally = dict(ts.tally)
        dropped = 0
        for _, v, _ in leaving:
            if v is None:
                continue
            if v in tally or len(tally) < TRAIT_VALUES_KEEP:
                tally[v] = tally.get(v, 0) + 1
            else:
                dropped += 1
        ts.tally = list(tally.items())
        if dropped:
            note_truncated("trait_values", f"{dropped} trait events of values beyond the {TRAIT_VALUES_KEEP} "
                                           f"a lifetime trait counts were dropped")


def _shed_traits(st: CustomerState) -> bool:
    if not any(ts.events for ts in st.traits.values()):
        return False
    for ts in st.traits.values():
        fold_oldest_trait_events(ts, (len(ts.events) + 1) // 2)
    return True


def _shed_custom(st: CustomerState) -> bool:
    if not st.custom:
        return False
    st.custom = _halve(st.custom)                # the names the customer has had longest stay
    return True


def _shed_categories(st: CustomerState) -> bool:
    if not st.categories_bought:
        return False
    del st.categories_bought[len(st.categories_bought) // 2:]
    return True


def _shed_cancelled(st: CustomerState) -> bool:
    if not st.cancelled:
        return False
    st.cancelled = _halve(st.cancelled, newest=True)
    return True


def _shed_paid(st: CustomerState) -> bool:
    if not st.paid:
        return False
    for _ in range((len(st.paid) + 1) // 2):
        fold_oldest_paid(st)
    recount(st)
    return True


# Least harm first: an old duplicate applied twice, a stale item's window, rarely read profile
# extras, then the order history (whose counts and sums survive in the aggregates).
_SHEDS: tuple[tuple[str, str, Callable[[CustomerState], bool]], ...] = (
    ("dedup_ids", "seen", _shed_seen), ("windowed_items", "streams", _shed_streams),
    ("trait_events", "traits", _shed_traits),
    ("custom", "custom", _shed_custom), ("categories", "categories_bought", _shed_categories),
    ("cancelled_orders", "cancelled", _shed_cancelled), ("paid_orders", "paid", _shed_paid))


def load_state(data: bytes, customer_id: str | None = None) -> CustomerState:
    """Decode a stored state; given its customer id, fill in an id_hash the record predates."""
    if not data or data[0] != STATE_FORMAT:
        raise ValueError(f"unknown customer state format {data[:1]!r}; this build reads format {STATE_FORMAT}")
    state = _decode(memoryview(data)[1:])
    if state.id_hash is None and customer_id is not None:
        state.id_hash = customer_hash(customer_id)
    return state
