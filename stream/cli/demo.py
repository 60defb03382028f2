"""`segments demo`: the embedded broker, a worker and the generator on this machine (stream.tools.demo)."""
from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dp = sub.add_parser("demo", help="embedded broker + worker + generator, with live segment sizes",
                        description="Everything on this machine: the embedded broker, a worker and the shopper "
                                    "generator, showing live segment sizes, the latest changes and the metrics URL.")
    dp.add_argument("--rate", type=float, default=200.0, help="events per second (default 200)")
    dp.add_argument("--customers", type=int, default=2000, help="distinct shoppers (default 2000)")
    dp.add_argument("--duration", type=float, help="seconds to run (default: until Ctrl-C)")
    dp.add_argument("--seed", type=int, default=7, help="the generator's random seed (default 7)")
    dp.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from stream.tools.demo import run_demo
    return run_demo(Console(), rate=args.rate, customers=args.customers, duration=args.duration, seed=args.seed)
