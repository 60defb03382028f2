"""`segments members` and `segments explain`: who is in a segment, and why, from the worker's stores.

Both read the partition stores a worker keeps (stream.storage.committed), while it runs or not, and take
the worker's own settings to find them: --state-dir, --group-id, --segments, the same SEGMENTS_*
variables and --config file (stream.runtime.settings). Answers are as of each partition's last committed batch.
The segments are the file's and those the stores recorded running (stream.inspect.running): one added
with `segments define` is known here once a worker has taken it up.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from stream.cli.settings_args import add_worker_arguments, load_config
from stream.runtime.settings import ConfigError

_SETTINGS = ("state_dir", "group_id", "segments_file")
_AS_OF = ("Reads the worker's RocksDB partition stores (also while the worker runs, without disturbing "
          "it): the answer is as of each partition's last committed batch. Takes the worker's settings "
          "(flags, SEGMENTS_* environment, --config file) to find them; of those, only the state dir, "
          "group id and segments file matter here.")


def add_inspect_commands(sub: Any) -> None:
    _add_command(sub, "members", "current members of a segment, as CSV or JSON lines",
                 "Current members of SEGMENT with customer_id, member_since, paid_orders, paid_total, "
                 "average_order_value, last_order_at, city and country (and the --fields columns), "
                 "sorted by customer id, streamed.",
                 ("segment", "segment name: of the segments file, or defined through the definitions topic"),
                 ("csv", "jsonl"), "default: csv (with a header)", _members, _members_options)
    _add_command(sub, "explain", "a customer's state, segments, and why each condition holds or not",
                 "The customer's state, current segments with member-since, and for every segment each "
                 "condition with its value and verdict, and when the next time-driven move is due.",
                 ("customer", "customer id, as in the events"), ("text", "json"), "default: text", _explain)


def _members_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", metavar="PATH|-", default="-", help="where to write (default: stdout)")
    parser.add_argument("--fields", metavar="A,B,...", default="",
                        help="extra columns after the fixed ones, comma-separated: any attribute of the "
                             "definitions (instants RFC 3339), custom.<field>, trait.<name> (its value at "
                             "the partition's stream time; traits of the definitions the stores run and "
                             "of the segments file), rfm.r, rfm.f, rfm.m, rfm.cell (RFM scores, with an rfm "
                             "section with cut points); an unknown one exits 2 before any row")


def _add_command(sub: Any, name: str, summary: str, description: str, operand: tuple[str, str],
                 formats: tuple[str, str], format_help: str, run: Callable[[argparse.Namespace], int],
                 more: Callable[[argparse.ArgumentParser], object] = lambda parser: None) -> None:
    """One command over the stores: its operand (name, help), --format (the first of `formats` by
    default), what `more` adds, then the worker settings that find the stores."""
    parser = sub.add_parser(name, help=summary, description=f"{description} {_AS_OF}")
    parser.add_argument(operand[0], metavar=operand[0].upper(), help=operand[1])
    parser.add_argument("--format", choices=formats, default=formats[0], help=format_help)
    more(parser)
    add_worker_arguments(parser, names=_SETTINGS, kafka=False)
    parser.set_defaults(run=run)


def _settings(args: argparse.Namespace, command: str):
    """(config, catalog), or None after printing every problem."""
    from stream.rules.catalog import load_catalog
    from stream.rules.problems import DefinitionError
    try:
        config = load_config(args)
        return config, load_catalog(config.segments_file)
    except (ConfigError, DefinitionError) as exc:
        print(f"segments {command}: {exc}", file=sys.stderr)
        return None


def _members(args: argparse.Namespace) -> int:
    from stream.storage.committed import CommittedStores, NoStores
    from stream.inspect.fields import Columns, FieldError, columns
    from stream.inspect.members import FIELDS, encode_rows, export_rows
    from stream.inspect.running import known_segments

    settings = _settings(args, "members")
    if settings is None:
        return 2
    config, catalog = settings
    problems = []
    stores = None
    try:
        stores = CommittedStores(config.state_dir, config.group_id)
    except NoStores as exc:
        problems.append(str(exc))
    known = known_segments(stores.partitions if stores is not None else [], catalog)
    if args.segment not in known:
        problems.insert(0, f"unknown segment {args.segment!r} in {catalog.source} or the definitions the "
                           f"stores run; segments: {', '.join(known)}")
    extra = Columns((), {})
    try:
        extra = columns(args.fields, FIELDS, stores.partitions if stores is not None else [], catalog)
    except FieldError as exc:
        problems.extend(f"--fields: {problem}" for problem in exc.problems)
    if problems or stores is None:          # no stores: why is among the problems
        for problem in problems:
            print(f"segments members: {problem}", file=sys.stderr)
        if stores is not None:
            stores.close()
        return 2
    count = 0
    with stores:
        rows = export_rows(stores, args.segment, extra)

        def counted():
            nonlocal count
            for row in rows:
                count += 1
                yield row
        try:
            output = sys.stdout.buffer if args.output == "-" else open(args.output, "wb")
        except OSError as exc:
            print(f"segments members: {args.output}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        try:
            for chunk in encode_rows(counted(), args.format, extra.names):
                output.write(chunk)
            output.flush()
        except OSError as exc:
            print(f"segments members: {args.output}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        finally:
            if output is not sys.stdout.buffer:
                output.close()
        print(f"{count} members of {args.segment}; " + _as_of(stores), file=sys.stderr)
    return 0


def _as_of(stores) -> str:
    from stream.model.time import format_rfc3339
    return "as of " + ", ".join(
        f"p{p.number} {'no event yet' if p.stream_time is None else format_rfc3339(p.stream_time)}"
        for p in stores.partitions)


def _explain(args: argparse.Namespace) -> int:
    import msgspec

    from stream.storage.committed import CommittedStores, NoStores
    from stream.inspect.running import explaining
    from stream.rules.explanation import explain, render

    settings = _settings(args, "explain")
    if settings is None:
        return 2
    config, catalog = settings
    try:
        stores = CommittedStores(config.state_dir, config.group_id)
    except NoStores as exc:
        print(f"segments explain: {exc}", file=sys.stderr)
        return 2
    with stores:
        found = stores.find(args.customer)
        if found is None:
            print(f"segments explain: no customer {args.customer!r} in any store; " + _as_of(stores),
                  file=sys.stderr)
            return 2
        partition, state = found
        running = explaining(partition, catalog)        # what placed the customer, topic definitions too
    answer = explain(args.customer, state, running, partition.stream_time or 0, partition.number)
    sys.stdout.write(render(answer) if args.format == "text" else msgspec.json.encode(answer).decode() + "\n")
    return 0
