"""`segments bench backfill`: the backfill over a pre-loaded input topic on a fresh embedded broker,
beside what bounds it, all measured in the same run over the same records:
- the raw ceiling: confluent-kafka consume by assign + msgspec decode, nothing else; and the same
  in one process per core, each over the partitions a job of the backfill reads (the ceiling of
  the backfill with one job per core);
- the merged read: the backfill's reading, decoding and heap merge, without the engine;
- the engine alone over the same events, pre-decoded, in merged order (one core; the garbage
  collector set as the backfill sets it, stream.runtime.garbage);
- the backfill end to end (changes written to /dev/null), with one job, then with one per core.
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import os
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from stream.backfill.command import run
from stream.runtime.garbage import rare_full_collections
from stream.backfill.jobs import cores, split
from stream.backfill.plan import Span, plan
from stream.backfill.reader import MergedHistory
from stream.backfill.request import Request
from stream.engine.core import Engine
from stream.model.changes import SegmentChange
from stream.rules.catalog import load_catalog
from stream.tools.bench.worker import PARTITIONS, _consume_decode_rate, _fresh, _produce
from stream.tools.synth import shopper_events


def run_backfill_bench(events: int, customers: int, seed: int) -> int:
    console = Console(highlight=False)
    jobs = cores()
    table = Table(title=f"backfill, embedded broker, {PARTITIONS} partitions, {events:,} events over "
                        f"{customers:,} customers")
    for column in ("measure", "events/s", "ceiling", "ratio"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    console.print(f"producing {events:,} events ...")
    with _fresh("bf") as (config, bootstrap):
        lines = list(shopper_events(customers, events, seed))
        _produce(bootstrap, config.input_topics[0], lines)
        request = Request(config=config, output=os.devnull, progress=False)
        problems: list[str] = []
        spans = plan(request, problems)
        assert not problems, problems

        console.print("measuring ...")
        ceiling = _consume_decode_rate(bootstrap, config.input_topics[0], len(lines))
        groups = split(request, spans, jobs)
        shared = _shared_ceiling(bootstrap, config.input_topics[0], groups)
        started = time.perf_counter()
        history = MergedHistory(request, spans, on_dead=lambda *_: None)
        try:
            merged = list(history)
        finally:
            history.close()
        read_rate = len(merged) / (time.perf_counter() - started)
        engine, out = Engine(load_catalog()), list[SegmentChange]()
        with rare_full_collections():          # as the backfill runs it
            started = time.perf_counter()
            for event in merged:
                engine.apply(event, out)
            engine_rate = len(merged) / (time.perf_counter() - started)
        del merged, engine, out
        rates = [_backfill_rate(request, spans, len(lines), n) for n in (1, jobs)]
    # the ceiling of each measure: the raw read in one process, or in one per job
    one, each = "1 proc", f"{len(groups)} procs"
    for name, rate, bound, of in (
            ("consume + decode (ceiling)", ceiling, ceiling, one),
            (f"consume + decode, {len(groups)} processes (ceiling)", shared, shared, each),
            ("merged read: consume, decode, heap merge", read_rate, ceiling, one),
            ("engine alone, pre-decoded, merged order", engine_rate, ceiling, one),
            ("backfill, --jobs 1", rates[0], ceiling, one),
            (f"backfill, --jobs {jobs} (one per core)", rates[1], shared, each)):
        table.add_row(name, f"{rate:,.0f}", of, f"{rate / bound:.2f}")
    console.print(table)
    return 0


def _backfill_rate(request: Request, spans: list[Span], events: int, jobs: int) -> float:
    """Events per second of the whole backfill (its jobs started, the merge, the sink) with `jobs`."""
    with open(os.devnull, "wb") as sink, open(os.devnull, "wb") as dead:
        started = time.perf_counter()
        run(dataclasses.replace(request, jobs=jobs), load_catalog(), spans, sink, dead)
        return events / (time.perf_counter() - started)


def _shared_ceiling(bootstrap: str, topic: str, groups: list[list[Span]]) -> float:
    """The raw ceiling in one process per group of spans (a job's partitions), all timed from when
    every one is ready: all records over the time the slowest took."""
    context = multiprocessing.get_context("spawn")
    ready, results = context.Barrier(len(groups)), context.Queue()
    shares = [([s.partition for s in group], sum(s.end - s.start for s in group)) for group in groups]
    processes = [context.Process(target=_read_share, args=(bootstrap, topic, partitions, count, ready, results))
                 for partitions, count in shares]
    for process in processes:
        process.start()
    rates = [results.get(timeout=600) for _ in processes]
    for process in processes:
        process.join()
    return sum(count for _, count in shares) / max(count / rate for count, rate in rates)


def _read_share(bootstrap: str, topic: str, partitions: list[int], count: int, ready: Any, results: Any) -> None:
    """In a process of its own: the raw ceiling over `partitions`, sent back with their record count."""
    results.put((count, _consume_decode_rate(bootstrap, topic, count, partitions, ready.wait)))
