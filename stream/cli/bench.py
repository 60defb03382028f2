"""`segments bench ...`: the benchmarks (stream.tools.bench), each printing a table."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NamedTuple


def _engine(args: argparse.Namespace) -> int:
    from stream.tools.bench.engine import run_engine_bench
    return run_engine_bench(customers=args.customers, events=args.events, seed=args.seed, catalog_name=args.catalog)


def _worker(args: argparse.Namespace) -> int:
    import logging

    from stream.tools.bench.worker import BenchFailed, run_worker_bench
    logging.basicConfig(level=logging.WARNING)
    try:
        return run_worker_bench(events=args.events, customers=args.customers, seed=args.seed, rate=args.rate,
                                seconds=args.seconds, restore_customers=args.restore_customers)
    except BenchFailed as exc:
        print(exc, file=sys.stderr)
        return 1


def _faust(args: argparse.Namespace) -> int:
    from stream.tools.bench.faust_worker import run_faust_bench
    from stream.tools.bench.worker import BenchFailed
    try:
        return run_faust_bench(events=args.events, customers=args.customers, seed=args.seed, runs=args.runs)
    except BenchFailed as exc:
        print(exc, file=sys.stderr)
        return 1


def _members(args: argparse.Namespace) -> int:
    from stream.tools.bench.members import run_members_bench
    return run_members_bench(customers=args.customers, partitions=args.partitions, seed=args.seed)


def _backfill(args: argparse.Namespace) -> int:
    from stream.tools.bench.backfill import run_backfill_bench
    return run_backfill_bench(events=args.events, customers=args.customers, seed=args.seed)


def _redefine(args: argparse.Namespace) -> int:
    from stream.tools.bench.redefine import run_redefine_bench
    return run_redefine_bench(customers=args.customers, seed=args.seed)


class _Flag(NamedTuple):
    """A benchmark's flag: an integer unless `kind` says otherwise (or `choices` names its values)."""

    name: str
    default: float | str
    help: str | None = None             # None: the name says it, and the help gives the default only
    kind: Callable[[str], float | str] = int
    choices: tuple[str, ...] | None = None


class _Bench(NamedTuple):
    name: str
    help: str
    run: Callable[[argparse.Namespace], int]
    flags: tuple[_Flag, ...]           # and --seed, which every benchmark takes last


_SEED = _Flag("--seed", 7)
# In the order `segments bench --help` lists them.
_BENCHES = (
    _Bench("engine", "the engine alone on one core, beside msgspec decode", _engine,
           (_Flag("--customers", 1_000_000), _Flag("--events", 3_000_000),
            _Flag("--catalog", "default", "traits: also the catalog of 10 computed traits and 10 segments reading "
                  "them, its per-event cost beside the default's", str, ("default", "traits")))),
    _Bench("worker", "the native worker on the embedded broker, beside consume + decode", _worker,
           (_Flag("--events", 300_000), _Flag("--customers", 100_000),
            _Flag("--rate", 10_000, "events/s offered in the latency run"),
            _Flag("--seconds", 20, "length of the latency run", float),
            _Flag("--restore-customers", 1_000_000, "customers restored in the restore run"))),
    _Bench("faust", "the Faust runtime beside the native worker (at_least_once), beside consume + decode", _faust,
           (_Flag("--events", 100_000), _Flag("--customers", 20_000),
            _Flag("--runs", 3, "runs per runtime; the median is the figure"))),
    _Bench("members", "export a segment's members from 1M customers' stores, beside raw iteration", _members,
           (_Flag("--customers", 1_000_000), _Flag("--partitions", 8))),
    _Bench("backfill", "segments backfill on the embedded broker, beside consume + decode", _backfill,
           (_Flag("--events", 300_000), _Flag("--customers", 100_000))),
    _Bench("redefine", "re-evaluating one changed segment over stored customers, beside iterating and decoding "
                       "the same states", _redefine,
           (_Flag("--customers", 1_000_000),)),
)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bp = sub.add_parser("bench", help="measure speed and state size (prints a table)")
    bench = bp.add_subparsers(dest="bench", required=True)
    for b in _BENCHES:
        parser = bench.add_parser(b.name, help=b.help)
        for flag in (*b.flags, _SEED):
            parser.add_argument(flag.name, type=flag.kind, default=flag.default, choices=flag.choices,
                                help=f"{flag.help or flag.name[2:]} (default %(default)s)")
        parser.set_defaults(run=b.run)
