"""The `segments` command: one subcommand per module of stream.cli (the inspect commands from
stream.cli.members_explain), each adding its parser, which runs it through `run` in its defaults."""
from __future__ import annotations

import argparse

from stream.cli import backfill, bench, broker, console, define, demo, produce, replay, rfm, worker
from stream.cli.members_explain import add_inspect_commands

# In the order `segments --help` lists them.
_COMMANDS = (replay.add_parser, worker.add_parser, broker.add_parser, produce.add_parser, demo.add_parser,
             add_inspect_commands, backfill.add_parser, define.add_parser, rfm.add_parser, console.add_parser,
             bench.add_parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segments", description="Live customer segments from event streams.")
    sub = parser.add_subparsers(dest="command", required=True)
    for add_parser in _COMMANDS:
        add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    status: int = args.run(args)
    return status
