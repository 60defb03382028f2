"""`segments produce`: publish synthetic shopper events to a Kafka topic (stream.tools.produce)."""
from __future__ import annotations

import argparse

from stream.cli.settings_args import add_kafka_arguments, kafka_properties


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pp = sub.add_parser("produce", help="publish realistic synthetic shopper events to a Kafka topic",
                        description="Browsing sessions, carts and abandonment, orders, payments, cancellations, churn, "
                                    "profile updates, rare erasures, redeliveries and a few bad messages, keyed by "
                                    "customer id (murmur2, as the worker expects).")
    pp.add_argument("--bootstrap-servers", required=True, metavar="HOSTS",
                    help="Kafka brokers, host:port[,host:port...] (`segments broker` prints its own)")
    pp.add_argument("--topic", default="shop-events", metavar="TOPIC",
                    help="topic to write, keyed by customer id: one of the workers' --input-topics "
                         "(default shop-events)")
    pp.add_argument("--rate", type=float, metavar="N", help="events per second (default: as fast as possible)")
    pp.add_argument("--events", type=int, metavar="N", help="how many (default: until Ctrl-C)")
    pp.add_argument("--customers", type=int, default=1000, metavar="N",
                    help="distinct shoppers the events are spread over (default 1000)")
    pp.add_argument("--seed", type=int, default=7, metavar="N",
                    help="random seed: the same seed and settings give the same shoppers, and with "
                         "--simulated-time the same bytes (default 7)")
    pp.add_argument("--bad-ratio", type=float, default=0.001, metavar="SHARE",
                    help="share of bad messages, which the workers turn into dead letters (default 0.001)")
    pp.add_argument("--simulated-time", action="store_true",
                    help="event times from a simulated clock from 2025-01-01 (reproducible) instead of now")
    pp.add_argument("--partitions", type=int, default=8, metavar="N",
                    help="partitions of the topic when it must be created; it must match the workers' "
                         "--partitions (default 8)")
    add_kafka_arguments(pp)
    pp.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from stream.tools.produce import produce
    kafka = kafka_properties("produce", args)
    if kafka is None:
        return 2
    return produce(args.bootstrap_servers, args.topic, rate=args.rate, events=args.events,
                   customers=args.customers, seed=args.seed, bad_ratio=args.bad_ratio,
                   realtime=not args.simulated_time, console=Console(stderr=True), partitions=args.partitions,
                   kafka=kafka)
