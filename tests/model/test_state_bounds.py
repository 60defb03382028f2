"""A customer's state stays bounded for every attribute, whatever valid events arrive, and so a
changelog record always fits the changelog topic (README "State bounds"; the topics' side is
tests/runtime/test_topics.py, the shed metric's tests/runtime/test_metrics.py).

Events are built at the contract's bounds with four-byte characters (the worst case per character)
and decoded through the real contract, so they are exactly what a producer can send.
"""
from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream.model import events as ev
from stream.model.decoding import Decoder
from stream.engine.core import Engine
from stream.model.state import CUSTOM_KEEP, MAX_STATE_BYTES, SEEN_KEEP, CustomerState, dump_state, load_state
from stream.tools.synth import shopper_events
from stream.model.time import DAY
from tests.helpers import catalog_from, decode, default_catalog, event_bytes, iso
from tests.state_sizes import truncated, wide

# The bounds' tests read the shed counter: what a bound sheds is counted, as every driver has it.
pytestmark = pytest.mark.usefixtures("sheds_counted")

T0 = 1_735_689_600_000_000            # 2025-01-01T00:00:00Z in microseconds
# Every windowed stream the rules can ask for, each keeping the most times a rule can ask for.
HEAVY_CATALOG = catalog_from("""
segments:
""" + "".join(f"""
  heavy-{event.replace("_", "-")}-{per}:
    when:
      repeated: {{event: {event}, per: {per}, at_least: 100, within: 30d}}
""" for event in ("product_viewed", "order_placed") for per in ("product", "category")) + """
  vip:
    when:
      custom.tier: {eq: gold}
""")


def _event(kind: str, n: int, at: int, big: bool) -> bytes:
    def text(length: int) -> str:
        return wide(n, length) if big else f"x{n % 50}"
    eid = wide(n, ev.MAX_ID_CHARS) if big else f"e{n}"
    fields: dict[str, Any]
    if kind == "product_viewed":
        fields = {"product_id": text(ev.MAX_ID_CHARS), "category": text(ev.MAX_ID_CHARS),
                  "session_id": text(ev.MAX_ID_CHARS)}
    elif kind == "order_placed":
        fields = {"order_id": text(ev.MAX_ID_CHARS), "total": 1, "currency": "KZT",
                  "city": text(ev.MAX_CITY_CHARS), "country": text(ev.MAX_PROFILE_CHARS),
                  "items": [{"product_id": wide(n * 8 + i, ev.MAX_ID_CHARS), "quantity": 1, "price": 1,
                             "category": wide(n * 8 + i, ev.MAX_ID_CHARS)} for i in range(8)]}
    elif kind in ("order_paid", "order_cancelled"):
        fields = {"order_id": text(ev.MAX_ID_CHARS), **({"amount": 5} if kind == "order_paid" else {})}
    else:
        custom = {wide(n * 64 + i, ev.MAX_CUSTOM_KEY_CHARS): wide(i, ev.MAX_CUSTOM_TEXT_CHARS)
                  for i in range(ev.MAX_CUSTOM_KEYS)} if big else {"tier": "gold", f"k{n % 80}": n}
        fields = {"attributes": {"city": text(ev.MAX_CITY_CHARS), "country": text(ev.MAX_PROFILE_CHARS),
                                 "gender": text(ev.MAX_PROFILE_CHARS), "custom": custom}}
    return event_bytes(kind, "c", iso(at), eid, **fields)


KINDS = ("product_viewed", "order_placed", "order_paid", "order_cancelled", "customer_updated")
steps = st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 10**6), st.integers(0, 3 * DAY),
                           st.booleans()), min_size=1, max_size=400)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(steps=steps)
def test_any_valid_events_keep_the_state_within_its_bound(steps):
    engine = Engine(HEAVY_CATALOG)
    at = T0
    for kind, n, gap, big in steps:
        at += gap
        engine.apply(decode(_event(kind, n, at, big)))
        state = engine.store["c"]
        data = dump_state(state)
        assert len(data) <= MAX_STATE_BYTES
        assert len(state.seen) <= SEEN_KEEP and len(state.custom) <= CUSTOM_KEEP
        # What was stored is what the engine goes on with, and it still reads back.
        assert load_state(data) == state
        assert state.paid_count == len(state.paid) + (state.folded[0] if state.folded else 0)


def test_the_bound_is_reached_and_shed_in_order():
    """Wide ids fill the dedup memory first; shedding it keeps the state within the bound, counted."""
    engine = Engine(HEAVY_CATALOG)
    before = truncated("dedup_ids")
    for n in range(300):
        engine.apply(decode(_event("order_paid", n, T0 + n, big=True)))
        dump_state(engine.store["c"])
    state = engine.store["c"]
    assert truncated("dedup_ids") > before
    assert len(dump_state(state)) <= MAX_STATE_BYTES
    assert state.paid_count == 300 and state.paid_total == 1500      # the aggregates lose nothing
    assert 0 < len(state.seen) < 300


