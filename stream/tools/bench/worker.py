"""`segments bench worker`: the native worker end to end on the embedded broker.

Four measures, each beside what bounds it in the same run:
- throughput: the worker (exactly_once, then at_least_once) over a pre-loaded input topic, next to
  the raw ceiling of confluent-kafka consume + msgspec decode of the same records, with the worker's
  CPU time per event;
- scale-out: the same input through one `segments worker` process, then two in one consumer group;
- latency at a steady offered rate: event time to the commit of the change it caused, and consume
  to commit of each batch, from the worker's own histograms (upper bounds of their buckets);
- restore: a partition of N customers rebuilt from its changelog (store + timer index).
"""
from __future__ import annotations

import contextlib
import dataclasses
import resource
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import msgspec
from confluent_kafka import Consumer, Producer, TopicPartition
from rich.console import Console
from rich.table import Table

from stream.errors import SegmentsError
from stream.kafka.embedded_broker import EmbeddedBroker
from stream.kafka.topic_admin import ensure_topics
from stream.model.decoding import Decoder

from stream.model.time import format_rfc3339
from stream.rules.catalog import load_catalog
from stream.runtime.settings import WorkerConfig
from stream.tools.bench.samples import sample_states
from stream.tools.synth import shopper_events
from stream.worker.loop import Worker


class BenchFailed(SegmentsError):
    """A benchmark that could not measure what it measures (`segments bench` says why, exit 1)."""

PARTITIONS = 4
_METRICS_PORT = 9399
_NOW_PLACEHOLDER = "0000-00-00T00:00:00.000000Z"


def run_worker_bench(events: int, customers: int, seed: int, rate: int, seconds: float,
                     restore_customers: int) -> int:
    console = Console(highlight=False)
    table = Table(title=f"native worker, exactly_once, embedded broker, {PARTITIONS} partitions")
    for column in ("measure", "value", "ceiling (same run)", "ratio"):
        table.add_column(column, justify="left" if column == "measure" else "right")

    lines = list(shopper_events(customers, events, seed))
    for guarantee in ("exactly_once", "at_least_once"):
        console.print(f"throughput, {guarantee}: {events:,} events over {customers:,} customers ...")
        with _fresh("tp") as (config, bootstrap):
            config = dataclasses.replace(config, guarantee=guarantee)
            _produce(bootstrap, config.input_topics[0], lines)
            # The best of three reads: one read alone swung 3x with the machine's other load.
            ceiling = max(_consume_decode_rate(bootstrap, config.input_topics[0], len(lines)) for _ in range(3))
            rate_seen, cpu = _worker_rate(config, len(lines))
        table.add_row(f"{guarantee}: events/s end to end", f"{rate_seen:,.0f}", f"{ceiling:,.0f}",
                      f"{rate_seen / ceiling:.2f}")
        table.add_row(f"{guarantee}: worker CPU per event", f"{cpu * 1e6:.1f} us", f"{1e6 / ceiling:.1f} us",
                      f"{cpu * ceiling:.1f}")

    rates = []
    for processes in (1, 2):
        console.print(f"scale-out: {processes} worker process(es) in one group ...")
        with _fresh(f"so{processes}") as (config, bootstrap):
            rates.append(_group_rate(config, bootstrap, lines, processes))
    table.add_row("scale-out: 1 worker process, events/s", f"{rates[0]:,.0f}", "", "")
    table.add_row("scale-out: 2 worker processes in one group", f"{rates[1]:,.0f}", f"{rates[0]:,.0f} (1 process)",
                  f"{rates[1] / rates[0]:.2f}")

    console.print(f"latency: {rate:,} events/s offered for {seconds:.0f} s ...")
    with _fresh("lt") as (config, bootstrap):
        p50, p99, batch_p99, offered = _latency(config, bootstrap, customers, seed, rate, seconds)
    table.add_row(f"event time -> committed change p50, {offered:,.0f} events/s", f"<= {p50 * 1000:.0f} ms", "", "")
    table.add_row("event time -> committed change p99", f"<= {p99 * 1000:.0f} ms", "", "")
    table.add_row("consume -> committed batch p99", f"<= {batch_p99 * 1000:.0f} ms", "", "")

    console.print(f"restore: {restore_customers:,} customers from the changelog ...")
    with _fresh("rs") as (config, _):
        restore_seconds, records = _restore(config, restore_customers, seed)
    table.add_row(f"restore {restore_customers:,} customers", f"{restore_seconds:.1f} s",
                  f"{records / restore_seconds:,.0f} records/s", "")
    console.print(table)
    return 0


