"""`segments bench`: engine throughput and state size on the synthetic workload, one core.

Figures are printed beside the raw ceiling measured in the same run (msgspec decode alone), so
the ratio survives a noisy machine.
"""
from __future__ import annotations

import gc
import statistics
import time

from rich.console import Console
from rich.table import Table

from stream.engine.core import Engine

from stream.engine.store import MemoryStore
from stream.model.changes import SegmentChange
from stream.model.events import Decoder, Event
from stream.model.state import dump_state
from stream.rules.catalog import load_catalog
from stream.tools.synth import shopper_events


def run_engine_bench(customers: int, events: int, seed: int) -> int:
    console = Console(highlight=False)
    console.print(f"generating {events:,} events over {customers:,} customers (seed {seed}) ...")
    lines = list(shopper_events(customers, events, seed))
    catalog = load_catalog()
    rows = []

    decode = Decoder().decode
    seconds, decoded = _timed(lambda: [decode(line) for line in lines])
    rows.append(("decode only (ceiling)", len(lines), seconds))

    engine = Engine(catalog)
    apply = engine.apply
    out: list[SegmentChange] = []
    # (synthetic events always decode to events: the isinstance checks only tell the checker so)
    pre_decoded = [event for event in decoded if isinstance(event, Event)]
    del decoded

    def apply_all() -> None:
        for event in pre_decoded:
            apply(event, out)
    seconds, _ = _timed(apply_all)
    rows.append(("engine apply (pre-decoded)", len(lines), seconds))
    changes, fired = engine.stats.changes, engine.stats.timers_fired
    pre_decoded.clear()

    store = MemoryStore()
    apply2 = Engine(catalog, store).apply
    out.clear()

    def decode_apply() -> None:
        for line in lines:
            event = decode(line)
            if isinstance(event, Event):
                apply2(event, out)
    seconds, _ = _timed(decode_apply)
    rows.append(("decode + engine apply", len(lines), seconds))

    sizes = [len(dump_state(st)) for st in store.values()]
    ceiling = rows[0][1] / rows[0][2]
    table = Table(title=f"engine, one core: {len(lines):,} events, {len(sizes):,} customers")
    for column in ("measure", "events/s", "x ceiling"):
        table.add_column(column, justify="right" if column != "measure" else "left")
    for name, count, secs in rows:
        rate = count / secs
        table.add_row(name, f"{rate:,.0f}", f"{rate / ceiling:.2f}")
    console.print(table)

    state = Table(title="state per customer (serialized)")
    for column in ("mean bytes", "p50", "p99", "max", "changes", "timers fired"):
        state.add_column(column, justify="right")
    quantiles = statistics.quantiles(sizes, n=100)
    state.add_row(f"{statistics.fmean(sizes):.0f}", f"{quantiles[49]:.0f}", f"{quantiles[98]:.0f}",
                  f"{max(sizes)}", f"{changes:,}", f"{fired:,}")
    console.print(state)
    return 0


def _timed(fn):
    # The engine's records are never cyclic; a full collection over millions of tracked dicts
    # would measure the collector, not the engine (the worker raises its thresholds likewise).
    gc.collect()
    gc.disable()
    try:
        started = time.perf_counter()
        result = fn()
        return time.perf_counter() - started, result
    finally:
        gc.enable()
