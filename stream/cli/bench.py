"""`segments bench ...`: the benchmarks (stream.tools.bench), each printing a table."""
from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bp = sub.add_parser("bench", help="measure speed and state size (prints a table)")
    bench = bp.add_subparsers(dest="bench", required=True)
    be = bench.add_parser("engine", help="the engine alone on one core, beside msgspec decode")
    be.add_argument("--customers", type=int, default=1_000_000)
    be.add_argument("--events", type=int, default=3_000_000)
    be.add_argument("--seed", type=int, default=7)
    be.set_defaults(run=_engine)
    bw = bench.add_parser("worker", help="the native worker on the embedded broker, beside consume + decode")
    bw.add_argument("--events", type=int, default=300_000)
    bw.add_argument("--customers", type=int, default=100_000)
    bw.add_argument("--rate", type=int, default=10_000, help="events/s offered in the latency run")
    bw.add_argument("--seconds", type=float, default=20, help="length of the latency run")
    bw.add_argument("--restore-customers", type=int, default=1_000_000)
    bw.add_argument("--seed", type=int, default=7)
    bw.set_defaults(run=_worker)
    bf = bench.add_parser("faust", help="the Faust runtime beside the native worker (at_least_once), "
                                        "beside consume + decode")
    bf.add_argument("--events", type=int, default=100_000)
    bf.add_argument("--customers", type=int, default=20_000)
    bf.add_argument("--runs", type=int, default=3, help="runs per runtime; the median is the figure")
    bf.add_argument("--seed", type=int, default=7)
    bf.set_defaults(run=_faust)
    bm = bench.add_parser("members", help="export a segment's members from 1M customers' stores, beside raw iteration")
    bm.add_argument("--customers", type=int, default=1_000_000)
    bm.add_argument("--partitions", type=int, default=8)
    bm.add_argument("--seed", type=int, default=7)
    bm.set_defaults(run=_members)
    bb = bench.add_parser("backfill", help="segments backfill on the embedded broker, beside consume + decode")
    bb.add_argument("--events", type=int, default=300_000)
    bb.add_argument("--customers", type=int, default=100_000)
    bb.add_argument("--seed", type=int, default=7)
    bb.set_defaults(run=_backfill)
    br = bench.add_parser("redefine", help="re-evaluating one changed segment over stored customers, "
                                           "beside iterating and decoding the same states")
    br.add_argument("--customers", type=int, default=1_000_000)
    br.add_argument("--seed", type=int, default=7)
    br.set_defaults(run=_redefine)


def _engine(args: argparse.Namespace) -> int:
    from stream.tools.bench.engine import run_engine_bench
    return run_engine_bench(customers=args.customers, events=args.events, seed=args.seed)


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