@contextlib.contextmanager
def _fresh(name: str) -> Iterator[tuple[WorkerConfig, str]]:
    """A broker and a state directory of its own per measure: what one left behind (hundreds of
    thousands of records in the broker's memory) must not slow the next. Yields the worker's
    settings and the broker's bootstrap servers."""
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        config = WorkerConfig(bootstrap_servers=broker.bootstrap, instance_id="bench", partitions=PARTITIONS,
                              idle_advance_ms=None, metrics_port=None, session_timeout_ms=6000,
                              max_poll_interval_ms=10000, state_dir=Path(tmp), input_topics=(f"{name}-events",),
                              group_id=name)
        ensure_topics(broker.bootstrap, Worker(config, load_catalog()).topics())
        yield config, broker.bootstrap


def _produce(bootstrap: str, topic: str, lines: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "partitioner": "murmur2_random",
                         "queue.buffering.max.messages": 1_000_000})
    decode = msgspec.json.Decoder().decode
    for line in lines:
        producer.produce(topic, key=decode(line)["customer_id"].encode(), value=line)
        producer.poll(0)
    producer.flush()


def _consume_decode_rate(bootstrap: str, topic: str, total: int, partitions: Sequence[int] = range(PARTITIONS),
                         ready: Callable[[], object] | None = None) -> float:
    """The raw ceiling: read every record (`total`) of `partitions` by assign and decode it, nothing
    else; timed from `ready()` returning (when processes measure together) or at once."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "ceiling", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    decode, seen = Decoder().decode, 0
    if ready is not None:
        ready()
    started = time.perf_counter()
    while seen < total:
        # A short timeout: consume(n, timeout) waits it out whole once the data runs short of n,
        # which a 1 s timeout made the larger part of the measure.
        for msg in consumer.consume(2000, 0.01):
            value = msg.value()
            if msg.error() is None and value is not None:
                decode(value)
                seen += 1
    elapsed = time.perf_counter() - started
    consumer.close()
    return total / elapsed


def _worker_rate(config: WorkerConfig, total: int) -> tuple[float, float]:
    """Events per second from the end of the first commit to the last (the group join before it
    is the broker's, not the worker's), and the process's CPU seconds per event meanwhile (the
    worker's thread and its clients' threads; this thread only sleeps)."""
    marks: list[tuple[float, float, int]] = []

    def mark(events: int, changes: int) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        marks.append((time.perf_counter(), usage.ru_utime + usage.ru_stime, events))
    worker = Worker(config, load_catalog(), on_batch=mark)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    while sum(n for _, _, n in marks) < total and thread.is_alive():
        time.sleep(0.05)
    worker.stop()
    thread.join()
    if len(marks) < 3:
        raise BenchFailed("too few events to measure a rate: raise --events")
    first_at, first_cpu, first_events = marks[0]
    last_at, last_cpu, _ = marks[-1]
    return (total - first_events) / (last_at - first_at), (last_cpu - first_cpu) / (total - first_events)


def _worker_process(config: WorkerConfig, bootstrap: str, instance: str, port: int) -> subprocess.Popen[bytes]:
    """A `segments worker` process, as deployed, serving its metrics on `port`."""
    return subprocess.Popen(
        [sys.executable, "-m", "stream.cli", "worker", "--bootstrap-servers", bootstrap,
         "--input-topics", config.input_topics[0], "--changes-topic", config.changes_topic,
         "--membership-topic", config.membership_topic, "--dead-letter-topic", config.dead_letter_topic,
         "--group-id", config.group_id, "--instance-id", instance, "--state-dir", str(config.state_dir / instance),
         "--partitions", str(PARTITIONS), "--session-timeout-ms", "6000", "--max-poll-interval-ms", "10000",
         "--idle-advance-ms", "0", "--metrics-port", str(port),
         "--commit-interval-ms", str(config.commit_interval_ms)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _group_rate(config: WorkerConfig, bootstrap: str, lines: list[bytes], processes: int) -> float:
    """Events per second through `processes` worker processes in one group: from the first
    record produced to every event applied (summed over their /metrics), once every process owns
    partitions (the group settled on an empty topic)."""
    ports = [_METRICS_PORT + 1 + n for n in range(processes)]
    workers = [_worker_process(config, bootstrap, f"scale-{n}", port) for n, port in enumerate(ports)]
    try:
        _wait_ready(ports, 90)
        time.sleep(3)       # a consumer group settles for a moment after its assignment
        started = time.perf_counter()
        _produce(bootstrap, config.input_topics[0], lines)
        _wait_applied(len(lines), 300, ports)
        return len(lines) / (time.perf_counter() - started)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(30)


def _wait_ready(ports: list[int], timeout: float) -> None:
    """Until every worker answers /readyz with 200: in the group, owning partitions, restored."""
    deadline = time.monotonic() + timeout
    waiting = set(ports)
    while waiting and time.monotonic() < deadline:
        for port in list(waiting):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5).read()
                waiting.discard(port)
            except OSError:
                pass                # not serving yet, or 503: not ready
        time.sleep(0.2)
    if waiting:
        raise BenchFailed(f"worker(s) on port(s) {sorted(waiting)} not ready within {timeout:.0f} s")


def _latency(config: WorkerConfig, bootstrap: str, customers: int, seed: int, rate: int, seconds: float):
    """Events stamped with the wall clock at a steady rate into a worker in its own process (as
    deployed); the worker's histograms give event time to committed change and batch time.
    No reader of the output runs meanwhile: on this 2-core machine a read_committed reader of the
    embedded broker slowed the broker enough to triple the figures, which is the test broker's
    cost, not the worker's."""
    worker = _worker_process(config, bootstrap, "latency", _METRICS_PORT)
    try:
        # linger.ms 5, librdkafka's default and what a shop's producer sends with: at 1 ms the
        # embedded broker took thousands of tiny produce requests a second and acknowledged them
        # 1.3 s late at the median (7.4 s p99), which the latency figure then carried.
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5,
                             "partitioner": "murmur2_random"})
        topic = config.input_topics[0]
        # Encoded before the clock starts, with a placeholder where the event time goes.
        events = []
        for line in shopper_events(customers, int(rate * seconds), seed + 1):
            event = msgspec.json.decode(line)
            event["occurred_at"] = _NOW_PLACEHOLDER
            events.append((event["customer_id"].encode(), msgspec.json.encode(event)))
        placeholder = _NOW_PLACEHOLDER.encode()
        # The group settles on a first event before the clock starts.
        producer.produce(topic, key=events[0][0], value=events[0][1].replace(
            placeholder, format_rfc3339(int(time.time() * 1_000_000)).encode()))
        producer.flush()
        _wait_applied(1, 60)
        time.sleep(3)       # a consumer group settles for a moment after its first assignment
        started = time.perf_counter()
        for n, (key, template) in enumerate(events):
            pause = started + n / rate - time.perf_counter()
            if pause > 0.001:
                time.sleep(pause)
            now = format_rfc3339(int(time.time() * 1_000_000)).encode()
            producer.produce(topic, key=key, value=template.replace(placeholder, now))
            producer.poll(0)
        producer.flush()
        offered = len(events) / (time.perf_counter() - started)
        _wait_applied(len(events) + 1, 60)
        quantile = lambda name, q: _histogram_quantile(_METRICS_PORT, name, q)  # noqa: E731
        return (quantile("segments_event_to_change_seconds", 0.5), quantile("segments_event_to_change_seconds", 0.99),
                quantile("segments_batch_duration_seconds", 0.99), offered)
    finally:
        worker.terminate()
        worker.wait(30)


