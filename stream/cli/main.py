"""The `segments` command."""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from typing import BinaryIO, Iterator

from stream.runtime.settings import WorkerConfig, add_worker_arguments, parse_millis
from stream.model.time import SECOND, parse_rfc3339


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segments", description="Live customer segments from event streams.")
    sub = parser.add_subparsers(dest="command", required=True)

    rp = sub.add_parser("replay", help="run the engine over JSON-lines events and write segment changes",
                        description="Run the engine over JSON lines in file order and write segment changes as JSON lines. "
                                    "Bad events become dead letters; they never stop the replay or change the exit code.")
    rp.add_argument("--input", required=True, metavar="PATH|-", help="events, one JSON object per line ('-' for stdin)")
    rp.add_argument("--output", required=True, metavar="PATH|-", help="where segment changes go ('-' for stdout)")
    rp.add_argument("--dead-letter", metavar="PATH", help="where bad lines go, with reason and line number (default: stderr)")
    rp.add_argument("--until", type=_timestamp, metavar="TIME",
                    help="after the input, advance stream time to TIME (RFC 3339), firing every timer due by then")
    rp.add_argument("--segments", metavar="FILE", help="segment definitions (YAML); default: the built-in catalog")
    rp.add_argument("--max-message-bytes", type=_positive, default=WorkerConfig.max_message_bytes, metavar="BYTES",
                    help="longer lines are dead letters, never held whole (as in the worker; "
                         f"default: {WorkerConfig.max_message_bytes})")
    rp.add_argument("--max-future-skew-ms", type=_millis, default=WorkerConfig.max_future_skew_ms, metavar="MS",
                    help="an event more than MS milliseconds (or a duration such as 6h) ahead of the wall clock when the replay started is a dead "
                         f"letter (as in the worker); 0: no bound (default: {WorkerConfig.max_future_skew_ms})")
    rp.add_argument("--no-progress", action="store_true", help="no progress bar, even on a terminal")
    rp.set_defaults(run=_replay)

    wp = sub.add_parser("worker", help="keep segments live from Kafka topics (the main job)",
                        description="Consume shop events from Kafka, keep per-customer state in RocksDB and publish "
                                    "every segment move. Settings come from flags, then SEGMENTS_* environment "
                                    "variables, then the --config file, then defaults. With no bootstrap servers it "
                                    "starts an embedded broker whose topics vanish when it stops.")
    add_worker_arguments(wp)
    wp.set_defaults(run=_worker)

    pp = sub.add_parser("produce", help="publish realistic synthetic shopper events to a Kafka topic",
                        description="Browsing sessions, carts and abandonment, orders, payments, cancellations, churn, "
                                    "profile updates, rare erasures, redeliveries and a few bad messages, keyed by "
                                    "customer id (murmur2, as the worker expects).")
    pp.add_argument("--bootstrap-servers", required=True, metavar="HOSTS")
    pp.add_argument("--topic", default="shop-events")
    pp.add_argument("--rate", type=float, help="events per second (default: as fast as possible)")
    pp.add_argument("--events", type=int, help="how many (default: until Ctrl-C)")
    pp.add_argument("--customers", type=int, default=1000)
    pp.add_argument("--seed", type=int, default=7)
    pp.add_argument("--bad-ratio", type=float, default=0.001, help="share of bad messages (default 0.001)")
    pp.add_argument("--simulated-time", action="store_true",
                    help="event times from a simulated clock from 2025-01-01 (reproducible) instead of now")
    pp.add_argument("--partitions", type=int, default=8, help="partitions if the topic must be created")
    _add_kafka_arguments(pp)
    pp.set_defaults(run=_produce)

    dp = sub.add_parser("demo", help="embedded broker + worker + generator, with live segment sizes",
                        description="Everything on this machine: the embedded broker, a worker and the shopper "
                                    "generator, showing live segment sizes, the latest changes and the metrics URL.")
    dp.add_argument("--rate", type=float, default=200.0, help="events per second (default 200)")
    dp.add_argument("--customers", type=int, default=2000)
    dp.add_argument("--duration", type=float, help="seconds to run (default: until Ctrl-C)")
    dp.add_argument("--seed", type=int, default=7)
    dp.set_defaults(run=_demo)

    from stream.inspect.commands import add_inspect_commands
    add_inspect_commands(sub)
    fp = sub.add_parser("backfill", help="rebuild segments from the input topics' history (reproducible order)",
                        description="Replay the input topics' history, merged across topics and partitions in "
                                    "occurred_at order, through the engine: the same segment changes as `segments "
                                    "replay` over those events in that order. Reads the worker's settings (flags, "
                                    "SEGMENTS_* environment, --config file) for where the input is. Optionally hands "
                                    "the rebuilt state to the workers of a new consumer group (--handoff).")
    from stream.backfill.command import add_backfill_arguments
    add_backfill_arguments(fp)
    fp.set_defaults(run=_backfill)
    for command, help_text in (("define", "publish a segment definition the running workers take up"),
                               ("undefine", "remove a segment defined in the definitions topic")):
        fp = sub.add_parser(command, help=help_text, description=(
            "Validate a segment definition (every problem listed; exit 2 and nothing published if invalid) "
            "and publish it to the definitions topic with the next version; the workers re-evaluate their "
            "stored customers for that segment only." if command == "define" else
            "Publish a tombstone for a segment in the definitions topic: its members exit (a segment the "
            "segments file also defines runs the file's definition again)."))
        fp.add_argument("name", metavar="NAME", help="segment name")
        if command == "define":
            fp.add_argument("--file", required=True, metavar="FILE",
                            help="one definition, YAML or JSON: the grammar of one entry under `segments:`")
        fp.add_argument("--bootstrap-servers", required=True, metavar="HOSTS")
        fp.add_argument("--definitions-topic", default="segment-definitions", metavar="TOPIC")
        fp.add_argument("--segments", metavar="FILE",
                        help="the segments file the workers run (its versions count); default: the built-in catalog")
        _add_kafka_arguments(fp)
        fp.set_defaults(run=_define)

    bp = sub.add_parser("bench", help="measure speed and state size (prints a table)")
    bench = bp.add_subparsers(dest="bench", required=True)
    be = bench.add_parser("engine", help="the engine alone on one core, beside msgspec decode")
    be.add_argument("--customers", type=int, default=1_000_000)
    be.add_argument("--events", type=int, default=3_000_000)
    be.add_argument("--seed", type=int, default=7)
    be.set_defaults(run=_bench_engine)
    bw = bench.add_parser("worker", help="the native worker on the embedded broker, beside consume + decode")
    bw.add_argument("--events", type=int, default=300_000)
    bw.add_argument("--customers", type=int, default=100_000)
    bw.add_argument("--rate", type=int, default=10_000, help="events/s offered in the latency run")
    bw.add_argument("--seconds", type=float, default=20, help="length of the latency run")
    bw.add_argument("--restore-customers", type=int, default=1_000_000)
    bw.add_argument("--seed", type=int, default=7)
    bw.set_defaults(run=_bench_worker)
    bf = bench.add_parser("faust", help="the Faust runtime beside the native worker (at_least_once), beside consume + decode")
    bf.add_argument("--events", type=int, default=100_000)
    bf.add_argument("--customers", type=int, default=20_000)
    bf.add_argument("--runs", type=int, default=3, help="runs per runtime; the median is the figure")
    bf.add_argument("--seed", type=int, default=7)
    bf.set_defaults(run=_bench_faust)
    bm = bench.add_parser("members", help="export a segment's members from 1M customers' stores, beside raw iteration")
    bm.add_argument("--customers", type=int, default=1_000_000)
    bm.add_argument("--partitions", type=int, default=8)
    bm.add_argument("--seed", type=int, default=7)
    bm.set_defaults(run=_bench_members)
    bb = bench.add_parser("backfill", help="segments backfill on the embedded broker, beside consume + decode")
    bb.add_argument("--events", type=int, default=300_000)
    bb.add_argument("--customers", type=int, default=100_000)
    bb.add_argument("--seed", type=int, default=7)
    bb.set_defaults(run=_bench_backfill)
    br = bench.add_parser("redefine", help="re-evaluating one changed segment over stored customers, "
                                           "beside iterating and decoding the same states")
    br.add_argument("--customers", type=int, default=1_000_000)
    br.add_argument("--seed", type=int, default=7)
    br.set_defaults(run=_bench_redefine)
    return parser