def test_ten_megabyte_sized_custom_updates_stay_bounded():
    """The finding: 10 customer_updated events of ~0.7 MB custom values each made a 7.4 MB state.
    Through the decoder each is a dead letter; folded as they are (as an unvalidated Struct would
    be), the state still stays within its bound, counted, and keeps the names it had first."""
    big = {f"k{i}": "v" * 12_000 for i in range(60)}
    raw = event_bytes("customer_updated", "c", iso(T0), "e-big", attributes={"custom": big})
    assert 700_000 < len(raw) < 1 << 20
    assert isinstance(Decoder().decode(raw), ev.DeadLetter)
    engine, custom = Engine(default_catalog()), truncated("custom")
    for n in range(10):
        attrs = ev.Attributes(custom={f"n{n}-k{i}": "v" * 12_000 for i in range(60)})
        engine.apply(ev.CustomerUpdated(event_id=f"e{n}", customer_id="c", occurred_at=_at(T0 + n), attributes=attrs))
        assert len(dump_state(engine.store["c"])) <= MAX_STATE_BYTES
    state = engine.store["c"]
    assert truncated("custom") >= custom + 10
    assert state.custom and set(state.custom) <= {f"n0-k{i}" for i in range(60)}
    assert len(state.seen) == 10            # the custom values swelled it: the dedup ids stay


def _at(us: int):
    return msgspec.json.decode(json.dumps(iso(us)).encode(), type=ev.Instant)


def test_custom_names_beyond_the_bound_are_dropped_and_known_ones_still_update():
    engine = Engine(default_catalog())
    names = truncated("custom_names")
    first = {f"k{i}": i for i in range(CUSTOM_KEEP)}
    engine.apply(decode(event_bytes("customer_updated", "c", iso(T0), "e1", attributes={"custom": first})))
    assert truncated("custom_names") == names
    update = {"new-1": 1, "k3": "changed", "new-2": 2}
    engine.apply(decode(event_bytes("customer_updated", "c", iso(T0 + 1), "e2", attributes={"custom": update})))
    custom = engine.store["c"].custom
    assert list(custom) == list(first) and custom["k3"] == "changed"
    assert truncated("custom_names") == names + 1


def test_dedup_memory_keeps_the_newest_ids():
    engine = Engine(default_catalog())
    for n in range(SEEN_KEEP + 100):
        engine.apply(decode(event_bytes("cart_updated", "c", iso(T0 + n), f"e{n}", cart_id="k", value=1, items=[])))
    seen = engine.store["c"].seen
    assert len(seen) == SEEN_KEEP and "e99" not in seen and "e100" in seen
    applied = engine.stats.applied
    engine.apply(decode(event_bytes("cart_updated", "c", iso(T0 + 9), "e100", cart_id="k", value=1, items=[])))
    assert engine.stats.duplicates == 1 and engine.stats.applied == applied


def test_realistic_states_stay_small_and_untouched():
    """The synthetic marketplace never reaches a bound: states average well under 1 KB."""
    engine = Engine(default_catalog())
    counted = {r: truncated(r) for r in ("dedup_ids", "windowed_items", "custom", "custom_names")}
    decoder = Decoder()
    for raw in shopper_events(500, 20_000):
        event = decoder.decode(raw)
        if not isinstance(event, ev.DeadLetter):
            engine.apply(event)
    sizes = [len(dump_state(state)) for state in engine.store.values()]
    assert sum(sizes) / len(sizes) < 1024 and max(sizes) < MAX_STATE_BYTES // 4
    assert {r: truncated(r) for r in counted} == counted


def test_an_unsheddable_state_is_refused_loudly():
    state = CustomerState(first_seen=0, last_seen=0, member={wide(i, 128): i for i in range(200)})
    try:
        dump_state(state)
    except ValueError as exc:
        assert "cannot be brought within" in str(exc)
    else:
        raise AssertionError("a state over the bound with nothing to shed was written")


def test_the_model_imports_msgspec_and_the_stdlib_only():
    """The model reports what a bound shed (stream.model.state.on_shed); counting and logging are
    the runtime's (stream.runtime.metrics), so importing the contracts pulls in no other layer."""
    program = (
        "import json, sys\n"
        "import msgspec, msgspec.json, msgspec.msgpack, msgspec.structs\n"       # and what msgspec imports
        "before = set(sys.modules)\n"
        "import stream.model.buckets, stream.model.changes, stream.model.events\n"
        "import stream.model.state, stream.model.time\n"
        "new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "stream = {m for m in set(sys.modules) - before if m.startswith('stream')}\n"
        # cython_runtime, _cython_3_x: what compiled modules (stream.model.time) register, not libraries
        "new = {m for m in new if m != 'cython_runtime' and not m.startswith('_cython_')}\n"
        "print(json.dumps([sorted(new - set(sys.stdlib_module_names) - {'stream', 'msgspec'}), sorted(stream)]))\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    foreign, stream = json.loads(done.stdout)
    assert foreign == [] and {m for m in stream if not m.startswith("stream.model")} == {"stream"}, done.stdout


