"""`segments backfill`: the checks (arguments, then the broker), the run (the engine over the merged
history into a sink, then the hand-off) and its progress display and summary. How it works:
docs/backfill.md."""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import BinaryIO

from confluent_kafka import KafkaException

from stream.backfill.definitions import evaluated, summary
from stream.backfill.handoff import hand_off
from stream.backfill.plan import Span, plan
from stream.backfill.reader import MergedHistory
from stream.backfill.request import ArgumentProblems, Request, parse_request
from stream.backfill.sinks import FileSink, TopicSink
from stream.engine.core import Engine, MemoryStore
from stream.kafka.clients import kafka_problems
from stream.model.changes import SegmentChange
from stream.model.events import DeadLetter
from stream.model.time import BEFORE_TIME, format_rfc3339
from stream.replay.driver import ReplaySummary
from stream.rules.compiler import Catalog

_FLUSH_EVERY = 4096


def run(request: Request, catalog: Catalog, spans: list[Span], output: BinaryIO | None, dead: BinaryIO,
        progress: Callable[[MergedHistory], contextlib.AbstractContextManager] | None = None) -> list[str]:
    """The backfill proper; returns the summary lines."""
    started = time.perf_counter()
    config = request.config
    partitions = max((s.partition for s in spans if s.topic in config.input_topics), default=0) + 1
    sink: TopicSink | FileSink
    if output is None:
        assert request.output_topic is not None, "without an output file the request names a topic"
        sink = TopicSink(config, request.output_topic, partitions)
    else:
        sink = FileSink(output)
    store = MemoryStore()
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
        sink.close()
        dead.flush()
    finally:
        history.close()
    counts = history.counts
    lines = ReplaySummary(counts.events, counts.dead_letters, time.perf_counter() - started, engine.stats).lines()
    lines.insert(2, f"outside       {counts.outside} (before --from or from --until on)")
    lines.append(f"partitions    {len(spans)} ({sum(s.end - s.start for s in spans):,} records)")
    if engine.now > BEFORE_TIME:         # the clock has moved: an event, or --until
        lines.append(f"stream time   {format_rfc3339(engine.now)}")
    if request.handoff is not None:
        records = hand_off(config, request.handoff, store, engine.now if engine.stats.applied else None,
                           spans, partitions, catalog)
        lines.append(f"handed off    {len(store):,} customers ({records:,} records) to group "
                     f"{request.handoff}: start the workers with --group-id {request.handoff}")
    return lines


def main(args: argparse.Namespace) -> int:
    from rich.console import Console

    from stream.runtime.settings import ConfigError, is_secret_key, load_config
    from stream.rules.compiler import DefinitionError, load_catalog

    # soft_wrap: a problem or a group name is one line, whatever the terminal's width
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    problems: list[str] = []
    config = None
    try:
        config = load_config(args)
        problems += kafka_problems(config.kafka, is_secret_key)    # as the worker checks them
    except ConfigError as exc:
        problems += exc.problems
    request = parse_request(args, config, problems)
    catalog = None
    if config is not None:
        try:
            catalog = load_catalog(config.segments_file)
        except DefinitionError as exc:
            problems.append(str(exc))
    spans: list[Span] = []
    # The broker's checks (topics, offsets, a fresh hand-off group) need usable arguments.
    if request is not None and catalog is not None and not problems:
        try:
            spans = plan(request, problems)
            if not problems:
                resolution, where = evaluated(request.config, catalog, not args.ignore_definitions_topic)
        except (KafkaException, TimeoutError) as exc:
            reason = exc.args[0] if isinstance(exc, KafkaException) else exc
            err.print(f"segments backfill: {request.config.bootstrap_servers}: {reason}", markup=False)
            return 1
    if problems or request is None:      # no request: the settings' problems are listed
        err.print(f"segments backfill: {ArgumentProblems.listed(problems)}", markup=False)
        return 2
    # Said first: what a long backfill evaluates is known before it starts.
    err.print("\n".join(summary(resolution, where)), markup=False)
    try:
        with contextlib.ExitStack() as stack:
            output = None
            if request.output_topic is None:
                output = sys.stdout.buffer if request.output == "-" else stack.enter_context(open(request.output, "wb"))
            dead = stack.enter_context(open(request.dead_letter, "wb")) if request.dead_letter else sys.stderr.buffer
            show = request.progress and err.is_terminal
            lines = run(request, resolution.catalog, spans, output, dead,
                        progress=(lambda history: _progress(err, history)) if show else None)
    except OSError as exc:
        err.print(f"segments backfill: {exc.filename or request.output}: {exc.strerror or exc}", markup=False)
        return 1
    except KafkaException as exc:
        err.print(f"segments backfill: Kafka: {exc.args[0]}", markup=False)
        return 1
    err.print("\n".join(lines), markup=False)
    return 0


@contextlib.contextmanager
def _progress(console, history: MergedHistory) -> Iterator[None]:
    """A bar per partition (records of its span taken into the merge, with ETA), refreshed from the
    fetch loop (which runs whenever a partition's buffer runs dry)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress("{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as bar:
        tasks = {s.index: bar.add_task(f"{s.span.topic}[{s.span.partition}]", total=s.span.end - s.span.start)
                 for s in history.sources}
        next_at = [0.0]

        def refresh() -> None:
            # Refreshing per fetch would cost more than the fetch: four times a second.
            now = time.monotonic()
            if now >= next_at[0]:
                next_at[0] = now + 0.25
                for source in history.sources:
                    bar.update(tasks[source.index], completed=source.position - source.span.start)
        history.on_fetch = refresh
        yield