def _wait_applied(events: int, timeout: float, ports: list[int] | None = None) -> None:
    """Until the workers serving metrics on `ports` have taken `events` events between them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        applied = 0.0
        for port in ports or [_METRICS_PORT]:
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            except OSError:
                text = ""                  # not serving yet
            applied += sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                           if line.startswith("segments_events_total{"))
        if applied >= events:
            return
        time.sleep(0.2)
    raise BenchFailed(f"the worker(s) did not take {events} events within {timeout:.0f} s")


def _histogram_quantile(port: int, name: str, q: float) -> float:
    """The upper bound of the bucket holding quantile q, read from the worker's /metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    buckets = [(float(line.split('le="')[1].split('"')[0]), float(line.rsplit(" ", 1)[1]))
               for line in text.splitlines() if line.startswith(f"{name}_bucket")]
    total = buckets[-1][1]
    return next(bound for bound, count in buckets if count >= q * total)


def _restore(config: WorkerConfig, customers: int, seed: int) -> tuple[float, int]:
    """Fill one changelog partition with `customers` realistic states, then time a partition
    assignment: the store's restore plus the engine's timer index rebuilt from it."""
    samples, _ = sample_states(2000, 20000, seed, load_catalog())
    worker = Worker(config, load_catalog())
    producer = Producer({"bootstrap.servers": config.bootstrap_servers, "linger.ms": 20,
                         "queue.buffering.max.messages": 1_000_000, "compression.type": "lz4"})
    for n in range(customers):
        producer.produce(config.changelog_topic, key=f"c{n}".encode(), value=samples[n % len(samples)], partition=0)
        producer.poll(0)
    producer.flush()
    started = time.perf_counter()
    task = worker.open_partition(0)
    elapsed = time.perf_counter() - started
    assert len(task.engine.timers) > 0
    task.store.close()
    return elapsed, customers

