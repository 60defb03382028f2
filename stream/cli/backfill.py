"""`segments backfill`: rebuild segments from the input topics' history (stream.backfill.command)."""
from __future__ import annotations

import argparse

from stream.backfill.command import add_backfill_arguments


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fp = sub.add_parser("backfill", help="rebuild segments from the input topics' history (reproducible order)",
                        description="Replay the input topics' history, merged across topics and partitions in "
                                    "occurred_at order, through the engine: the same segment changes as `segments "
                                    "replay` over those events in that order. Reads the worker's settings (flags, "
                                    "SEGMENTS_* environment, --config file) for where the input is. Optionally hands "
                                    "the rebuilt state to the workers of a new consumer group (--handoff).")
    add_backfill_arguments(fp)
    fp.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from stream.backfill.command import main as backfill
    return backfill(args)