def _add_kafka_arguments(parser: argparse.ArgumentParser) -> None:
    """The librdkafka properties of a command that talks to the workers' cluster: the workers' own
    (SEGMENTS_KAFKA_<KEY>, the kafka: section of --config), so that security settings need not be
    typed again (nor shown in the process list), and -X on top."""
    parser.add_argument("--config", metavar="FILE",
                        help="the workers' settings file: its kafka: properties apply (env SEGMENTS_CONFIG)")
    parser.add_argument("-X", dest="kafka", action="append", default=[], metavar="KEY=VALUE",
                        help="librdkafka property, repeatable; wins over SEGMENTS_KAFKA_<KEY> and the file")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


@contextlib.contextmanager
def _open(path: str, mode: str, std: BinaryIO) -> Iterator[BinaryIO]:
    if path == "-":
        yield std
    else:
        with open(path, mode) as handle:
            yield handle


def _replay(args: argparse.Namespace) -> int:
    from rich.console import Console

    from stream.engine.core import Engine
    from stream.replay.driver import replay
    from stream.rules.catalog import load_catalog
    from stream.rules.problems import DefinitionError

    err = Console(stderr=True, highlight=False)
    try:
        catalog = load_catalog(args.segments)
    except DefinitionError as exc:
        err.print(f"segments: {exc}", markup=False)
        return 2
    engine = Engine(catalog)
    try:
        with contextlib.ExitStack() as stack:
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
def _progress_bar(console, total: int) -> Iterator:
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


