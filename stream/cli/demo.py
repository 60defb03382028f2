"""`segments demo`: the embedded broker, a worker and the generator on this machine (stream.tools.demo)."""
from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dp = sub.add_parser("demo", help="embedded broker + worker + generator, with live segment sizes",
                        description="Everything on this machine: the embedded broker, a worker and the shopper "
                                    "generator in simulated time, faster than the clock, so that time moves "
                                    "customers too (at risk, churned, carts abandoned); shows live segment "
                                    "sizes, their history, the latest changes with their cause, and the state "
                                    "dir, group, HTTP routes and commands that work against the running demo.")
    dp.add_argument("--speed", type=_speed, default=None, metavar="DURATION",
                    help="simulated time per second of the wall clock: 2d (the default: churn, 180 days "
                         "without an order, shows within two minutes), 12h, 1s (real time)")
    dp.add_argument("--rate", type=float, metavar="N",
                    help="at most this many events per second (default: what --speed needs)")
    dp.add_argument("--customers", type=int, default=2000, metavar="N",
                    help="customers in the simulated shop (default 2000)")
    dp.add_argument("--duration", type=float, metavar="SECONDS", help="seconds to run (default: until Ctrl-C)")
    dp.add_argument("--seed", type=int, default=7, metavar="N", help="the simulation's seed (default 7)")
    dp.set_defaults(run=run)


def _speed(text: str) -> float:
    from stream.model.time import SECOND, parse_duration
    try:
        return parse_duration(text) / SECOND          # whole seconds at least: never slower than real time
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 2d, 12h, 30m or 1s") from None


def run(args: argparse.Namespace) -> int:
    import sys

    from rich.console import Console

    from stream.tools.demo import DEFAULT_SPEED, run_demo
    # The live view only on a terminal, whatever FORCE_COLOR or TTY_COMPATIBLE say: redrawn in a pipe
    # or a file, it would be a stream of cursor moves. Elsewhere plain lines, with no control codes.
    return run_demo(Console(force_terminal=sys.stdout.isatty()), rate=args.rate, customers=args.customers,
                    duration=args.duration, seed=args.seed,
                    speed=DEFAULT_SPEED if args.speed is None else args.speed)
