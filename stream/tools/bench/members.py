"""`segments bench members`: export a segment's members from partition stores of many customers,
beside the raw ceiling measured in the same run (plain rocksdict iteration over the same stores).

The stores are written directly (synthetic states shaped like the engine's: a few paid orders,
applied event ids, memberships and timers), not by running the engine over events: building 1M
customers through the engine would take minutes and measure the engine, which `bench engine` does.
"""
from __future__ import annotations

import os
import random
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from stream.model.buckets import customer_hash
from stream.storage.committed import CommittedStores
from stream.inspect.members import encode_rows, member_rows
from stream.model.state import CustomerState
from stream.storage.rocksdb_store import PartitionStore
from stream.model.time import DAY, parse_rfc3339

SEGMENT = "repeat-buyer"
_OTHERS = ("loyal", "champion", "high-value", "at-risk")


def _state(rng: random.Random, customer_id: str, t0: int) -> CustomerState:
    first = t0 + rng.randrange(300) * DAY
    orders = rng.randint(2, 4)
    paid = {f"o-{customer_id}-{i}": (first + i * DAY, round(rng.uniform(5, 500), 2)) for i in range(orders)}
    last = first + (orders - 1) * DAY
    member = {SEGMENT: last, **{name: last for name in _OTHERS if rng.random() < 0.1}}
    return CustomerState(
        first_seen=first, last_seen=last, paid=paid, paid_count=orders, paid_total=sum(a for _, a in paid.values()),
        first_paid=first, last_paid=last, orders_placed=orders, last_placed=last,
        categories_bought=["phones", "books"][:rng.randint(0, 2)], city=rng.choice((None, "Almaty", "Astana")),
        country="KZ", seen={f"e-{customer_id}-{i}": last for i in range(3)}, member=member,
        timers={SEGMENT: last + 60 * DAY, "at-risk": last + 60 * DAY}, id_hash=customer_hash(customer_id))


def build(root: Path, customers: int, partitions: int, seed: int) -> None:
    rng = random.Random(seed)
    t0 = parse_rfc3339("2025-01-01T00:00:00Z")
    stores = [PartitionStore(root / f"p{p}", cache_size=0) for p in range(partitions)]
    for i in range(customers):
        customer_id = f"c-{i:07d}"
        store = stores[i % partitions]
        store.put(customer_id, _state(rng, customer_id, t0))
        if i % 20_000 == 19_999 or i == customers - 1:
            for s in stores:
                s.set_stream_time(t0 + 400 * DAY)
                s.commit(i)
    for s in stores:
        s.close()


def run_members_bench(customers: int, partitions: int, seed: int) -> int:
    console = Console(highlight=False)
    with tempfile.TemporaryDirectory(prefix="segments-bench-") as tmp:
        state_dir = Path(tmp)
        console.print(f"writing {customers:,} customers' states into {partitions} partition stores ...")
        started = time.perf_counter()
        build(state_dir / "bench", customers, partitions, seed)
        console.print(f"  built in {time.perf_counter() - started:.1f} s")
        rows = []
        with CommittedStores(state_dir, "bench") as stores:
            started = time.perf_counter()
            count = sum(1 for p in stores.partitions for _ in p.db.items())
            rows.append(("raw rocksdict iteration (ceiling)", count, time.perf_counter() - started))
            started = time.perf_counter()
            count = sum(1 for _ in stores.items())
            rows.append(("merged into customer id order", count, time.perf_counter() - started))
            for fmt in ("csv", "jsonl"):
                members = 0

                def counted():
                    nonlocal members
                    for row in member_rows(stores.items(), SEGMENT):
                        members += 1
                        yield row
                started = time.perf_counter()
                with open(os.devnull, "wb") as sink:
                    for chunk in encode_rows(counted(), fmt):
                        sink.write(chunk)
                rows.append((f"segments members --format {fmt}", members, time.perf_counter() - started))
    ceiling = rows[0][2]
    table = Table(title=f"members export: {customers:,} customers in {partitions} stores, all in {SEGMENT}")
    for column in ("measure", "records", "seconds", "records/s", "x ceiling time"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    for name, count, seconds in rows:
        table.add_row(name, f"{count:,}", f"{seconds:.2f}", f"{count / seconds:,.0f}", f"{seconds / ceiling:.1f}")
    console.print(table)
    return 0
