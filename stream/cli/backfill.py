"""`segments backfill`: its flags and help, and the command they run (stream.backfill.command)."""
from __future__ import annotations

import argparse

from stream.runtime.settings import add_worker_arguments

# The worker's settings a backfill reads: where the input is, how it is decoded and evaluated, and
# which names belong to the live workers (so that a backfill never writes into them).
WORKER_SETTINGS = ("bootstrap_servers", "input_topics", "routed_topics", "changes_topic", "membership_topic",
                   "dead_letter_topic", "group_id", "segments_file", "max_message_bytes", "max_future_skew_ms",
                   "definitions_topic")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The `backfill` subcommand of `segments`, running `run`."""
    parser = sub.add_parser("backfill", help="rebuild segments from the input topics' history (reproducible order)",
                            description="Replay the input topics' history, merged across topics and partitions in "
                                        "occurred_at order, through the engine: the same segment changes as "
                                        "`segments replay` over those events in that order. Reads the worker's "
                                        "settings (flags, SEGMENTS_* environment, --config file) for where the "
                                        "input is. Optionally hands the rebuilt state to the workers of a new "
                                        "consumer group (--handoff).")
    add_arguments(parser)
    parser.set_defaults(func=run)


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
    parser.add_argument("--no-progress", action="store_true", help="no progress display, even on a terminal")
    parser.add_argument("--ignore-definitions-topic", action="store_true",
                        help="evaluate the segments file (--segments) alone. Default: the file and the definitions "
                             "topic, resolved as a worker with these settings resolves them (the topic's latest "
                             "record wins per segment), so live-defined segments are backfilled too")


def run(args: argparse.Namespace) -> int:
    # Imported here: the backfill loads the Kafka client and the engine, which the other commands'
    # start (and `segments --help`) need not pay for.
    from stream.backfill.command import main

    return main(args)
