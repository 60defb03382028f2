"""`segments replay`: the engine over JSON-lines events in file order, segment changes out as JSON lines."""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, BinaryIO, Literal

from stream.model.time import SECOND, parse_rfc3339
from stream.runtime.options import parse_millis
from stream.runtime.settings import WorkerConfig

if TYPE_CHECKING:
    from rich.console import Console


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rp = sub.add_parser("replay", help="run the engine over JSON-lines events and write segment changes",
                        description="Run the engine over JSON lines in file order and write segment changes as JSON "
                                    "lines. Bad events become dead letters; they never stop the replay or change the "
                                    "exit code.")
    rp.add_argument("--input", required=True, metavar="PATH|-",
                    help="events, one JSON object per line ('-' for stdin)")
    rp.add_argument("--output", required=True, metavar="PATH|-", help="where segment changes go ('-' for stdout)")
    rp.add_argument("--dead-letter", metavar="PATH",
                    help="where bad lines go, with reason and line number (default: stderr)")
    rp.add_argument("--until", type=_timestamp, metavar="TIME",
                    help="after the input, advance stream time to TIME (RFC 3339), firing every timer due by then")
    rp.add_argument("--segments", metavar="FILE", help="segment definitions (YAML); default: the built-in catalog")
    rp.add_argument("--max-message-bytes", type=_positive, default=WorkerConfig.max_message_bytes, metavar="BYTES",
                    help="longer lines are dead letters, never held whole (as in the worker; "
                         f"default: {WorkerConfig.max_message_bytes})")
    rp.add_argument("--max-future-skew-ms", type=_millis, default=WorkerConfig.max_future_skew_ms, metavar="MS",
                    help="an event more than MS milliseconds (or a duration such as 6h) ahead of the wall clock "
                         "when the replay started is a dead letter (as in the worker); 0: no bound "
                         f"(default: {WorkerConfig.max_future_skew_ms})")
    rp.add_argument("--no-progress", action="store_true", help="no progress bar, even on a terminal")
    rp.set_defaults(run=run)


def _timestamp(text: str) -> int:
    try:
        return parse_rfc3339(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    value = _not_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be positive, got 0")
    return value


def _millis(text: str) -> int:
    """Milliseconds or a duration with its unit (6h), as the worker's settings take them."""
    try:
        value = parse_millis(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text!r}")
    return value


def _not_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


@contextlib.contextmanager
def _open(path: str, mode: Literal["rb", "wb"], std: BinaryIO) -> Iterator[BinaryIO]:
    if path == "-":
        yield std
    else:
        with open(path, mode) as handle:
            yield handle


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from stream.engine.core import Engine
    from stream.replay.driver import replay
    from stream.rules.catalog import load_catalog
    from stream.rules.problems import DefinitionError
    from stream.runtime import garbage

    err = Console(stderr=True, highlight=False)
    try:
        catalog = load_catalog(args.segments)
    except DefinitionError as exc:
        err.print(f"segments: {exc}", markup=False)
        return 2
    engine = Engine(catalog)
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(garbage.rare_full_collections())
            source = stack.enter_context(_open(args.input, "rb", sys.stdin.buffer))
            output = stack.enter_context(_open(args.output, "wb", sys.stdout.buffer))
            dead = (stack.enter_context(open(args.dead_letter, "wb")) if args.dead_letter
                    else sys.stderr.buffer)
            progress = None
            if not args.no_progress and err.is_terminal and args.input != "-":
                progress = stack.enter_context(_progress_bar(err, os.path.getsize(args.input)))
            skew = args.max_future_skew_ms * 1000 if args.max_future_skew_ms else None
            summary = replay(source, engine, output, dead, until=args.until, on_line=progress,
                             max_bytes=args.max_message_bytes, clock=int(time.time() * SECOND), skew=skew)
    except OSError as exc:
        where = exc.filename or args.output   # a failed write names no file
        err.print(f"segments replay: {where}: {exc.strerror or exc}", markup=False)
        return 1
    err.print("\n".join(summary.lines()), markup=False)
    return 0


@contextlib.contextmanager
def _progress_bar(console: Console, total: int) -> Iterator[Callable[[int], None]]:
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    with Progress("replay", BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("replay", total=total)
        pending = [0]

        def advance(n: int) -> None:
            # Updating rich per line would cost more than the engine; report every 1 MB.
            pending[0] += n
            if pending[0] >= 1 << 20:
                bar.advance(task, pending[0])
                pending[0] = 0
        yield advance
