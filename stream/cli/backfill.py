"""`segments backfill`: its flags and help, the request they make (stream.backfill.request) with every
unusable argument named by its flag, and the command they run (stream.backfill.command)."""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from stream.cli.settings_args import add_worker_arguments
from stream.errors import Problems
from stream.model.time import parse_duration, parse_rfc3339
from stream.runtime.settings import WorkerConfig

if TYPE_CHECKING:
    from rich.console import Console

    from stream.backfill.reader import Reading
    from stream.backfill.request import Request
    from stream.kafka.partition_ends import Key

# The worker's settings a backfill reads: where the input is, how it is decoded and evaluated, and
# which names belong to the live workers (so that a backfill never writes into them).
WORKER_SETTINGS = ("bootstrap_servers", "input_topics", "routed_topics", "changes_topic", "membership_topic",
                   "dead_letter_topic", "group_id", "segments_file", "max_message_bytes", "max_future_skew_ms",
                   "definitions_topic")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `backfill` subcommand of `segments`, running `run`."""
    parser = sub.add_parser("backfill", help="rebuild segments from the input topics' history (reproducible order)",
                            description="Replay the input topics' history, merged across topics and partitions in "
                                        "occurred_at order, through the engine: the same segment changes as "
                                        "`segments replay` over those events in that order. Reads the worker's "
                                        "settings (flags, SEGMENTS_* environment, --config file) for where the "
                                        "input is. Optionally hands the rebuilt state to the workers of a new "
                                        "consumer group (--handoff).")
    add_arguments(parser)
    parser.set_defaults(run=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_worker_arguments(parser, WORKER_SETTINGS)
    parser.add_argument("--from", dest="start", default="beginning", metavar="beginning|TIME|OFFSETS",
                        help="where to start: 'beginning'; an RFC 3339 TIME (events that occurred before it are "
                             "left out and do not fold into the state: the rebuilt state knows nothing before "
                             "TIME); or OFFSETS as topic:partition=offset,... (partitions not named start at "
                             "their beginning). Default: beginning")
    parser.add_argument("--until", default="now", metavar="now|TIME",
                        help="where to stop: 'now' (each partition's end when the backfill starts, so it ends "
                             "while producers write), or an RFC 3339 TIME: events that occurred at or after it "
                             "are left out (partitions are still read to their end, so late arrivals count), "
                             "then stream time advances to TIME, firing every timer due by then. Default: now")
    parser.add_argument("--seek-margin", default="1h", metavar="DURATION",
                        help="with --from TIME, start reading at records stamped this long before TIME, for "
                             "producers whose record timestamps run behind occurred_at (default 1h)")
    parser.add_argument("--output", required=True, metavar="PATH|-|kafka:TOPIC",
                        help="where segment changes go: JSON lines to a file ('-' for stdout), or a Kafka topic "
                             "of the backfill's own (created with the input's partition count when absent; "
                             "never the live workers' topics)")
    parser.add_argument("--dead-letter", metavar="PATH",
                        help="where bad messages go, as JSON lines with reason, topic, partition and offset "
                             "(default: stderr)")
    parser.add_argument("--handoff", metavar="GROUP",
                        help="write the rebuilt state for workers of the new consumer group GROUP: its changelog "
                             "<GROUP>-state-changelog and its input offsets at where the backfill stopped, in "
                             "one transaction; needs --until now and a GROUP never used. Without it: only report")
    parser.add_argument("--isolation", choices=("read_committed", "read_uncommitted"), default="read_committed",
                        help="which input records are read (default read_committed)")
    parser.add_argument("--jobs", metavar="N",
                        help="processes running the engine, each over its own input partitions (every topic's "
                             "partition p in the same one), merged into the same bytes one engine writes, "
                             "whatever N. Only without routed topics (their partitions hold any customer's "
                             "events): with them, one. Default: the cores this process may use")
    parser.add_argument("--no-progress", action="store_true", help="no progress display, even on a terminal")
    parser.add_argument("--ignore-definitions-topic", action="store_true",
                        help="evaluate the segments file (--segments) alone. Default: the file and the definitions "
                             "topic, resolved as a worker with these settings resolves them (the topic's latest "
                             "record wins per segment), so live-defined segments are backfilled too")


class ArgumentProblems(Problems):
    """Every unusable argument of a backfill, each naming its flag. Its text is the problems alone,
    one a line, as it always was; `listed` gives them under the heading the command prints."""

    heading = "unusable arguments"

    def __init__(self, problems: list[str]):
        super().__init__(problems, message="\n".join(problems))


def parse_offsets(text: str) -> dict[Key, int]:
    """'topic:partition=offset,...' -> {(topic, partition): offset}; every bad item is named."""
    offsets: dict[Key, int] = {}
    problems = []
    for item in (part.strip() for part in text.split(",")):
        where, sep, offset = item.partition("=")
        topic, colon, partition = where.rpartition(":")
        try:
            if not (sep and colon and topic):
                raise ValueError
            key, value = (topic.strip(), int(partition)), int(offset)
            if key[1] < 0 or value < 0:
                raise ValueError
        except ValueError:
            problems.append(f"--from: {item!r} is not topic:partition=offset (whole numbers, 0 or more)")
            continue
        if key in offsets:
            problems.append(f"--from: {key[0]}:{key[1]} is given more than once")
        offsets[key] = value
    if problems:
        raise ArgumentProblems(problems)
    return offsets


def parse_request(args: argparse.Namespace, config: WorkerConfig | None, problems: list[str]) -> Request | None:
    """The backfill's request from parsed flags; problems (each naming its flag) go to `problems`.
    `config` is None when the worker settings themselves had problems (already listed)."""
    from stream.backfill.request import KAFKA_OUTPUT, Request

    fields: dict[str, Any] = {"output": args.output, "dead_letter": args.dead_letter, "handoff": args.handoff,
                              "read_committed": args.isolation == "read_committed", "progress": not args.no_progress}
    start = args.start.strip()
    if start == "beginning":
        pass
    elif "=" in start:
        try:
            fields["from_offsets"] = parse_offsets(start)
        except ArgumentProblems as exc:
            problems += exc.problems
    else:
        try:
            fields["from_time"] = parse_rfc3339(start)
        except ValueError as exc:
            problems.append(f"--from: {exc}; or 'beginning', or topic:partition=offset,...")
    if args.until.strip() != "now":
        try:
            fields["until"] = parse_rfc3339(args.until)
        except ValueError as exc:
            problems.append(f"--until: {exc}; or 'now'")
    try:
        fields["seek_margin"] = parse_duration(args.seek_margin)
    except ValueError as exc:
        problems.append(f"--seek-margin: {exc}")
    if args.jobs is None:
        from stream.backfill.jobs import cores
        fields["jobs"] = cores()
    elif args.jobs.strip().isdigit() and int(args.jobs) >= 1:
        fields["jobs"] = int(args.jobs)
    else:
        problems.append(f"--jobs: {args.jobs!r} is not a whole number, 1 or more")
    if fields.get("from_time") is not None and fields.get("until") is not None \
            and fields["until"] <= fields["from_time"]:
        problems.append(f"--until {args.until} is not after --from {args.start}: the window is empty")
    if args.handoff is not None:
        if not args.handoff.strip():
            problems.append("--handoff: must name a consumer group")
        elif fields.get("until") is not None:
            problems.append("--handoff needs --until now: the workers continue from where the backfill stopped "
                            "reading, so events after --until would never be applied")
    if config is None:
        return None
    if config.bootstrap_servers is None:
        problems.append("--bootstrap-servers: a backfill reads the history of an existing cluster; name it "
                        "(flag, SEGMENTS_BOOTSTRAP_SERVERS or the config file)")
    if args.handoff is not None and args.handoff.strip() == config.group_id:
        problems.append(f"--handoff {args.handoff}: that is the live workers' group (--group-id); hand off to "
                        f"a new group and switch the workers over to it")
    request = Request(config=config, **fields)
    topic = request.output_topic
    if topic is not None:
        live = _live_topics(config) | ({WorkerConfig(group_id=request.handoff).changelog_topic}
                                       if request.handoff else set())
        if not topic:
            problems.append(f"--output {args.output}: name the topic after {KAFKA_OUTPUT}")
        elif topic in live:
            problems.append(f"--output {args.output}: {topic!r} is an input or a live worker topic; a backfill "
                            f"writes its changes to a topic of its own")
    elif args.output != "-" and not args.output.strip():
        problems.append("--output: must not be empty")
    return request


def _live_topics(config: WorkerConfig) -> set[str]:
    return {*config.input_topics, *config.routed_topics, config.changes_topic, config.membership_topic,
            config.dead_letter_topic, config.changelog_topic, config.repartition_topic,
            *([config.definitions_topic] if config.definitions_topic else [])}


def run(args: argparse.Namespace) -> int:
    """The checks (arguments, then the broker), then the run. Imported here: the backfill loads the
    Kafka client and the engine, which the other commands' start (and `segments --help`) need not pay for."""
    from confluent_kafka import KafkaException
    from rich.console import Console

    from stream.backfill.command import run as run_backfill
    from stream.backfill.definitions import evaluated, summary
    from stream.backfill.jobs import JobFailed
    from stream.backfill.plan import Span, plan
    from stream.cli.settings_args import load_config
    from stream.kafka.clients import kafka_problems
    from stream.rules.catalog import load_catalog
    from stream.rules.problems import DefinitionError
    from stream.runtime.settings import ConfigError, is_secret_key

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
            lines = run_backfill(request, resolution.catalog, spans, output, dead,
                                 progress=(lambda history: _progress(err, history)) if show else None)
    except OSError as exc:
        err.print(f"segments backfill: {exc.filename or request.output}: {exc.strerror or exc}", markup=False)
        return 1
    except KafkaException as exc:
        err.print(f"segments backfill: Kafka: {exc.args[0]}", markup=False)
        return 1
    except JobFailed as exc:
        err.print(f"segments backfill: {exc}", markup=False)
        return 1
    err.print("\n".join(lines), markup=False)
    return 0


@contextlib.contextmanager
def _progress(console: Console, history: Reading) -> Iterator[None]:
    """A bar per partition (records of its span taken into the merge, with ETA), refreshed from the
    fetch loop (which runs whenever a partition's buffer runs dry), or as a parallel backfill's
    jobs report their positions."""
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
