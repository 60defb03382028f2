"""`segments bench redefine`: one segment's definition changes over a partition of N stored customers.

The store is filled with realistic states (those of a synthetic shop, repeated under new ids), then
a changed definition of one segment is taken up the way the worker does (stream.definitions.live:
chunks of the pass, each followed by the changelog records it would produce and the local commit),
without Kafka. Beside it, in the same run, the ceiling: iterating and decoding the same states.
"""
from __future__ import annotations

import itertools
import shutil
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from stream.definitions.live import LiveDefinitions
from stream.definitions.resolution import file_definitions
from stream.rules.catalog import load_catalog
from stream.storage.keys import stream_time_record
from stream.storage.rocksdb_store import PartitionStore
from stream.tools.bench.samples import sample_states
from stream.worker.partition import PartitionTask

# The change: repeat buyers from two paid orders within 60 days to two within 90 (version 2).
CHANGED = "repeat-buyer"
NEW_DEFINITION = {"version": 2, "when": {"all": [{"paid_orders": {"gte": 2}}, {"last_paid_at": {"within": "90d"}}]}}


def run_redefine_bench(customers: int, seed: int) -> int:
    console = Console(highlight=False)
    catalog = load_catalog()
    samples, now = sample_states(5000, 50000, seed, catalog)
    directory = Path(tempfile.mkdtemp(prefix="segments-bench-redefine-"))
    try:
        console.print(f"filling a partition store with {customers:,} customers ...")
        store = PartitionStore(directory / "p0")
        # Filled as a restore from a changelog fills it: the store's own batched writes.
        records = ((f"c{n:08d}".encode(), samples[n % len(samples)], n) for n in range(customers))
        store.restore(itertools.chain(records, [(*stream_time_record(now), customers)]), batch_size=100_000)
        store.close()
        store = PartitionStore(directory / "p0")

        started = time.perf_counter()
        count = sum(1 for _ in store.scan(None, customers + 1))
        ceiling = time.perf_counter() - started
        assert count == customers

        file = file_definitions(catalog)
        live = LiveDefinitions(file, None)
        task = PartitionTask(0, store, catalog)
        live.attach(task)                                # adopts the file's definitions
        store.commit(0)
        live.file = {**file, CHANGED: NEW_DEFINITION}    # as if the file changed, or the topic
        moves = chunks = 0
        started = time.perf_counter()
        live.refresh([task])
        while live.step([task]):
            chunks += 1
            store.pending()                              # the changelog records a worker produces
            store.commit(chunks)
            moves += len(task.changes)
            task.changes.clear()
        elapsed = time.perf_counter() - started
        store.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    table = Table(title=f"re-evaluate one changed segment ({CHANGED}) over {customers:,} stored customers, one core")
    for column in ("measure", "seconds", "customers/s", "x ceiling"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    table.add_row("iterate + decode states (ceiling)", f"{ceiling:.1f}", f"{customers / ceiling:,.0f}", "1.00")
    table.add_row(f"re-evaluation: {chunks} chunks, {moves:,} moves, committed locally", f"{elapsed:.1f}",
                  f"{customers / elapsed:,.0f}", f"{ceiling / elapsed:.2f}")
    console.print(table)
    return 0
