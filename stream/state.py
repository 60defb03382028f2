"""Per-customer state: one bounded, compact record holding only what segment rules read.

Bounds (why state stays small however long a history grows):
- paid orders are kept one by one (so a cancellation can take its amount back out) for the newest
  PAID_KEEP; older ones fold into counts and sums, where a cancellation can no longer reach them;
- cancelled order ids: the newest CANCELLED_KEEP (a payment after its cancellation is ignored);
- windowed event times: per item only as many times as the largest `at_least` needs, only for
  items seen within the largest window, and at most ITEMS_KEEP items;
- event ids for de-duplication: only those applied within DEDUP_WINDOW of stream time.
"""
from __future__ import annotations

import msgspec

from .buckets import customer_hash
from .timeutil import DAY

STATE_FORMAT = 1          # first byte of every serialized record; bump and migrate on change
PAID_KEEP = 32
CANCELLED_KEEP = 32
ITEMS_KEEP = 256
CATEGORIES_KEEP = 64
DEDUP_WINDOW = 7 * DAY


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
    # windowed event times: stream name -> item key -> ascending times (see rules.Stream)
    streams: dict[str, dict[str, list[int]]] = msgspec.field(default_factory=dict)
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
    # blake2b of the customer id (stream.buckets), for `bucket:` conditions, which see the state
    # only. Last and optional: a record written before it existed decodes with None, and
    # load_state fills it in from the key.
    id_hash: int | None = None

    def deadline(self) -> int | None:
        return min(self.timers.values()) if self.timers else None


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(CustomerState).decode
_PREFIX = bytes([STATE_FORMAT])


def dump_state(state: CustomerState) -> bytes:
    return _PREFIX + _encode(state)


def load_state(data: bytes, customer_id: str | None = None) -> CustomerState:
    """Decode a stored state; given its customer id, fill in an id_hash the record predates."""
    if not data or data[0] != STATE_FORMAT:
        raise ValueError(f"unknown customer state format {data[:1]!r}; this build reads format {STATE_FORMAT}")
    state = _decode(memoryview(data)[1:])
    if state.id_hash is None and customer_id is not None:
        state.id_hash = customer_hash(customer_id)
    return state
