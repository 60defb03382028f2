"""A backfill's run: the engine over the merged history into a sink, then the hand-off, and the
summary it prints. The command around it (checks, progress display) is stream.cli.backfill.
How it works: docs/backfill.md."""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import BinaryIO


from stream.runtime.garbage import rare_full_collections
from stream.backfill.handoff import dumped, hand_off
from stream.backfill.jobs import Outcome, run_jobs, split
from stream.backfill.plan import Span
from stream.backfill.reader import MergedHistory, Reading
from stream.backfill.request import Request
from stream.backfill.sinks import FileSink, TopicSink
from stream.engine.core import Engine
from stream.engine.store import MemoryStore
from stream.model.changes import SegmentChange
from stream.model.events import DeadLetter
from stream.model.time import BEFORE_TIME, format_rfc3339
from stream.replay.driver import ReplaySummary
from stream.rules.catalog import Catalog
from stream.runtime import metrics

_FLUSH_EVERY = 4096


def run(request: Request, catalog: Catalog, spans: list[Span], output: BinaryIO | None, dead: BinaryIO,
        progress: Callable[[Reading], contextlib.AbstractContextManager] | None = None) -> list[str]:
    """The backfill proper, over up to `request.jobs` processes (the same bytes whatever their
    number: stream.backfill.jobs); returns the summary lines."""
    started = time.perf_counter()
    config = request.config
    partitions = max((s.partition for s in spans if s.topic in config.input_topics), default=0) + 1
    sink: TopicSink | FileSink
    if output is None:
        assert request.output_topic is not None, "without an output file the request names a topic"
        sink = TopicSink(config, request.output_topic, partitions)
    else:
        sink = FileSink(output)
    jobs = request.jobs
    groups = split(request, spans, jobs)
    with contextlib.ExitStack() as running:
        running.enter_context(rare_full_collections())
        if len(groups) > 1:
            # the jobs stay up until the hand-off has taken their states
            outcome = running.enter_context(run_jobs(request, catalog, groups, sink, dead, progress))
        else:
            outcome = _one_engine(request, catalog, spans, sink, dead, progress)
        sink.close()
        dead.flush()
        counts, stats = outcome.counts, outcome.stats
        lines = ReplaySummary(counts.events, counts.dead_letters, time.perf_counter() - started, stats).lines()
        lines.insert(2, f"outside       {counts.outside} (before --from or from --until on)")
        lines.append(f"partitions    {len(spans)} ({sum(s.end - s.start for s in spans):,} records)")
        if len(groups) < jobs:
            why = "routed topics hold any customer's events" if config.routed_topics else "one per partition number"
            lines.append(f"jobs          {len(groups)} of --jobs {jobs} ({why})")
        else:
            lines.append(f"jobs          {len(groups)}")
        if outcome.now > BEFORE_TIME:         # the clock has moved: an event, or --until
            lines.append(f"stream time   {format_rfc3339(outcome.now)}")
        if request.handoff is not None:
            customers, records = hand_off(config, request.handoff, outcome.states,
                                          outcome.now if stats.applied else None, spans, partitions, catalog)
            lines.append(f"handed off    {customers:,} customers ({records:,} records) to group "
                         f"{request.handoff}: start the workers with --group-id {request.handoff}")
    return lines


def _one_engine(request: Request, catalog: Catalog, spans: list[Span], sink: TopicSink | FileSink, dead: BinaryIO,
                progress: Callable[[Reading], contextlib.AbstractContextManager] | None) -> Outcome:
    """One engine over the merged history, in this process."""
    store = MemoryStore()
    metrics.count_sheds()           # state shed to stay in bounds is counted and logged, as in a worker
    engine = Engine(catalog, store)

    def dead_letter(span: Span, offset: int, letter: DeadLetter) -> None:
        dead.write(letter.to_json_line(topic=span.topic, partition=span.partition, offset=offset))

    history = MergedHistory(request, spans, dead_letter)
    changes: list[SegmentChange] = []
    apply = engine.apply
    try:
        with progress(history) if progress else contextlib.nullcontext():
            for event in history:
                apply(event, changes)
                if len(changes) >= _FLUSH_EVERY:
                    sink.write(changes)
        if request.until is not None:
            engine.advance(request.until, changes)
        sink.write(changes)
    finally:
        history.close()
    return Outcome(history.counts, engine.stats, engine.now, dumped(store) if request.handoff is not None else ())