def _worker(args: argparse.Namespace) -> int:
    import dataclasses
    import logging
    import signal

    from stream.kafka.broker import EmbeddedBroker, TopicsNotAsExpected
    from stream.runtime.settings import ConfigError, is_secret_key, load_config
    from stream.runtime.http import HttpSetupError, read_token
    from stream.rules.catalog import load_catalog
    from stream.rules.problems import DefinitionError
    from stream.worker.loop import Worker

    from stream.kafka.clients import kafka_problems
    try:
        config = load_config(args)
        catalog = load_catalog(config.segments_file)
        if config.metrics_port and config.http_token_file is not None:
            read_token(config.http_token_file)     # an unusable token file stops the start before anything runs
        # librdkafka judges its own properties (unknown key, bad value, a file it cannot read) now,
        # not the first client built later. Here rather than in load_config: members and explain
        # read the same settings without any Kafka client, maybe where those files are absent.
        problems = kafka_problems(config.kafka, is_secret_key)
        if problems:
            raise ConfigError(problems)
    except (ConfigError, DefinitionError, HttpSetupError) as exc:
        print(f"segments worker: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("segments.worker")
    with contextlib.ExitStack() as stack:
        if config.bootstrap_servers is None:
            broker = stack.enter_context(EmbeddedBroker())
            log.warning("no bootstrap servers configured: started an embedded broker at %s. It keeps "
                        "everything in memory: its topics vanish when it stops.", broker.bootstrap)
            config = dataclasses.replace(config, bootstrap_servers=broker.bootstrap)
        if config.instance_id is None:
            config = dataclasses.replace(config, instance_id=_instance_id(config.state_dir))
        log.info("configuration: %s", config.describe())
        if config.runtime == "faust":
            from stream.faust_runtime.app import run
            return run(config, catalog)     # Faust stops itself on SIGINT and SIGTERM
        worker = Worker(config, catalog)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: worker.stop())
        try:
            worker.run()
        except TopicsNotAsExpected as exc:
            # Exit 3: a restart (Kubernetes, compose) creates missing topics again at start-up.
            log.error("stopping: %s. Every committed batch is in Kafka and in the local state; "
                      "exit 3 so that the worker is restarted", exc)
            return 3
        log.info("stopped: every committed batch is in Kafka and in the local state")
    return 0


def _backfill(args: argparse.Namespace) -> int:
    from stream.backfill.command import main as backfill
    return backfill(args)


