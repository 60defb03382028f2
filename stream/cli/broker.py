"""`segments broker`: the embedded broker alone, in the foreground (stream.kafka.embedded_broker).

For a worker, a producer and a consumer in terminals of their own against one broker: a worker
started without bootstrap servers runs a broker of its own on a random port, which nothing else
is told about. This one listens on a port the others can be given, says so, and runs until Ctrl-C
or SIGTERM.
"""
from __future__ import annotations

import argparse
import sys

from stream.cli.settings_args import arg_type, port_number

DEFAULT_PORT = 9092             # Kafka's own, which clients and tutorials assume


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bp = sub.add_parser("broker", help="the embedded broker alone, in the foreground, for other commands to use",
                        description="Start the embedded Kafka-compatible broker (Tansu) on 127.0.0.1, print its "
                                    "address, and run until Ctrl-C or SIGTERM. It keeps everything in memory: its "
                                    "topics vanish when it stops.")
    bp.add_argument("--port", type=arg_type(port_number), default=DEFAULT_PORT, metavar="PORT",
                    help=f"loopback port to listen on; 0: any free one (default {DEFAULT_PORT})")
    bp.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import signal
    import threading

    from stream.kafka.embedded_broker import BrokerStartError, EmbeddedBroker

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        with EmbeddedBroker(args.port or None) as broker:
            print(f"embedded broker at {broker.bootstrap} (give other commands --bootstrap-servers "
                  f"{broker.bootstrap}); memory only: its topics vanish when it stops. Ctrl-C stops it.", flush=True)
            while not stop.wait(0.5):
                if not broker.running:
                    print(f"segments broker: the broker exited; log {broker.log_path}:\n{broker.log_tail()}",
                          file=sys.stderr)
                    return 1
    except BrokerStartError as exc:         # from the start: the body raises none
        print(f"segments broker: {exc}", file=sys.stderr)
        return 1
    print("embedded broker stopped", file=sys.stderr)
    return 0
