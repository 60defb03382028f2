"""`segments console`: the worker's web console (stream.console) served over running workers'
stores, read-only, as `segments members` reads them, and publishing through the definitions topic.

What the workers run is read from their stores (each partition's committed definitions record,
so versions, backfill flags and passes under way are as the workers committed them), rejections
from the definitions topic when --bootstrap-servers is given (which publishing needs too). Sizes
are counted over the stores, at most once a minute and within SIZE_SECONDS; the changes per hour
and a customer's recent changes are kept by each worker only (its own console shows them).
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaException

from stream.cli.settings_args import add_worker_arguments, arg_type, check_kafka, load_config, port_number
from stream.definitions.resolution import file_definitions
from stream.kafka.clients import client_config
from stream.kafka.definitions_feed import DefinitionsFeed, caught_up_feed
from stream.kafka.publishing import Topic
from stream.model.time import SECOND, format_rfc3339
from stream.rules.catalog import Catalog, compile_catalog, load_catalog
from stream.rules.problems import DefinitionError
from stream.runtime.http import App, HttpSetupError, Server, read_token
from stream.runtime.settings import ConfigError, WorkerConfig

# The console's pages, the store reader (rocksdict) and the definitions engine are imported in the
# functions that use them, when the console runs: stream.cli.main imports every command's module at
# each `segments` start, and these would add some 70 ms to every command (measured, -X importtime).
if TYPE_CHECKING:
    from stream.console.backend import Sizes
    from stream.storage.committed import CommittedStores

_SETTINGS = ("state_dir", "group_id", "segments_file", "bootstrap_servers", "definitions_topic", "http_host",
             "http_token_file")
DEFAULT_PORT = 9310
SIZE_SECONDS = 10.0         # a count of the members stops after this long (and says so): ~5 s at 1M customers
SIZES_EVERY = 60.0          # seconds a count is shown before the next is made


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cp = sub.add_parser("console", help="the web console over running workers' stores (read-only)",
                        description="Serve the web console (docs/console.md) over the partition stores of running "
                                    "workers, read-only as `segments members` reads them, behind the bearer token "
                                    "of --http-token-file; with --bootstrap-servers (and the workers' Kafka "
                                    "settings: -X, SEGMENTS_KAFKA_*, --config) its editor publishes to the "
                                    "definitions topic.")
    cp.add_argument("--port", type=arg_type(port_number), default=DEFAULT_PORT, metavar="PORT",
                    help=f"port to serve on (default: {DEFAULT_PORT}; 0: any free one, printed)")
    add_worker_arguments(cp, names=_SETTINGS)
    cp.set_defaults(run=run)


class StoresView:
    """The console's Backend callables over the stores and, when given, the definitions topic."""

    def __init__(self, config: WorkerConfig, file_catalog: Catalog, feed: DefinitionsFeed | None):
        from stream.console.history import History

        self.config, self.file_catalog, self.feed = config, file_catalog, feed
        self.file = file_definitions(file_catalog)
        self.history = History(sample_seconds=SIZES_EVERY)
        self._lock = threading.Lock()           # the feed's consumer is one thread's at a time
        self._sizes: Sizes | None = None
        self._sized_at = float("-inf")

    def stores(self) -> CommittedStores:
        from stream.storage.committed import CommittedStores
        return CommittedStores(self.config.state_dir, self.config.group_id)

    def describe(self) -> dict[str, Any]:
        """As GET /definitions of a worker owning every partition in the state dir."""
        from stream.definitions.live import LiveDefinitions
        from stream.inspect.running import stored_running
        from stream.storage.committed import NoStores

        with self._lock:
            if self.feed is not None:
                try:
                    self.feed.poll()
                except KafkaException as exc:      # the brokers away: what was read so far stands
                    print(f"segments console: definitions topic not followed now: {exc}", file=sys.stderr)
            live = LiveDefinitions(self.file, self.feed)
            try:
                with self.stores() as stores:
                    for partition in stores.partitions:
                        live.running[partition.number] = (stored_running(partition, self.file_catalog)
                                                          or live.assumed())
            except NoStores:
                pass
            first = next(iter(live.running.values()), None)
            live.rejected = dict(live.resolve(first).rejected)
            return live.describe()

    def catalog(self) -> Catalog:
        running = self.describe()["segments"]
        return compile_catalog({name: entry["definition"] for name, entry in running.items()}, "definitions")

    def sizes(self) -> Sizes:
        from stream.console.backend import Sizes
        from stream.console.passes import segment_sizes
        from stream.storage.committed import NoStores

        now = time.time()
        if now - self._sized_at >= SIZES_EVERY:
            try:
                with self.stores() as stores:
                    tally = segment_sizes(stores, SIZE_SECONDS)
            except NoStores as exc:
                return Sizes({}, str(exc))
            when = format_rfc3339(int(now * SECOND))
            note = (f"counted over the stores at {when}: cut short after {tally.seconds:.1f} s and "
                    f"{tally.read:,} customers, so these are lower bounds" if tally.cut_short else
                    f"counted over the stores at {when} ({tally.read:,} customers in {tally.seconds:.1f} s); "
                    f"counted again after {SIZES_EVERY:.0f} s")
            self._sizes, self._sized_at = Sizes(dict(tally.counts), note), now
            if not tally.cut_short:
                self.history.sample(tally.counts, now)
        assert self._sizes is not None          # counted on the first call
        return self._sizes


def run(args: argparse.Namespace) -> int:
    from stream.console.backend import Backend
    from stream.console.routes import console_routes

    try:
        config = load_config(args)
        file_catalog = load_catalog(config.segments_file)
        if config.http_token_file is None:
            raise ConfigError(["the console shows personal data: give --http-token-file (the workers' token "
                               "file, or one of its own)"])
        token = read_token(config.http_token_file)
        check_kafka(config)
    except (ConfigError, DefinitionError, HttpSetupError) as exc:
        print(f"segments console: {exc}", file=sys.stderr)
        return 2
    topic, feed = None, None
    if config.bootstrap_servers is not None and config.definitions_topic is not None:
        topic = Topic(config.bootstrap_servers, dict(config.kafka), config.definitions_topic, file_catalog)
        try:
            feed = caught_up_feed(client_config(config.bootstrap_servers, config.kafka), config.definitions_topic)
        except (KafkaException, TimeoutError) as exc:
            print(f"segments console: cannot read {config.definitions_topic!r}: {exc}", file=sys.stderr)
            return 1
    view = StoresView(config, file_catalog, feed)
    backend = Backend("segments console (read-only over the stores)", view.catalog, view.stores, view.describe,
                      view.sizes, view.history, False, topic)
    try:
        server = Server(App(console_routes(backend), token), config.http_host, args.port)
    except HttpSetupError as exc:
        print(f"segments console: {exc}", file=sys.stderr)
        return 1
    print(f"segments console: {server.url}/console/ (log in with the token of {config.http_token_file}); "
          f"publishing {'to ' + repr(config.definitions_topic) if topic else 'off (no --bootstrap-servers)'}; "
          f"Ctrl-C stops", file=sys.stderr, flush=True)
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    stopped.wait()
    server.stop()
    if feed is not None:
        feed.close()
    return 0