def _instance_id(state_dir) -> str:
    """A stable id kept beside the state: a restarted worker reuses its transactional id, which
    fences its previous incarnation and aborts that one's open transaction."""
    import uuid
    from pathlib import Path

    path = Path(state_dir) / "instance-id"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    instance = uuid.uuid4().hex[:12]
    path.write_text(instance + "\n")
    return instance


def _kafka_properties(command: str, args: argparse.Namespace) -> dict[str, str] | None:
    """The librdkafka properties as the workers take them (stream.runtime.settings: file < SEGMENTS_KAFKA_*
    < -X), checked by librdkafka itself; None after saying what is wrong."""
    from stream.kafka.clients import kafka_problems
    from stream.runtime.settings import ConfigError, is_secret_key, load_config

    pairs = []
    for item in args.kafka:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"segments {command}: -X takes KEY=VALUE, got {item!r}", file=sys.stderr)
            return None
        pairs.append((key, value))
    try:
        kafka = load_config(argparse.Namespace(config=args.config, kafka=pairs)).kafka
        problems = kafka_problems(kafka, is_secret_key)
    except ConfigError as exc:
        problems = exc.problems
    for problem in problems:
        print(f"segments {command}: {problem}", file=sys.stderr)
    return None if problems else kafka


def _define(args: argparse.Namespace) -> int:
    from pathlib import Path

    from stream.cli.define import define, undefine
    from stream.rules.catalog import load_catalog
    from stream.rules.problems import DefinitionError

    kafka = _kafka_properties(args.command, args)
    if kafka is None:
        return 2
    try:
        catalog = load_catalog(args.segments)
    except DefinitionError as exc:
        print(f"segments {args.command}: {exc}", file=sys.stderr)
        return 2
    if args.command == "define":
        return define(args.name, Path(args.file), args.bootstrap_servers, kafka, args.definitions_topic, catalog)
    return undefine(args.name, args.bootstrap_servers, kafka, args.definitions_topic, catalog)


def _produce(args: argparse.Namespace) -> int:
    from rich.console import Console

    from stream.tools.produce import produce
    kafka = _kafka_properties("produce", args)
    if kafka is None:
        return 2
    return produce(args.bootstrap_servers, args.topic, rate=args.rate, events=args.events,
                   customers=args.customers, seed=args.seed, bad_ratio=args.bad_ratio,
                   realtime=not args.simulated_time, console=Console(stderr=True), partitions=args.partitions,
                   kafka=kafka)


def _demo(args: argparse.Namespace) -> int:
    from rich.console import Console

    from stream.tools.demo import run_demo
    return run_demo(Console(), rate=args.rate, customers=args.customers, duration=args.duration, seed=args.seed)


def _bench_engine(args: argparse.Namespace) -> int:
    from stream.tools.bench.engine import run_engine_bench
    return run_engine_bench(customers=args.customers, events=args.events, seed=args.seed)


def _bench_worker(args: argparse.Namespace) -> int:
    import logging

    from stream.tools.bench.worker import run_worker_bench
    logging.basicConfig(level=logging.WARNING)
    return run_worker_bench(events=args.events, customers=args.customers, seed=args.seed, rate=args.rate,
                            seconds=args.seconds, restore_customers=args.restore_customers)


def _bench_faust(args: argparse.Namespace) -> int:
    from stream.tools.bench.faust_worker import run_faust_bench
    return run_faust_bench(events=args.events, customers=args.customers, seed=args.seed, runs=args.runs)


def _bench_members(args: argparse.Namespace) -> int:
    from stream.tools.bench.members import run_members_bench
    return run_members_bench(customers=args.customers, partitions=args.partitions, seed=args.seed)


def _bench_backfill(args: argparse.Namespace) -> int:
    from stream.tools.bench.backfill import run_backfill_bench
    return run_backfill_bench(events=args.events, customers=args.customers, seed=args.seed)


def _bench_redefine(args: argparse.Namespace) -> int:
    from stream.tools.bench.redefine import run_redefine_bench
    return run_redefine_bench(customers=args.customers, seed=args.seed)

